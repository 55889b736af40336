"""Every write of the partner API: partners, keys, top-ups, and the webhooks they trigger."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import secrets
from dataclasses import dataclass, replace
from datetime import timedelta
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from orders.models import Channel, Order
from orders.recipients import recipient_parse
from orders.services import order_insert_quoted, order_mark_paid
from orders.suppliers import get_supplier_client
from orders.suppliers.base import RecipientInfo
from orders.suppliers.sandbox import SANDBOX_SUPPLIER_CODE
from partners import wire
from partners.exceptions import (
    CurrencyMismatch,
    IdempotencyConflict,
    LedgerError,
    ReferenceInUse,
)
from partners.ledger import balance_adjust, balance_charge
from partners.models import ApiKey, IdempotencyKey, LedgerEntry, Partner, PartnerOrder
from shop.models import Package, Product, Supplier
from shop.pricing import quote_price
from shop.selectors import Quote

logger = logging.getLogger(__name__)

KEY_PREFIX = {False: "rsk_live_", True: "rsk_test_"}
PAYMENT_METHOD = "balance"


# --- Partners and keys ----------------------------------------------------------------------


def partner_create(*, name: str, actor: str, contact_email: str = "",
                   discount_percent: Decimal = Decimal(0), currency: str = "USD",
                   active: bool = True, note: str = "") -> Partner:
    """A new partner, with the sandbox balance a test key needs to try the API at once."""
    with transaction.atomic():
        partner = Partner.objects.create(name=name, contact_email=contact_email,
                                         discount_percent=discount_percent, currency=currency,
                                         active=active, note=note)
        partner_sandbox_grant(partner=partner, actor=actor)
    return partner


# What an operator may edit on a partner; the balances move only through the ledger.
PARTNER_EDITABLE = ("name", "contact_email", "discount_percent", "active", "note")


def partner_update(*, partner: Partner) -> Partner:
    """Save an operator's edit of a partner's details, never its balances.

    Only these columns are written: the row was read before the edit, and writing its
    balances back would undo every charge or top-up that landed meanwhile.
    """
    partner.save(update_fields=PARTNER_EDITABLE)
    return partner


def partner_sandbox_grant(*, partner: Partner, actor: str) -> LedgerEntry | None:
    """Credit PARTNER_SANDBOX_START_BALANCE to the sandbox balance (partners made in the admin)."""
    amount = settings.PARTNER_SANDBOX_START_BALANCE
    if amount <= 0:
        return None
    return balance_adjust(partner=partner, sandbox=True, amount=amount,
                          kind=LedgerEntry.Kind.SANDBOX_GRANT, actor=actor,
                          note="Sandbox balance to try the API")


def key_hash(token: str) -> str:
    """SHA-256 of a key: keys are 256-bit random, so a slow hash would add nothing."""
    return hashlib.sha256(token.encode()).hexdigest()


def api_key_create(*, partner: Partner, test: bool, name: str = "", created_by: Any = None,
                   allowed_ips: str = "", rate_limit: str = "",
                   webhook_url: str = "") -> tuple[ApiKey, str]:
    """A new key for the partner; returns the row and the key itself, which is never stored."""
    prefix = KEY_PREFIX[test] + secrets.token_hex(4)
    token = f"{prefix}_{secrets.token_urlsafe(32)}"
    key = ApiKey.objects.create(
        partner=partner, test=test, name=name, prefix=prefix, key_hash=key_hash(token),
        webhook_secret="whsec_" + secrets.token_urlsafe(32), created_by=created_by,
        allowed_ips=allowed_ips, rate_limit=rate_limit, webhook_url=webhook_url,
    )
    return key, token


# What an operator may edit on a key; its partner, mode and secrets are fixed at creation.
API_KEY_EDITABLE = ("name", "allowed_ips", "rate_limit", "webhook_url")


def api_key_update(*, key: ApiKey) -> ApiKey:
    """Save an operator's edit of a key's settings; never un-revokes a key revoked meanwhile."""
    key.save(update_fields=API_KEY_EDITABLE)
    return key


def api_key_revoke(*, key: ApiKey) -> ApiKey:
    """Revoke a key for good: every request with it gets 401 from now on."""
    ApiKey.objects.filter(pk=key.pk, revoked_at__isnull=True).update(revoked_at=timezone.now())
    key.refresh_from_db()
    return key


def api_key_webhook_secret_rotate(*, key: ApiKey) -> str:
    """A new webhook signing secret for the key; deliveries are signed with it from now on."""
    secret = "whsec_" + secrets.token_urlsafe(32)
    ApiKey.objects.filter(pk=key.pk).update(webhook_secret=secret)
    key.webhook_secret = secret
    return secret


def api_key_touch(*, key: ApiKey) -> None:
    """Record that the key was used, at most once a minute per key (one UPDATE, no read)."""
    now = timezone.now()
    if key.last_used_at is None or now - key.last_used_at > timedelta(minutes=1):
        ApiKey.objects.filter(pk=key.pk).update(last_used_at=now)


def partner_balance_topup(*, partner: Partner, amount: Decimal, actor: str, note: str,
                          sandbox: bool = False) -> LedgerEntry:
    """An operator credits money the partner paid us (or corrects the sandbox balance)."""
    if amount <= 0:
        raise LedgerError("A top-up must be positive.")
    return balance_adjust(partner=partner, sandbox=sandbox, amount=amount,
                          kind=LedgerEntry.Kind.TOPUP, actor=actor, note=note)


# --- Recipients and prices ------------------------------------------------------------------


def supplier_code_for(key: ApiKey) -> str:
    """Test keys go to the in-process sandbox supplier; live keys to the configured one."""
    return SANDBOX_SUPPLIER_CODE if key.test else ""


def recipient_check(*, key: ApiKey, user_id: str) -> tuple[str, RecipientInfo]:
    """Parse and resolve a recipient at the key's supplier (a network call for live keys)."""
    normalised = recipient_parse(user_id)
    return normalised, get_supplier_client(supplier_code_for(key)).validate_recipient(normalised)


