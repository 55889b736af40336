"""Card payments through Stripe Checkout: Stripe's hosted page, confirmed by signed webhooks.

The buyer pays on Stripe's page. Stripe tells us with `checkout.session.*` events signed with
the endpoint's secret; `poll` reads the open sessions back as a backstop for lost webhooks.
Every call goes through the official `stripe` library, with a StripeClient of our own (no
module-level `stripe.api_key`), so STRIPE_API_BASE can point it at the local fake
(`python -m fakes.stripe`) and the library still builds and sends the real requests.

One payment per session: `checkout.session.completed` (paid) and
`checkout.session.async_payment_succeeded` are different Stripe events about the same money,
so both become the inbox key `<session id>:paid`, as does a paid session found by `poll`.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import stripe
from django.conf import settings
from django.urls import reverse
from django.utils import timezone

from orders.exceptions import PaymentMethodUnavailable, PaymentProviderError, WebhookRejected
from orders.models import Order, OrderStatus, Payment, PaymentInvoice
from orders.payments.base import NoticeKind, PaymentNotice, Quote, RefundResult
from orders.payments.money import exponent_of, to_minor

logger = logging.getLogger(__name__)

CODE = "stripe"
DEFAULT_API_BASE = "http://127.0.0.1:8004"  # the local fake: python -m fakes.stripe
DEFAULT_SITE_URL = "http://127.0.0.1:8000"
# The fake's published secret: whoever reads this file can sign with it, so never in live mode.
FAKE_WEBHOOK_SECRET = "whsec_fake"
SIGNATURE_TOLERANCE_SECONDS = 300
# Stripe amounts are integers in the currency's minor unit; we sell in two-decimal currencies.
CENTS_EXPONENT = 2
# Stripe accepts a session expiry 30 minutes to 24 hours after it creates the session, by its
# own clock: keep a margin for clock skew and for the time the request takes.
SESSION_MIN_LIFETIME = timedelta(minutes=30)
SESSION_MAX_LIFETIME = timedelta(hours=24)
EXPIRY_MARGIN = timedelta(minutes=2)
# A retried create must send exactly the parameters of the first try: Stripe refuses an
# idempotency key reused with different ones (and keeps keys 24 h, so the order would be
# stuck). The expiry depends on the clock, so it is rounded to this grid and is part of the key.
EXPIRY_GRID_SECONDS = 300
# Orders whose open session may still be paid: awaiting payment, or expired (a late payment
# that covers the current price is still fulfilled). For any other status, poll expires it.
PAYABLE_ORDER_STATUSES = (OrderStatus.AWAITING_PAYMENT, OrderStatus.EXPIRED)


def _setting(name: str, default: Any) -> Any:
    return getattr(settings, name, default)


def _livemode() -> bool:
    return bool(_setting("STRIPE_LIVEMODE", False))


def _account() -> str:
    """PaymentInvoice.account for Stripe: the mode.

    Session ids are random and unique across Stripe accounts, so the mode (test sessions and
    live ones never mix) is all an id needs. A fingerprint of the secret key would change when
    the key is rolled and leave the sessions opened before unmatched.
    """
    return "live" if _livemode() else "test"


def _client() -> stripe.StripeClient:
    """A StripeClient from settings: its own HTTP client with a timeout, retries on network errors."""
    return stripe.StripeClient(
        _setting("STRIPE_SECRET_KEY", ""),
        base_addresses={"api": str(_setting("STRIPE_API_BASE", DEFAULT_API_BASE)).rstrip("/")},
        http_client=stripe.RequestsClient(timeout=float(_setting("STRIPE_TIMEOUT", 10.0))),
        # Safe for POSTs: each carries an idempotency key, so a retry cannot charge twice.
        max_network_retries=int(_setting("STRIPE_MAX_NETWORK_RETRIES", 2)),
    )


def _error_text(exc: stripe.StripeError) -> str:
    message = exc.user_message or str(exc) or type(exc).__name__
    return f"{exc.code}: {message}" if exc.code else message


def _header(headers: Mapping[str, str], name: str) -> str | None:
    """A header by name, whatever its case (Django's request.headers or a plain dict)."""
    value = headers.get(name)
    if value is not None:
        return value
    wanted = name.lower()
    return next((v for k, v in headers.items() if k.lower() == wanted), None)


def _timestamp(value: Any) -> datetime | None:
    if isinstance(value, int) and not isinstance(value, bool):
        try:
            return datetime.fromtimestamp(value, tz=UTC)
        except (OverflowError, OSError, ValueError):
            return None  # a time no datetime can hold: not one Stripe would send
    return None


def _minor_units(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def session_expiry(requested: datetime, *, now: datetime) -> datetime:
    """The expiry to ask Stripe for: the requested one within Stripe's limits, on a 5-minute grid."""
    earliest = now + SESSION_MIN_LIFETIME + EXPIRY_MARGIN
    latest = now + SESSION_MAX_LIFETIME - EXPIRY_MARGIN
    target = min(max(requested, earliest), latest).timestamp()
    grid = math.ceil(target / EXPIRY_GRID_SECONDS) * EXPIRY_GRID_SECONDS
    if grid > latest.timestamp():
        grid = math.floor(latest.timestamp() / EXPIRY_GRID_SECONDS) * EXPIRY_GRID_SECONDS
    return datetime.fromtimestamp(grid, tz=UTC)


def _invoice_attempt(order: Order) -> int:
    """Which checkout this is for the order: 1 + its Stripe invoices that can no longer be offered.

    An open invoice that invoice_open would still reuse is not counted: a create while one
    exists is a twin request racing it, and must get the same session, not a second one.
    """
    # Imported here: orders.payments.services imports the provider registry, which imports us.
    from orders.payments.services import REUSE_MARGIN

    offerable_until = timezone.now() + REUSE_MARGIN
    spent = order.invoices.filter(provider=CODE).exclude(
        status=PaymentInvoice.Status.OPEN, expires_at__gt=offerable_until)
    return spent.count() + 1


def checkout_product_name(order: Order) -> str:
    """What the buyer sees on Stripe's page, e.g. "500 Telegram Stars for @name".

    Not translated: it is a create parameter, and a retried create must repeat it exactly.
    """
    username = (order.recipient_username or "").lstrip("@")
    recipient = f"@{username}" if username else f"Telegram ID {order.recipient_user_id}"
    return f"{order.stars} {order.product_name} for {recipient}"


class StripeCheckoutProvider:
    """Card payments on Stripe Checkout's hosted page, in the order's own currency."""

    code = CODE

    def __init__(self) -> None:
        self._client = _client()

    def account(self) -> str:
        return _account()

    # --- invoices ------------------------------------------------------------------------

    def create_invoice(self, order: Order, *, expires_at: datetime) -> Quote:
        """Open a Checkout Session for the order; a retry of the same attempt gets the same one."""
        currency = order.currency.upper()
        if exponent_of(currency) != CENTS_EXPONENT:
            raise PaymentMethodUnavailable(f"Card payments are not set up for {currency}.")
        amount_minor = to_minor(order.price, currency)
        attempt = _invoice_attempt(order)
        session_expires_at = session_expiry(expires_at, now=timezone.now())
        expires_ts = int(session_expires_at.timestamp())
        site = str(_setting("SITE_URL", DEFAULT_SITE_URL)).rstrip("/")
        name = checkout_product_name(order)
        params: dict[str, Any] = {
            "mode": "payment",
            "line_items": [{
                "price_data": {"currency": currency.lower(), "unit_amount": amount_minor,
                               "product_data": {"name": name}},
                "quantity": 1,
            }],
            "client_reference_id": order.reference,
            "metadata": {"order_reference": order.reference, "order_public_id": str(order.public_id)},
            "payment_intent_data": {"description": name,
                                    "metadata": {"order_reference": order.reference}},
            "success_url": site + reverse("shop:order_status", args=[order.public_id]),
            "cancel_url": site + reverse("shop:order_pay", args=[order.public_id]),
            "expires_at": expires_ts,
            # Adaptive Pricing would charge the buyer in their local currency, which would no
            # longer match our quote in the order's currency.
            "adaptive_pricing": {"enabled": False},
        }
        idempotency_key = f"stars-checkout-{order.public_id}-{attempt}-{expires_ts}"
        try:
            # A plain dict built above; the library's TypedDict would only restate Stripe's API.
            session = self._client.v1.checkout.sessions.create(
                params, {"idempotency_key": idempotency_key})  # type: ignore[arg-type]
        except stripe.StripeError as exc:
            raise PaymentProviderError(f"Stripe did not open a checkout: {_error_text(exc)}") from exc
        raw = session.to_dict(for_json=True)
        amount_total = _minor_units(raw.get("amount_total"))
        if amount_total is None or not raw.get("url") or not raw.get("id"):
            raise PaymentProviderError("Stripe answered without a session id, amount or URL.")
        return Quote(
            provider=self.code,
            account=_account(),
            amount_minor=amount_total,
            currency=str(raw.get("currency", "")).upper(),
            exponent=CENTS_EXPONENT,
            expires_at=_timestamp(raw.get("expires_at")) or session_expires_at,
            provider_invoice_id=str(raw["id"]),
            pay_url=str(raw["url"]),
            raw=raw,
        )

    def requote_minor(self, invoice: PaymentInvoice) -> int:
        """A late card payment is measured against the order's price, in cents."""
        return to_minor(invoice.order.price, invoice.currency)

    # --- webhooks ------------------------------------------------------------------------

    def verify_webhook(self, *, headers: Mapping[str, str], body: bytes) -> Sequence[PaymentNotice]:
        """Check the Stripe-Signature (≤ 300 s old) and the mode, then read the event."""
        secret = str(_setting("STRIPE_WEBHOOK_SECRET", ""))
        if not secret:
            raise WebhookRejected("STRIPE_WEBHOOK_SECRET is not set.")
        if _livemode() and secret == FAKE_WEBHOOK_SECRET:
            raise WebhookRejected("The fake's webhook secret is refused in live mode.")
        try:
            event = self._client.construct_event(
                body, _header(headers, "Stripe-Signature"), secret,
                tolerance=SIGNATURE_TOLERANCE_SECONDS)
        except stripe.SignatureVerificationError as exc:
            raise WebhookRejected(f"Bad Stripe signature: {exc.user_message or exc}") from exc
        except (ValueError, AttributeError) as exc:
            # Correctly signed, yet not UTF-8 JSON (ValueError) or not a JSON object
            # (AttributeError, from the library reading it as one).
            raise WebhookRejected("The signed body is not a Stripe event.") from exc
        payload = event.to_dict(for_json=True)
        data = payload.get("data")
        subject = data.get("object") if isinstance(data, dict) else None
        if (payload.get("object") != "event" or not isinstance(payload.get("id"), str)
                or not isinstance(payload.get("type"), str) or not isinstance(subject, dict)):
            raise WebhookRejected("The signed body is not a Stripe event.")
        if payload.get("livemode") is not _livemode():
            raise WebhookRejected(
                f"Event {payload['id']} has livemode={payload.get('livemode')}; "
                f"this shop runs with livemode={_livemode()}.")
        return [_notice_from_event(payload, subject, body.decode("utf-8"))]

    # --- backstop ------------------------------------------------------------------------

    def poll(self, invoices: Sequence[PaymentInvoice]) -> Sequence[PaymentNotice]:
        """Read each open session: paid or expired ones yield the notice the webhook would have.

        An open session whose order can no longer be paid (cancelled, or paid through another
        invoice), or that we closed (the buyer switched to another method), is expired at
        Stripe first, so the buyer cannot pay it by mistake; Stripe expires only open
        sessions, so one paid meanwhile is still read as paid.
        """
        notices: list[PaymentNotice] = []
        for invoice in invoices:
            if invoice.account not in (_account(), ""):
                continue  # a session of the other mode: this key cannot read it
            session_id = invoice.provider_invoice_id
            try:
                session = self._client.v1.checkout.sessions.retrieve(session_id)
                closed = (invoice.order.status not in PAYABLE_ORDER_STATUSES
                          or invoice.status == PaymentInvoice.Status.CANCELLED)
                if session.status == "open" and closed:
                    session = self._client.v1.checkout.sessions.expire(session_id)
            except stripe.InvalidRequestError as exc:
                # About this one session (unknown to this account, say): the others may be fine.
                logger.warning("Stripe poll skipped session %s: %s", session_id, _error_text(exc))
                continue
            except stripe.StripeError as exc:
                # Unreachable, our key refused, rate-limited, Stripe's own error: asking about
                # the rest now would fail too. The next scheduled poll asks again.
                logger.error("Stripe poll stopped at session %s: %s", session_id, _error_text(exc))
                break
            notice = _notice_from_polled_session(session.to_dict(for_json=True))
            if notice is not None:
                notices.append(notice)
        return notices

    # --- refunds -------------------------------------------------------------------------

    def refund(self, payment: Payment) -> RefundResult:
        """Refund the session's PaymentIntent in full; once per payment, whatever the retries."""
        intent_id = str((payment.raw or {}).get("payment_intent") or "")
        try:
            if not intent_id and payment.invoice is not None:
                session = self._client.v1.checkout.sessions.retrieve(
                    payment.invoice.provider_invoice_id)
                intent_id = str(session.payment_intent or "")
            if not intent_id:
                return RefundResult(refunded=False,
                                    message="Stripe has no PaymentIntent for this payment.")
            refund = self._client.v1.refunds.create(
                {"payment_intent": intent_id,
                 "metadata": {"order_reference": payment.order.reference or "",
                              "payment_id": str(payment.pk)}},
                {"idempotency_key": f"stars-refund-{payment.pk}-{intent_id}"},
            )
        except stripe.APIConnectionError as exc:
            return RefundResult(refunded=False, message=(
                f"Stripe unreachable, the refund may exist: refunding again is safe for 24 h "
                f"(same idempotency key). {_error_text(exc)}"))
        except stripe.StripeError as exc:
            return RefundResult(refunded=False, message=f"Stripe: {_error_text(exc)}")
        if refund.status in ("failed", "canceled"):
            return RefundResult(refunded=False, provider_reference=refund.id,
                                message=f"Stripe refund {refund.id} is {refund.status}.")
        # "pending" counts as refunded: Stripe has taken the refund and completes it itself.
        return RefundResult(refunded=True, provider_reference=refund.id,
                            message=f"Stripe refund {refund.status}")


def _session_details(session: dict[str, Any]) -> dict[str, Any]:
    """The session fields we keep with a notice (JSON-safe); refunds need payment_intent."""
    return {
        "session_id": session.get("id"),
        "payment_intent": session.get("payment_intent"),
        "status": session.get("status"),
        "payment_status": session.get("payment_status"),
        "amount_total": session.get("amount_total"),
        "currency": session.get("currency"),
        "client_reference_id": session.get("client_reference_id"),
        "metadata": session.get("metadata") or {},
        "livemode": session.get("livemode"),
    }


def _order_reference(session: dict[str, Any]) -> str:
    metadata = session.get("metadata")
    reference = session.get("client_reference_id") or (
        metadata.get("order_reference") if isinstance(metadata, dict) else "") or ""
    return str(reference)


def _session_notice(session: dict[str, Any], kind: str, occurred_at: datetime | None,
                    details: dict[str, Any], body: str = "", *, event_key: str = "") -> PaymentNotice:
    """A notice about one session; paid and expired notices are keyed by the session."""
    session_id = str(session["id"])
    currency = session.get("currency")
    return PaymentNotice(
        provider=CODE,
        event_key=event_key or f"{session_id}:{kind}",
        kind=kind,
        account=_account(),
        invoice_id=session_id,
        order_reference=_order_reference(session),
        amount_minor=_minor_units(session.get("amount_total")) if kind == NoticeKind.PAID else None,
        currency=currency.upper() if isinstance(currency, str) else "",
        occurred_at=occurred_at,
        data={**details, **_session_details(session)},
        body=body,
    )


def _notice_from_event(event: dict[str, Any], subject: dict[str, Any], body: str) -> PaymentNotice:
    """What one verified event means for us; `subject` is the event's data.object."""
    event_type = event["type"]
    occurred_at = _timestamp(event.get("created"))
    details = {"event_id": event["id"], "event_type": event_type, "source": "webhook"}
    if subject.get("object") == "checkout.session" and isinstance(subject.get("id"), str):
        paid = event_type == "checkout.session.async_payment_succeeded" or (
            event_type == "checkout.session.completed" and subject.get("payment_status") == "paid")
        if paid:
            return _session_notice(subject, NoticeKind.PAID, occurred_at, details, body)
        if event_type == "checkout.session.expired":
            return _session_notice(subject, NoticeKind.EXPIRED, occurred_at, details, body)
        # Completed but unpaid (a delayed method still clearing), a failed delayed payment
        # (the order keeps waiting until it expires), anything else: recorded, no action.
        return _session_notice(subject, NoticeKind.IGNORED, occurred_at, details, body,
                               event_key=event["id"])
    return PaymentNotice(
        provider=CODE, event_key=event["id"], kind=NoticeKind.IGNORED, account=_account(),
        occurred_at=occurred_at,
        data={**details, "object": subject.get("object"), "object_id": subject.get("id")},
        body=body,
    )


def _notice_from_polled_session(session: dict[str, Any]) -> PaymentNotice | None:
    details = {"source": "poll"}
    expires_at = _timestamp(session.get("expires_at"))
    if session.get("status") == "complete" and session.get("payment_status") == "paid":
        # Stripe does not say here when the buyer paid, only that it was before the session's
        # expiry: that bound keeps a payment made in time from counting as late.
        occurred_at = min(timezone.now(), expires_at) if expires_at else None
        return _session_notice(session, NoticeKind.PAID, occurred_at, details)
    if session.get("status") == "expired":
        return _session_notice(session, NoticeKind.EXPIRED, expires_at, details)
    return None
