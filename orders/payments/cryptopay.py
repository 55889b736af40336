"""Crypto Pay (@CryptoBot): invoices priced in the order's fiat currency, paid in crypto.

The buyer pays inside Telegram in USDT, TON or BTC; Crypto Pay converts at its own rate and
reports the invoice paid by an `invoice_paid` webhook signed with our app token, and in
`getInvoices`, which we poll as a backstop. Because the invoice is priced in fiat, the amount
we compare with the quote is the fiat amount the invoice asked, which Crypto Pay only marks
paid once the buyer has paid its full crypto equivalent.

Crypto Pay cannot refund an invoice: money goes back only by a manual `transfer`.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from datetime import UTC
from decimal import Decimal, InvalidOperation
from typing import Any

import requests
from django.conf import settings
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext as _

from orders.exceptions import PaymentProviderError, WebhookRejected
from orders.models import Order, Payment, PaymentInvoice
from orders.payments.base import NoticeKind, PaymentNotice, Quote, RefundResult
from orders.payments.money import exponent_of, to_minor

logger = logging.getLogger(__name__)

API_HOSTS = {"mainnet": "https://pay.crypt.bot", "testnet": "https://testnet-pay.crypt.bot"}
TOKEN_HEADER = "Crypto-Pay-API-Token"
SIGNATURE_HEADER = "crypto-pay-api-signature"
MAX_EXPIRES_IN = 2_678_400  # Crypto Pay accepts 1 s to 31 days
MAX_INVOICES_PER_CALL = 1000  # getInvoices' largest `count`
# Far beyond any real invoice id or amount (digits before the point), short of what would
# make int() or Decimal arithmetic fail or crawl.
MAX_INVOICE_ID_DIGITS = 20
MAX_AMOUNT_DIGITS = 30
DEFAULT_ACCEPTED_ASSETS = ("USDT", "TON", "BTC")
# Crypto Pay retries a webhook for up to 3 days (API 1.5.2): a signed update older than that
# is a replay, never a retry. Replays are harmless anyway (the inbox stores each event once).
DEFAULT_WEBHOOK_MAX_AGE = timedelta(days=3, hours=12)
# Signed in the future by more than this: our clock or theirs is wrong; refuse and let it retry.
WEBHOOK_FUTURE_TOLERANCE = timedelta(minutes=5)
DEFAULT_SITE_URL = "http://127.0.0.1:8000"


class MalformedUpdate(ValueError):
    """An invoice or update from Crypto Pay lacks a field we need, or has one we cannot read."""


def _setting(name: str, default: Any) -> Any:
    # Read at call time so tests (and a settings change) take effect without a restart.
    return getattr(settings, name, default)


def cryptopay_app_key(token: str) -> str:
    """Which Crypto Pay app a token belongs to, without the token's secret part.

    Tokens read "<app id>:<secret>"; getMe would say the same at the cost of a call. A token
    of another shape is named by a short hash, never by itself.
    """
    app_id, colon, _ = token.partition(":")
    if colon and app_id.isdigit():
        return f"app{app_id}"
    return f"token-sha256:{hashlib.sha256(token.encode()).hexdigest()[:16]}"


def webhook_signature(token: str, body: bytes) -> str:
    """Hex HMAC-SHA-256 of the raw body keyed with SHA-256 of the app token, as Crypto Pay signs."""
    secret = hashlib.sha256(token.encode()).digest()
    return hmac.new(secret, body, hashlib.sha256).hexdigest()


class CryptoPayProvider:
    """Crypto Pay invoices in the order's currency, paid in USDT, TON or BTC via @CryptoBot."""

    code = "cryptopay"

    def __init__(self) -> None:
        self.token: str = _setting("CRYPTOPAY_TOKEN", "")
        self.network: str = _setting("CRYPTOPAY_NETWORK", "mainnet")
        if self.network not in API_HOSTS:
            raise PaymentProviderError(f"CRYPTOPAY_NETWORK must be one of {sorted(API_HOSTS)}.")
        self.base_url: str = (_setting("CRYPTOPAY_BASE_URL", "") or API_HOSTS[self.network]).rstrip("/")
        self.timeout: float = float(_setting("CRYPTOPAY_TIMEOUT", 10.0))
        self.accepted_assets: list[str] = list(
            _setting("CRYPTOPAY_ACCEPTED_ASSETS", DEFAULT_ACCEPTED_ASSETS))
        self.webhook_max_age = timedelta(seconds=int(_setting(
            "CRYPTOPAY_WEBHOOK_MAX_AGE_SECONDS", DEFAULT_WEBHOOK_MAX_AGE.total_seconds())))
        self.return_url: str = _setting("CRYPTOPAY_RETURN_URL", "")

    def account(self) -> str:
        # Invoice ids are numbered per app and network: 1001 on testnet is not 1001 on mainnet.
        return f"{self.network}:{cryptopay_app_key(self.token)}"

    # --- Invoices ----------------------------------------------------------------------------

    def create_invoice(self, order: Order, *, expires_at: datetime) -> Quote:
        currency = order.currency.upper()
        amount_minor = to_minor(order.price, currency)
        # Rounded down so Crypto Pay stops taking money no later than our quote ends.
        expires_in = int((expires_at - timezone.now()).total_seconds())
        if expires_in < 1:
            raise PaymentProviderError("The quote expires before an invoice could be paid.")
        # @CryptoBot shows these texts to the buyer, so they follow the request's language.
        description = _("%(stars)s Telegram Stars for %(recipient)s (order %(reference)s, %(shop)s)") % {
            "stars": order.stars, "recipient": order.recipient_display,
            "reference": order.reference, "shop": settings.SHOP_NAME,
        }
        params: dict[str, Any] = {
            "currency_type": "fiat",
            "fiat": currency,
            "amount": str(order.price),
            "accepted_assets": ",".join(self.accepted_assets),
            "description": description[:1024],
            "hidden_message": _("Thank you! Order %(reference)s is paid; your Stars are on their way.")
            % {"reference": order.reference},
            # The reference comes back in every update, and the inbox checks it against the
            # invoice it matched by id.
            "payload": order.reference,
            "expires_in": min(expires_in, MAX_EXPIRES_IN),
            "allow_comments": False,
            # A named payer is the only lead to send money back by hand (Crypto Pay has no refund).
            "allow_anonymous": False,
        }
        # Without a button the buyer is left on Crypto Pay's page after paying.
        params["paid_btn_name"] = "callback"
        params["paid_btn_url"] = self._return_url(order)
        invoice = self._call("createInvoice", params)
        try:
            invoice_id = _invoice_id(invoice)
            asked_minor, asked_currency = _asked(invoice)
        except MalformedUpdate as exc:
            raise PaymentProviderError(
                f"Crypto Pay createInvoice answered an unusable invoice: {exc}") from None
        if (asked_minor, asked_currency) != (amount_minor, currency):
            raise PaymentProviderError(
                f"Crypto Pay invoice {invoice_id} asks {asked_minor} {asked_currency}, "
                f"we asked {amount_minor} {currency}")
        pay_url = (invoice.get("bot_invoice_url") or invoice.get("mini_app_invoice_url")
                   or invoice.get("web_app_invoice_url") or invoice.get("pay_url") or "")
        if not pay_url:
            raise PaymentProviderError(f"Crypto Pay invoice {invoice_id} came without a payment link")
        return Quote(
            provider=self.code,
            account=self.account(),
            amount_minor=amount_minor,
            currency=currency,
            exponent=exponent_of(currency),
            expires_at=expires_at,
            provider_invoice_id=invoice_id,
            pay_url=pay_url,
            raw=invoice,
        )

    def _return_url(self, order: Order) -> str:
        """Where the "Return" button leads: CRYPTOPAY_RETURN_URL, or the order's status page."""
        if self.return_url:
            return self.return_url.format(public_id=order.public_id, reference=order.reference)
        site = str(_setting("SITE_URL", DEFAULT_SITE_URL)).rstrip("/")
        return site + reverse("shop:order_status", args=[order.public_id])

    def requote_minor(self, invoice: PaymentInvoice) -> int:
        # Fiat invoices are priced in the order's own currency: no rate moves the price.
        return to_minor(invoice.order.price, invoice.currency)

    def refund(self, payment: Payment) -> RefundResult:
        raw = payment.raw or {}
        paid = f"{raw.get('paid_amount', '?')} {raw.get('paid_asset', '')}".strip()
        payer = (f"buyer's Telegram id {payment.order.buyer_telegram_id}"
                 if payment.order.buyer_telegram_id else "payer's Telegram user id")
        return RefundResult(
            refunded=False,
            message=(f"Crypto Pay cannot refund invoice {raw.get('invoice_id', '?')}: send {paid} "
                     f"back by hand with a Crypto Pay transfer to the {payer} "
                     "(the user must have started @CryptoBot)"),
        )

    # --- Webhooks and polling -------------------------------------------------------------

    def verify_webhook(self, *, headers: Mapping[str, str], body: bytes) -> Sequence[PaymentNotice]:
        if not self.token:
            raise WebhookRejected("CRYPTOPAY_TOKEN is not set: no update can be verified")
        given = _header(headers, SIGNATURE_HEADER).strip().lower()
        if not given:
            raise WebhookRejected(f"Missing {SIGNATURE_HEADER} header")
        expected = webhook_signature(self.token, body)
        if not hmac.compare_digest(expected.encode(), given.encode("utf-8", "replace")):
            # Also what an update signed with another app's token (or the other network's) gets.
            raise WebhookRejected("Bad signature")
        try:
            # Decoded first: json.loads would also take UTF-16 and UTF-32 bytes. RecursionError:
            # JSON nested deeper than Python's stack.
            text = body.decode("utf-8")
            update = json.loads(text)
        except (UnicodeDecodeError, ValueError, RecursionError):
            raise WebhookRejected("Body is not JSON") from None
        if not isinstance(update, dict):
            raise WebhookRejected("Body is not a JSON object")
        self._check_fresh(update.get("request_date"))
        update_type = update.get("update_type")
        invoice = update.get("payload")
        contradictory = isinstance(invoice, dict) and invoice.get("status") != "paid"
        if update_type != "invoice_paid" or contradictory:
            # Another kind of update, or a contradictory one: kept on record, never acted on.
            return [PaymentNotice(provider=self.code, event_key=_update_key(update, body),
                                  kind=NoticeKind.IGNORED, account=self.account(), data=update,
                                  body=text)]
        if not isinstance(invoice, dict):
            raise WebhookRejected("invoice_paid update without an invoice")
        try:
            return [self._paid_notice(invoice, body=text)]
        except MalformedUpdate as exc:
            raise WebhookRejected(f"Unusable invoice in invoice_paid: {exc}") from None

    def poll(self, invoices: Sequence[PaymentInvoice]) -> Sequence[PaymentNotice]:
        # Another app's or network's invoice 1001 is not the 1001 this token can read; rows
        # stored before invoices carried an account ("") are checked by their hash below.
        account = self.account()
        ours = {invoice.provider_invoice_id: invoice
                for invoice in sorted(invoices, key=lambda invoice: invoice.account == account)
                if invoice.provider_invoice_id.isdigit() and invoice.account in (account, "")}
        ids = sorted(ours, key=int)
        notices: list[PaymentNotice] = []
        for start in range(0, len(ids), MAX_INVOICES_PER_CALL):
            batch = ids[start:start + MAX_INVOICES_PER_CALL]
            # No status filter: one call answers both paid and expired invoices.
            try:
                result = self._call("getInvoices", {"invoice_ids": ",".join(batch), "count": len(batch)})
            except PaymentProviderError as exc:
                # The next scheduled poll asks again; other providers must still be polled now.
                logger.error("Crypto Pay poll failed: %s", exc)
                break
            items = result.get("items") if isinstance(result, dict) else None
            for item in items if isinstance(items, list) else []:
                notice = self._poll_notice(item, ours)
                if notice is not None:
                    notices.append(notice)
        return notices

    def _poll_notice(self, item: Any, ours: Mapping[str, PaymentInvoice]) -> PaymentNotice | None:
        try:
            invoice_id = _invoice_id(item)
        except MalformedUpdate as exc:
            logger.warning("Crypto Pay getInvoices returned an unusable invoice: %s", exc)
            return None
        stored = ours.get(invoice_id)
        if stored is None:
            return None
        known_hash = (stored.raw or {}).get("hash")
        if known_hash and item.get("hash") != known_hash:
            # Same number, different invoice: ids are per network, so this is another network's
            # (CRYPTOPAY_NETWORK changed under open invoices). Never let it pay ours.
            logger.warning("Crypto Pay invoice %s: hash %s is not ours (%s)", invoice_id,
                           item.get("hash"), known_hash)
            return None
        try:
            if item.get("status") == "paid":
                return self._paid_notice(item, body=json.dumps(item))
            if item.get("status") == "expired":
                return PaymentNotice(
                    provider=self.code, event_key=f"{self.account()}:invoice-{invoice_id}-expired",
                    kind=NoticeKind.EXPIRED, account=self.account(), invoice_id=invoice_id,
                    order_reference=_reference(item),
                    occurred_at=_moment(item.get("expiration_date")),
                    data=item, body=json.dumps(item),
                )
        except MalformedUpdate as exc:
            logger.warning("Crypto Pay invoice %s is unusable: %s", invoice_id, exc)
        return None

    def _paid_notice(self, invoice: dict[str, Any], *, body: str) -> PaymentNotice:
        """The notice for a paid invoice; a webhook and a poll of one invoice give the same key."""
        invoice_id = _invoice_id(invoice)
        amount_minor, currency = _asked(invoice)
        return PaymentNotice(
            provider=self.code,
            # Crypto Pay takes one payment per invoice, so the invoice names the payment; its id
            # only within the app and network, so they are part of the key.
            event_key=f"{self.account()}:invoice-{invoice_id}-paid",
            kind=NoticeKind.PAID,
            # The token that verified the webhook (or made the poll) names the app it is about.
            account=self.account(),
            invoice_id=invoice_id,
            order_reference=_reference(invoice),
            amount_minor=amount_minor,
            currency=currency,
            occurred_at=_moment(invoice.get("paid_at")),
            data=invoice,
            body=body,
        )

    def _check_fresh(self, request_date: Any) -> None:
        try:
            sent = _moment(request_date)
        except MalformedUpdate:
            raise WebhookRejected("Unreadable request_date") from None
        if sent is None:
            raise WebhookRejected("Missing request_date")
        now = timezone.now()
        if sent < now - self.webhook_max_age:
            raise WebhookRejected(f"Stale update: request_date {request_date}")
        if sent > now + WEBHOOK_FUTURE_TOLERANCE:
            raise WebhookRejected(f"request_date {request_date} is in the future")

    # --- HTTP ------------------------------------------------------------------------------

    def _call(self, method: str, params: dict[str, Any]) -> Any:
        """Call one Crypto Pay API method and return its `result` (network: never in a transaction)."""
        if not self.token:
            raise PaymentProviderError("Crypto Pay is not configured: CRYPTOPAY_TOKEN is empty.")
        try:
            response = requests.post(f"{self.base_url}/api/{method}", json=params,
                                     headers={TOKEN_HEADER: self.token}, timeout=self.timeout)
        except requests.RequestException as exc:
            raise PaymentProviderError(f"Crypto Pay {method} unreachable: {type(exc).__name__}") from exc
        try:
            answer = response.json()
        except ValueError:
            raise PaymentProviderError(
                f"Crypto Pay {method}: HTTP {response.status_code} without JSON") from None
        if not isinstance(answer, dict) or answer.get("ok") is not True or "result" not in answer:
            error = answer.get("error") if isinstance(answer, dict) else None
            name = error.get("name") if isinstance(error, dict) else None
            raise PaymentProviderError(
                f"Crypto Pay {method} failed: {name or 'unknown error'} (HTTP {response.status_code})")
        return answer["result"]