def partner_quote(*, partner: Partner, product: Product, package_id: int | None = None,
                  stars: int | None = None, supplier: Supplier | None = None) -> Quote:
    """The partner's price for a package, or for `stars` (a package of exactly that many Stars
    when one is on sale, else a custom amount), through the one pricing service; `supplier`
    (default: the current one) lets a caller pricing many packages read it once."""
    if package_id is None and stars is not None:
        package = Package.objects.filter(product=product, quantity=stars, active=True).first()
        if package is not None:
            package_id = package.pk
    return quote_price(product=product, package_id=package_id,
                       quantity=None if package_id is not None else stars,
                       payment_method=PAYMENT_METHOD,
                       partner_discount_percent=partner.discount_percent, supplier=supplier)


# --- Top-ups --------------------------------------------------------------------------------


@dataclass(frozen=True)
class TopupResult:
    """What POST /topup answers, the first time and on every replay of its Idempotency-Key."""

    status_code: int
    body: dict[str, Any]
    replayed: bool = False


def request_fingerprint(body: Any) -> str:
    """A hash of the parsed request body: the same JSON, however formatted, is the same body."""
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def idempotent_replay(*, key: ApiKey, idempotency_key: str, fingerprint: str) -> TopupResult | None:
    """The stored answer for this key, None if it is new; IdempotencyConflict for another body."""
    record = IdempotencyKey.objects.filter(partner_id=key.partner_id, sandbox=key.test,
                                           key=idempotency_key).first()
    if record is None:
        return None
    if not hmac.compare_digest(record.request_hash, fingerprint):
        raise IdempotencyConflict(
            "This Idempotency-Key was used with a different request body; use a new key "
            "for a new top-up.")
    return TopupResult(status_code=record.response_status, body=json.loads(record.response_body),
                       replayed=True)


def topup_place(*, key: ApiKey, idempotency_key: str, fingerprint: str, quote: Quote,
                recipient_input: str, recipient: RecipientInfo, reference: str) -> TopupResult:
    """Place and pay a partner's top-up in one transaction, once per Idempotency-Key.

    The charge, the order (paid, its fulfilment recorded), the partner's reference and the
    idempotency record commit together or not at all: a short balance, a reference already
    used or a twin request with the same key leave nothing behind. The twin that loses gets
    the winner's answer (or 409 if its body differs).
    """
    partner = key.partner
    if quote.currency != partner.currency:
        # The ledger has no exchange rate: a USD price must not be taken from a EUR balance.
        raise CurrencyMismatch(f"This product is priced in {quote.currency}; your balance is "
                               f"in {partner.currency}.")
    if key.test:
        quote = replace(quote, supplier_code=SANDBOX_SUPPLIER_CODE)
    reference = reference or idempotency_key
    actor = f"partner:{partner.pk}:{key.prefix}"
    try:
        with transaction.atomic():
            order = order_insert_quoted(
                channel=Channel.API, quote=quote, recipient_input=recipient_input,
                recipient=recipient, payment_method=PAYMENT_METHOD,
                # Hashed, not cut to the column's 100 characters: two long keys that differ
                # only at the end must not collide into one order.
                request_key=f"{partner.pk}:{int(key.test)}:{key_hash(idempotency_key)}",
            )
            entry = balance_charge(partner=partner, sandbox=key.test, amount=order.price,
                                   order_id=order.pk, actor=actor)
            PartnerOrder.objects.create(order=order, partner=partner, api_key=key,
                                        sandbox=key.test, reference=reference,
                                        announced_status=wire.PENDING)
            order = order_mark_paid(order=order, provider=PAYMENT_METHOD,
                                    provider_reference=f"ledger-{entry.pk}", amount=order.price,
                                    currency=order.currency, actor=actor,
                                    raw={"ledger_entry": entry.pk})
            body = wire.order_wire(order, reference=reference)
            IdempotencyKey.objects.create(partner=partner, sandbox=key.test, key=idempotency_key,
                                          request_hash=fingerprint, response_status=201,
                                          response_body=json.dumps(body), order=order)
    except IntegrityError:
        replay = idempotent_replay(key=key, idempotency_key=idempotency_key,
                                   fingerprint=fingerprint)
        if replay is not None:
            return replay
        if PartnerOrder.objects.filter(partner=partner, sandbox=key.test,
                                       reference=reference).exists():
            raise ReferenceInUse(
                f"Reference {reference!r} already names another of your orders.") from None
        raise
    return TopupResult(status_code=201, body=body)


def idempotency_keys_purge(*, now=None) -> int:
    """Forget Idempotency-Keys older than PARTNER_IDEMPOTENCY_HOURS; returns how many."""
    now = now or timezone.now()
    cutoff = now - timedelta(hours=settings.PARTNER_IDEMPOTENCY_HOURS)
    deleted, _ = IdempotencyKey.objects.filter(created_at__lt=cutoff).delete()
    return deleted


def partner_order_wire(order: Order) -> dict[str, Any]:
    return wire.order_wire(order, reference=order.partner_order.reference)
