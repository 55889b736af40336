"""Webhooks to partners: the signature, one announcement per wire-status change, deliveries to a
real local HTTP receiver with retries and backoff, the claim, the sweep and redelivery."""

from __future__ import annotations

import hashlib
import hmac
import json
import socket
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from django.db import connection
from django.utils import timezone

from orders.models import Order
from orders.models import OrderStatus as S
from partners import webhooks, wire
from partners.models import ApiKey, Partner, PartnerOrder, WebhookDelivery
from partners.services import api_key_create, api_key_revoke

pytestmark = pytest.mark.django_db


class Receiver:
    """A partner's webhook endpoint on a free local port: records each POST, answers `status`
    after `delay` seconds, and holds its answer while `hold` is cleared."""

    def __init__(self) -> None:
        self.requests: list[tuple[dict[str, str], bytes]] = []
        self.status = 200
        self.delay = 0.0
        self.hold = threading.Event()
        self.hold.set()
        self.got = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.requests.append((dict(self.headers), body))
                receiver.got.set()
                receiver.hold.wait(10)
                time.sleep(receiver.delay)
                try:
                    self.send_response(receiver.status)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                except OSError:
                    pass  # the client gave up (its timeout)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/reseller"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    receiver = Receiver()
    thread = threading.Thread(target=receiver.server.serve_forever, daemon=True)
    thread.start()
    yield receiver
    receiver.hold.set()
    receiver.server.shutdown()
    receiver.server.server_close()


@pytest.fixture
def enqueued(monkeypatch) -> list[int]:
    """Delivery ids handed to the task queue, instead of the queue."""
    calls: list[int] = []
    monkeypatch.setattr(webhooks, "delivery_enqueue", calls.append)
    return calls


@pytest.fixture
def hook_key(db) -> ApiKey:
    partner = Partner.objects.create(name="Hook Partner")
    key, _ = api_key_create(partner=partner, test=True, name="hooks",
                            webhook_url="https://partner.example/hooks")
    return key


def delivery_for(key: ApiKey, url: str, **fields: Any) -> WebhookDelivery:
    delivery = WebhookDelivery.objects.create(
        api_key=key, event=webhooks.EVENT_ORDER_UPDATED, url=url, payload={},
        next_attempt_at=timezone.now() - timedelta(seconds=1), **fields)
    delivery.payload = {"id": str(delivery.event_id), "type": webhooks.EVENT_ORDER_UPDATED,
                        "data": {"order_id": "o-1", "status": "completed", "stars": 500}}
    delivery.save(update_fields=["payload"])
    return delivery


def make_due(delivery: WebhookDelivery) -> None:
    WebhookDelivery.objects.filter(pk=delivery.pk).update(
        next_attempt_at=timezone.now() - timedelta(seconds=1))


