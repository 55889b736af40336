"""Webhooks to partners: one delivery row per order status change, POSTed with a signature.

Signature (what the README tells partners to check): the header
``X-Reseller-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<raw body>")>``.
Receivers recompute it over the raw body, compare in constant time and refuse a timestamp
older than PARTNER_WEBHOOK_TOLERANCE_SECONDS (a replayed delivery). Each delivery is retried
with a doubling backoff until it gets a 2xx or PARTNER_WEBHOOK_MAX_ATTEMPTS is spent; the
event id (X-Reseller-Event-Id, also in the body) is the same on every retry, for de-duplication.
"""

from __future__ import annotations

import hashlib
import ipaddress
import hmac
import json
import logging
import socket
import time
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

import requests
from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone
from django_q.tasks import async_task

from partners import wire
from partners.models import PartnerOrder, WebhookDelivery

logger = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Reseller-Signature"
EVENT_HEADER = "X-Reseller-Event-Id"
EVENT_ORDER_UPDATED = "order.updated"
_BACKOFF_FIRST = 10
_BACKOFF_CAP = 3600


def signature_header(*, secret: str, body: bytes, timestamp: int) -> str:
    """The signature header value for a body sent at `timestamp`."""
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={digest.hexdigest()}"


def body_bytes(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()


def order_status_announce(*, order_id: int) -> WebhookDelivery | None:
    """Queue a webhook if the partner order's wire status changed since the last one; once.

    Called after every status change of an API order (ORDER_STATUS_TASKS) and by the sweep; the
    conditional UPDATE of announced_status lets exactly one caller announce each change.
    """
    partner_order = (PartnerOrder.objects.select_related("api_key", "order")
                     .filter(order_id=order_id).first())
    if partner_order is None:
        return None
    order = partner_order.order
    status = wire.wire_status(order.status)
    previous = partner_order.announced_status
    if status == previous:
        return None
    key = partner_order.api_key
    with transaction.atomic():
        won = PartnerOrder.objects.filter(pk=partner_order.pk, announced_status=previous).update(
            announced_status=status)
        if not won or not key.webhook_url or key.revoked_at is not None:
            return None
        delivery = WebhookDelivery.objects.create(
            api_key=key, order=order, event=EVENT_ORDER_UPDATED, url=key.webhook_url,
            payload={}, next_attempt_at=timezone.now())
        delivery.payload = {
            "id": str(delivery.event_id), "type": EVENT_ORDER_UPDATED,
            "created_at": wire.wire_time(delivery.created_at),
            "data": wire.order_wire(order, reference=partner_order.reference),
        }
        delivery.save(update_fields=["payload"])
        transaction.on_commit(lambda: delivery_enqueue(delivery.pk))
    return delivery


def delivery_enqueue(delivery_id: int) -> None:
    async_task("partners.tasks.webhook_deliver", delivery_id, group="webhook",
               task_name=f"webhook-{delivery_id}")


def webhook_target_refusal(url: str) -> str:
    """Why a webhook may not be POSTed to this URL, or "" when it may.

    Unless PARTNER_WEBHOOK_ALLOW_PRIVATE, every address the host resolves to must be a public
    one: no loopback, private, link-local, reserved or multicast address, so that a webhook
    cannot reach the shop's own network. Checked when the URL is set and again before each
    POST (a name can be re-pointed; redirects are never followed).
    """
    if settings.PARTNER_WEBHOOK_ALLOW_PRIVATE:
        return ""
    parts = urlsplit(url)
    host = parts.hostname
    if parts.scheme not in ("http", "https") or not host:
        return f"{url!r} is not an http(s) URL"
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, ValueError) as error:
        return f"{host} does not resolve ({error})"
    for info in infos:
        address = ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])
        mapped = getattr(address, "ipv4_mapped", None)
        if not (mapped or address).is_global:
            return f"{host} resolves to {address}, which is not a public address"
    return ""


def _backoff(attempts: int) -> timedelta:
    return timedelta(seconds=min(_BACKOFF_FIRST * 2 ** max(attempts - 1, 0), _BACKOFF_CAP))