def _header(headers: Mapping[str, str], name: str) -> str:
    value = headers.get(name)
    if value is None:
        # Django's request.headers ignores case; a plain mapping (tests, tasks) may not.
        value = next((v for k, v in headers.items() if k.lower() == name), None)
    return value or ""


def _update_key(update: dict[str, Any], body: bytes) -> str:
    update_id = update.get("update_id")
    if isinstance(update_id, int) and not isinstance(update_id, bool):
        return f"update-{update_id}"
    # No usable id: the body itself names the event, so a retry still lands on one inbox row.
    return f"update-sha256-{hashlib.sha256(body).hexdigest()}"


def _invoice_id(invoice: Any) -> str:
    if not isinstance(invoice, dict):
        raise MalformedUpdate("not an object")
    invoice_id = invoice.get("invoice_id")
    readable = isinstance(invoice_id, (int, str)) and not isinstance(invoice_id, bool)
    # ASCII digits only: str.isdigit() also takes "²", which int() refuses; and a length a
    # real id has, so int() never meets thousands of digits.
    text = str(invoice_id) if readable else ""
    if not (text.isascii() and text.isdigit() and len(text) <= MAX_INVOICE_ID_DIGITS):
        raise MalformedUpdate(f"invoice_id {invoice_id!r}")
    return str(int(text))