def refused_url() -> str:
    """A local port nobody listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}/hooks"


def api_order(api: Any, reference: str = "ref-1") -> Order:
    response = api.post("topup", {"platform": "telegram", "user_id": "123456789", "stars": 500,
                                  "reference": reference}, idempotency_key=f"idem-{reference}")
    assert response.status_code == 201, response.content
    return Order.objects.get(public_id=response.json()["order_id"])


def set_hook(api: Any, url: str) -> None:
    ApiKey.objects.filter(pk=api.key.pk).update(webhook_url=url)


def move(order: Order, status: str, *, ago: timedelta = timedelta()) -> None:
    # A status set behind the state machine's back: these tests are about what follows it.
    Order.objects.filter(pk=order.pk).update(status=status,
                                             status_changed_at=timezone.now() - ago)


# --- The signature ----------------------------------------------------------------------------


def test_the_signature_is_hmac_sha256_over_timestamp_dot_body():
    body = b'{"id":"evt","type":"order.updated"}'
    header = webhooks.signature_header(secret="whsec_abc", body=body, timestamp=1700000000)
    expected = hmac.new(b"whsec_abc", b"1700000000." + body, hashlib.sha256).hexdigest()
    assert header == f"t=1700000000,v1={expected}"
    # Another body, timestamp or secret gives another signature.
    assert webhooks.signature_header(secret="whsec_abc", body=body + b" ",
                                     timestamp=1700000000) != header
    assert webhooks.signature_header(secret="whsec_abc", body=body,
                                     timestamp=1700000001) != header
    assert webhooks.signature_header(secret="whsec_abd", body=body,
                                     timestamp=1700000000) != header


# --- Announcements ----------------------------------------------------------------------------


def test_each_wire_status_change_is_announced_once(test_api, enqueued):
    set_hook(test_api, "https://partner.example/hooks")
    order = api_order(test_api)
    assert webhooks.order_status_announce(order_id=order.pk) is None  # still pending

    move(order, S.PROCESSING)
    delivery = webhooks.order_status_announce(order_id=order.pk)
    assert delivery is not None
    assert delivery.url == "https://partner.example/hooks"
    assert delivery.payload["id"] == str(delivery.event_id)
    assert delivery.payload["data"]["status"] == wire.PROCESSING
    assert delivery.payload["data"]["reference"] == "ref-1"
    assert webhooks.order_status_announce(order_id=order.pk) is None  # said already

    move(order, S.UNKNOWN)  # still "processing" on the wire: nothing new to say
    assert webhooks.order_status_announce(order_id=order.pk) is None

    move(order, S.DELIVERED)
    completed = webhooks.order_status_announce(order_id=order.pk)
    assert completed is not None and completed.payload["data"]["status"] == wire.COMPLETED
    assert WebhookDelivery.objects.filter(order=order).count() == 2


def test_no_delivery_without_a_webhook_url_or_for_a_revoked_key(test_api, enqueued):
    order = api_order(test_api, "no-url")
    move(order, S.DELIVERED)
    assert webhooks.order_status_announce(order_id=order.pk) is None
    # The change counts as announced, so the sweep does not try again forever.
    assert PartnerOrder.objects.get(order=order).announced_status == wire.COMPLETED

    set_hook(test_api, "https://partner.example/hooks")
    revoked = api_order(test_api, "revoked")
    api_key_revoke(key=test_api.key)
    move(revoked, S.DELIVERED)
    assert webhooks.order_status_announce(order_id=revoked.pk) is None
    assert not WebhookDelivery.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_two_racing_announcers_queue_one_delivery(test_api, enqueued, monkeypatch):
    set_hook(test_api, "https://partner.example/hooks")
    order = api_order(test_api)
    move(order, S.DELIVERED)
    # Both callers read the old announced status before either writes the new one.
    barrier = threading.Barrier(2, timeout=10)
    waited = threading.local()
    real_wire_status = wire.wire_status

    def wire_status_in_step(status: str) -> str:
        if not getattr(waited, "done", False):
            waited.done = True
            barrier.wait()
        return real_wire_status(status)

    monkeypatch.setattr(wire, "wire_status", wire_status_in_step)
    results: list[Any] = []

    def announce() -> None:
        try:
            results.append(webhooks.order_status_announce(order_id=order.pk))
        finally:
            connection.close()

    threads = [threading.Thread(target=announce) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert len(results) == 2
    assert sum(result is not None for result in results) == 1
    assert WebhookDelivery.objects.filter(order=order).count() == 1
    assert len(enqueued) == 1


# --- Deliveries ---------------------------------------------------------------------------


def test_a_2xx_delivers_a_body_signed_as_the_docs_say(hook_key, receiver, settings):
    delivery = delivery_for(hook_key, receiver.url)
    receiver.status = 204
    done = webhooks.webhook_deliver(delivery_id=delivery.pk)
    assert done.status == WebhookDelivery.Status.DELIVERED
    assert done.attempts == 1 and done.last_status_code == 204 and done.last_error == ""
    assert done.delivered_at is not None and done.next_attempt_at is None

    [(headers, body)] = receiver.requests
    assert json.loads(body) == delivery.payload
    assert headers["X-Reseller-Event-Id"] == str(delivery.event_id)
    # What a partner's receiver does, from the README: parse t and v1, recompute, compare.
    fields = dict(part.split("=", 1) for part in headers["X-Reseller-Signature"].split(","))
    expected = hmac.new(hook_key.webhook_secret.encode(), fields["t"].encode() + b"." + body,
                        hashlib.sha256).hexdigest()
    assert hmac.compare_digest(fields["v1"], expected)
    assert abs(time.time() - int(fields["t"])) < settings.PARTNER_WEBHOOK_TOLERANCE_SECONDS


@pytest.mark.parametrize("failure", ["http_500", "timeout", "refused"])
def test_a_failed_attempt_is_retried_with_a_doubling_backoff(hook_key, receiver, settings,
                                                             failure):
    settings.PARTNER_WEBHOOK_TIMEOUT = 0.3
    url = receiver.url
    if failure == "http_500":
        receiver.status = 500
    elif failure == "timeout":
        receiver.delay = 1.0
    else:
        url = refused_url()
    delivery = delivery_for(hook_key, url)
    waits = []
    for attempt in (1, 2, 3):
        done = webhooks.webhook_deliver(delivery_id=delivery.pk)
        assert done.status == WebhookDelivery.Status.PENDING
        assert done.attempts == attempt
        assert done.delivered_at is None
        waits.append(done.next_attempt_at - done.last_attempt_at)
        make_due(delivery)
    assert waits == [timedelta(seconds=10), timedelta(seconds=20), timedelta(seconds=40)]
    if failure == "http_500":
        assert done.last_status_code == 500 and done.last_error == "HTTP 500"
    elif failure == "timeout":
        assert done.last_status_code is None and "Timeout" in done.last_error
    else:
        assert done.last_status_code is None and "ConnectionError" in done.last_error


def test_it_gives_up_after_the_maximum_attempts(hook_key, receiver, settings):
    settings.PARTNER_WEBHOOK_MAX_ATTEMPTS = 3
    receiver.status = 503
    delivery = delivery_for(hook_key, receiver.url)
    for _ in range(3):
        done = webhooks.webhook_deliver(delivery_id=delivery.pk)
        make_due(delivery)
    assert done.status == WebhookDelivery.Status.FAILED
    assert done.attempts == 3 and done.next_attempt_at is None
    # A given-up delivery is not posted again by a late task.
    webhooks.webhook_deliver(delivery_id=delivery.pk)
    assert len(receiver.requests) == 3


def test_a_delivery_not_yet_due_is_not_posted(hook_key, receiver):
    delivery = delivery_for(hook_key, receiver.url)
    WebhookDelivery.objects.filter(pk=delivery.pk).update(
        next_attempt_at=timezone.now() + timedelta(minutes=5))
    done = webhooks.webhook_deliver(delivery_id=delivery.pk)
    assert done.attempts == 0 and receiver.requests == []


@pytest.mark.django_db(transaction=True)
def test_the_same_delivery_run_twice_at_once_posts_once(hook_key, receiver):
    delivery = delivery_for(hook_key, receiver.url)
    receiver.hold.clear()  # the first POST waits at the receiver
    first_result: list[WebhookDelivery] = []

    def first() -> None:
        try:
            first_result.append(webhooks.webhook_deliver(delivery_id=delivery.pk))
        finally:
            connection.close()

    thread = threading.Thread(target=first)
    thread.start()
    assert receiver.got.wait(10)
    # A second worker picks the same delivery while the first POST is in flight.
    second = webhooks.webhook_deliver(delivery_id=delivery.pk)
    assert second.attempts == 0 and len(receiver.requests) == 1
    receiver.hold.set()
    thread.join(30)
    assert first_result[0].status == WebhookDelivery.Status.DELIVERED
    assert len(receiver.requests) == 1


def test_a_revoked_keys_pending_delivery_is_dropped_not_posted(hook_key, receiver):
    delivery = delivery_for(hook_key, receiver.url, attempts=2)
    api_key_revoke(key=hook_key)
    done = webhooks.webhook_deliver(delivery_id=delivery.pk)
    assert done.status == WebhookDelivery.Status.FAILED and done.next_attempt_at is None
    assert done.last_error == "API key revoked" and done.attempts == 2
    assert receiver.requests == []


# --- The sweep --------------------------------------------------------------------------------


def test_the_sweep_enqueues_due_retries_only(hook_key, enqueued):
    due = delivery_for(hook_key, "https://partner.example/a")
    later = delivery_for(hook_key, "https://partner.example/b")
    WebhookDelivery.objects.filter(pk=later.pk).update(
        next_attempt_at=timezone.now() + timedelta(minutes=1))
    delivered = delivery_for(hook_key, "https://partner.example/c",
                             status=WebhookDelivery.Status.DELIVERED)
    failed = delivery_for(hook_key, "https://partner.example/d",
                          status=WebhookDelivery.Status.FAILED)
    assert webhooks.webhooks_due() == [due.pk]
    assert enqueued == [due.pk]
    assert {delivered.pk, failed.pk, later.pk}.isdisjoint(enqueued)


def test_the_sweep_announces_a_change_whose_task_was_lost(test_api, enqueued):
    set_hook(test_api, "https://partner.example/hooks")
    lost = api_order(test_api, "lost")
    fresh = api_order(test_api, "fresh")
    move(lost, S.DELIVERED, ago=timedelta(minutes=2))
    move(fresh, S.DELIVERED, ago=timedelta(seconds=5))  # its own task may still be on the way
    webhooks.webhooks_due()
    [delivery] = WebhookDelivery.objects.all()
    assert delivery.order_id == lost.pk
    assert delivery.payload["data"]["status"] == wire.COMPLETED
    webhooks.webhooks_due()  # announced now: not again
    assert WebhookDelivery.objects.count() == 1


# --- Redelivery ---------------------------------------------------------------------------


def test_redeliver_sends_a_finished_delivery_again_to_the_current_url(
        hook_key, django_capture_on_commit_callbacks, enqueued):
    delivery = delivery_for(hook_key, "https://old.example/hooks",
                            status=WebhookDelivery.Status.FAILED, attempts=10)
    WebhookDelivery.objects.filter(pk=delivery.pk).update(next_attempt_at=None)
    with django_capture_on_commit_callbacks(execute=True):
        assert webhooks.webhook_redeliver(delivery=delivery) is True
    delivery.refresh_from_db()
    assert delivery.status == WebhookDelivery.Status.PENDING and delivery.attempts == 0
    assert delivery.next_attempt_at <= timezone.now()
    assert delivery.url == hook_key.webhook_url  # the partner fixed its URL since
    assert enqueued == [delivery.pk]


def test_redeliver_leaves_pending_deliveries_and_revoked_keys_alone(
        hook_key, django_capture_on_commit_callbacks, enqueued):
    pending = delivery_for(hook_key, hook_key.webhook_url, attempts=4)
    given_up = delivery_for(hook_key, hook_key.webhook_url, status=WebhookDelivery.Status.FAILED)
    with django_capture_on_commit_callbacks(execute=True):
        assert webhooks.webhook_redeliver(delivery=pending) is False
        api_key_revoke(key=hook_key)
        given_up.api_key.refresh_from_db()
        assert webhooks.webhook_redeliver(delivery=given_up) is False
    pending.refresh_from_db()
    given_up.refresh_from_db()
    assert pending.attempts == 4
    assert given_up.status == WebhookDelivery.Status.FAILED
    assert enqueued == []


# --- Where webhooks may go --------------------------------------------------------------------


@pytest.mark.parametrize("url", [
    "http://127.0.0.1:9000/hook", "http://localhost/hook", "https://10.1.2.3/hook",
    "http://192.168.0.10/hook", "http://169.254.169.254/latest/meta-data/",
    "http://[::1]/hook", "http://[::ffff:127.0.0.1]/hook", "http://0.0.0.0/hook",
    "ftp://example.com/hook", "http:///hook",
])
def test_non_public_webhook_targets_are_refused_in_production(settings, url):
    settings.PARTNER_WEBHOOK_ALLOW_PRIVATE = False
    assert webhooks.webhook_target_refusal(url)


def test_public_targets_and_the_demo_s_loopback_are_allowed(settings, monkeypatch):
    settings.PARTNER_WEBHOOK_ALLOW_PRIVATE = False
    # No DNS in tests: the partner's name resolves to a public address.
    monkeypatch.setattr(webhooks.socket, "getaddrinfo",
                        lambda host, port, **kw: [(2, 1, 6, "", ("93.184.215.14", port))])
    assert webhooks.webhook_target_refusal("https://hooks.partner.example/stars") == ""
    settings.PARTNER_WEBHOOK_ALLOW_PRIVATE = True
    assert webhooks.webhook_target_refusal("http://127.0.0.1:9000/hook") == ""


def test_a_name_re_pointed_at_a_private_address_is_not_posted(settings, monkeypatch, hook_key):
    """Checked again before each POST: the name may resolve elsewhere than when it was set."""
    settings.PARTNER_WEBHOOK_ALLOW_PRIVATE = False
    monkeypatch.setattr(webhooks.socket, "getaddrinfo",
                        lambda host, port, **kw: [(2, 1, 6, "", ("10.0.0.7", port))])
    posted: list[str] = []

    class Session:
        def post(self, url, **kwargs):
            posted.append(url)
            raise AssertionError("must not be posted")

    delivery = delivery_for(hook_key, "https://hooks.partner.example/stars")
    result = webhooks.webhook_deliver(delivery_id=delivery.pk, session=Session())
    assert posted == []
    assert result.status == WebhookDelivery.Status.PENDING and result.attempts == 1
    assert "not a public address" in result.last_error and result.last_status_code is None