def webhook_deliver(*, delivery_id: int, session: requests.Session | None = None) -> WebhookDelivery:
    """POST one pending delivery once (no network call inside a transaction); safe to repeat.

    The row is claimed by moving next_attempt_at forward first, so a second worker that picks
    it up meanwhile does nothing.
    """
    now = timezone.now()
    delivery = WebhookDelivery.objects.select_related("api_key").get(pk=delivery_id)
    if delivery.status != WebhookDelivery.Status.PENDING:
        return delivery
    if delivery.api_key.revoked_at is not None:
        # A revoked key's partner gets nothing more from us, retries included.
        WebhookDelivery.objects.filter(pk=delivery.pk, status=WebhookDelivery.Status.PENDING
                                       ).update(status=WebhookDelivery.Status.FAILED,
                                                next_attempt_at=None, last_error="API key revoked")
        return WebhookDelivery.objects.get(pk=delivery.pk)
    claim_until = now + timedelta(seconds=settings.PARTNER_WEBHOOK_TIMEOUT + 30)
    claimed = WebhookDelivery.objects.filter(
        pk=delivery.pk, status=WebhookDelivery.Status.PENDING, attempts=delivery.attempts,
        next_attempt_at__lte=now).update(next_attempt_at=claim_until)
    if not claimed:
        return WebhookDelivery.objects.get(pk=delivery.pk)
    body = body_bytes(delivery.payload)
    timestamp = int(time.time())
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "reseller-webhooks/1",
        EVENT_HEADER: str(delivery.event_id),
        SIGNATURE_HEADER: signature_header(secret=delivery.api_key.webhook_secret, body=body,
                                           timestamp=timestamp),
    }
    status_code: int | None = None
    error = webhook_target_refusal(delivery.url)
    if error:
        error = f"Not sent: {error}"
    else:
        try:
            response = (session or requests).post(  # nosec B113: timeout below
                delivery.url, data=body, headers=headers,
                timeout=settings.PARTNER_WEBHOOK_TIMEOUT, allow_redirects=False)
            status_code = response.status_code
            if not 200 <= status_code < 300:
                error = f"HTTP {status_code}"
        except requests.RequestException as exc:
            error = f"{type(exc).__name__}: {exc}"
    attempts = delivery.attempts + 1
    finished = timezone.now()
    values: dict[str, Any] = {"attempts": attempts, "last_attempt_at": finished,
                              "last_status_code": status_code, "last_error": error[:255]}
    if not error:
        values.update(status=WebhookDelivery.Status.DELIVERED, delivered_at=finished,
                      next_attempt_at=None)
    elif attempts >= settings.PARTNER_WEBHOOK_MAX_ATTEMPTS:
        values.update(status=WebhookDelivery.Status.FAILED, next_attempt_at=None)
    else:
        values.update(next_attempt_at=finished + _backoff(attempts))
    WebhookDelivery.objects.filter(pk=delivery.pk).update(**values)
    if error:
        logger.warning("webhook %s to %s failed (attempt %s): %s", delivery.event_id,
                       delivery.api_key.prefix, attempts, error)
    return WebhookDelivery.objects.get(pk=delivery.pk)


def webhook_redeliver(*, delivery: WebhookDelivery) -> bool:
    """An operator sends a delivery again (delivered or given up): same event, fresh attempts,
    to the key's webhook URL as it is now (the partner may have fixed it since).

    False, and nothing changes, for a delivery still pending (it is being retried already:
    resetting its attempts could post it twice) or whose key was revoked or has no URL now.
    """
    key = delivery.api_key
    if key.revoked_at is not None or not key.webhook_url:
        return False
    moved = WebhookDelivery.objects.filter(pk=delivery.pk).exclude(
        status=WebhookDelivery.Status.PENDING).update(
        status=WebhookDelivery.Status.PENDING, next_attempt_at=timezone.now(), attempts=0,
        delivered_at=None, url=key.webhook_url)
    if moved:
        transaction.on_commit(lambda: delivery_enqueue(delivery.pk))
    delivery.refresh_from_db()
    return bool(moved)


def webhooks_due(*, now=None) -> list[int]:
    """Enqueue deliveries whose next attempt is due, and announce changes a lost task missed."""
    now = now or timezone.now()
    due = list(WebhookDelivery.objects.filter(
        status=WebhookDelivery.Status.PENDING, next_attempt_at__lte=now)
        .order_by("next_attempt_at").values_list("pk", flat=True)[:500])
    for delivery_id in due:
        delivery_enqueue(delivery_id)
    # The sweep's half: orders whose status moved without an announcement (a lost task).
    stale = (PartnerOrder.objects.filter(api_key__webhook_url__gt="",
                                         order__status_changed_at__gte=now - timedelta(days=1),
                                         order__status_changed_at__lte=now - timedelta(seconds=30))
             .exclude(_announced_matches()).values_list("order_id", flat=True)[:500])
    for order_id in stale:
        order_status_announce(order_id=order_id)
    return due


def _announced_matches() -> Q:
    """Partner orders whose announced status is their order's wire status."""
    match = Q(pk__in=[])
    for shown, ours in wire.STATUSES_BY_WIRE.items():
        match |= Q(announced_status=shown, order__status__in=ours)
    return match