def _asked(invoice: dict[str, Any]) -> tuple[int, str]:
    """What the invoice asked, in smallest units: the fiat amount for fiat invoices."""
    if invoice.get("currency_type", "crypto") == "fiat":
        currency = invoice.get("fiat")
    else:
        currency = invoice.get("asset")
    if not isinstance(currency, str) or not currency:
        raise MalformedUpdate("no currency")
    amount = invoice.get("amount")
    # Crypto Pay sends amounts as decimal strings; a float would already have lost precision.
    if isinstance(amount, bool) or not isinstance(amount, (str, int)):
        raise MalformedUpdate(f"amount {amount!r}")
    try:
        value = Decimal(str(amount))
    except InvalidOperation:
        raise MalformedUpdate(f"amount {amount!r}") from None
    # An exponent of a billion would overflow to_minor, or build an integer of a million digits.
    if not value.is_finite() or value.adjusted() > MAX_AMOUNT_DIGITS:
        raise MalformedUpdate(f"amount {amount!r}")
    return to_minor(value, currency), currency.upper()


def _reference(invoice: dict[str, Any]) -> str:
    payload = invoice.get("payload")
    return payload.strip() if isinstance(payload, str) else ""


def _moment(value: Any) -> datetime | None:
    if value in (None, ""):
        return None
    if not isinstance(value, str):
        raise MalformedUpdate(f"date {value!r}")
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise MalformedUpdate(f"date {value!r}") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
