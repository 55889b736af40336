"""Telegram Payments: the bot sends an invoice (sendInvoice) paid through a provider token.

Off by default: Telegram's rules ask that digital goods sold inside a bot be paid in Stars
(currency XTR), and provider tokens are meant for physical goods, so card buyers in the bot
are sent to the hosted checkout instead. Kept for shops whose provider and Telegram allow it.

There is no provider call here: the bot sends the invoice itself, with the invoice's
provider_invoice_id as the payload Telegram echoes back in pre_checkout_query and
successful_payment. Those updates reach us through the bot (authenticated by the bot's
webhook secret, or by our own long polling), never through the shop's payment webhook.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from uuid import uuid4

from django.conf import settings
from django.utils import timezone

from orders.exceptions import PaymentMethodUnavailable, WebhookRejected
from orders.models import Order, Payment, PaymentInvoice
from orders.models import OrderStatus as S
from orders.payments.base import NoticeKind, PaymentNotice, Quote, RefundResult
from orders.payments.money import exponent_of, to_minor

CODE = "telegram"
# Telegram caps an invoice payload at 128 bytes; ours is the prefix and 32 hex digits.
PAYLOAD_PREFIX = "tgp-"


class CheckoutRefusal:
    """Why a pre_checkout_query is answered ok=False; the bot words each for the buyer."""

    UNKNOWN = "unknown"  # no invoice of ours has this payload
    PAID = "paid"  # the order was paid already (or is past payment)
    CANCELLED = "cancelled"
    EXPIRED = "expired"  # the order or this invoice is past its payment window
    AMOUNT = "amount"  # Telegram asks for another amount or currency than we quoted


def provider_token() -> str:
    """The payment provider token BotFather gave for this bot (Payments → a provider)."""
    return str(getattr(settings, "TELEGRAM_PAYMENTS_PROVIDER_TOKEN", "") or "")


class TelegramPaymentsProvider:
    """An invoice inside the bot, paid in the order's currency through the provider token."""

    code = CODE

    def account(self) -> str:
        # Our payloads are random UUIDs, unique whatever the bot or provider: no account needed.
        return ""

    def create_invoice(self, order: Order, *, expires_at: datetime) -> Quote:
        if not provider_token():
            raise PaymentMethodUnavailable("TELEGRAM_PAYMENTS_PROVIDER_TOKEN is not set.")
        currency = order.currency.upper()
        return Quote(
            provider=self.code,
            amount_minor=to_minor(order.price, currency),
            currency=currency,
            exponent=exponent_of(currency),
            expires_at=expires_at,
            provider_invoice_id=f"{PAYLOAD_PREFIX}{uuid4().hex}",
        )

    def verify_webhook(self, *, headers: Mapping[str, str], body: bytes) -> Sequence[PaymentNotice]:
        raise WebhookRejected("Telegram Payments arrive as bot updates (successful_payment), "
                              "not on the payment webhook.")

    def poll(self, invoices: Sequence[PaymentInvoice]) -> Sequence[PaymentNotice]:
        # The Bot API has no way to look a provider payment up; successful_payment is the record.
        return []

    def requote_minor(self, invoice: PaymentInvoice) -> int:
        return to_minor(invoice.order.price, invoice.currency)

    def refund(self, payment: Payment) -> RefundResult:
        # refundStarPayment exists only for Stars (XTR); provider payments are refunded at the provider.
        raw = payment.raw or {}
        return RefundResult(
            refunded=False,
            message=(f"Telegram Payments cannot refund through the Bot API: refund provider charge "
                     f"{raw.get('provider_payment_charge_id') or '?'} (Telegram charge "
                     f"{raw.get('telegram_payment_charge_id') or payment.provider_reference}) "
                     "by hand in the payment provider's dashboard"),
        )


def telegram_checkout_refusal(*, payload: str, currency: str, total_amount: int) -> str:
    """Why a pre_checkout_query must be refused, or "" when the order can take this payment."""
    invoice = (PaymentInvoice.objects.select_related("order")
               .filter(provider=CODE, provider_invoice_id=payload).first())
    if invoice is None:
        return CheckoutRefusal.UNKNOWN
    order = invoice.order
    if order.status == S.CANCELLED:
        return CheckoutRefusal.CANCELLED
    if order.status == S.EXPIRED:
        return CheckoutRefusal.EXPIRED
    if order.status != S.AWAITING_PAYMENT or invoice.status == PaymentInvoice.Status.PAID:
        return CheckoutRefusal.PAID
    now = timezone.now()
    if invoice.status != PaymentInvoice.Status.OPEN or invoice.expires_at <= now or order.expires_at <= now:
        return CheckoutRefusal.EXPIRED
    if currency.upper() != invoice.currency.upper() or total_amount != invoice.amount_minor:
        return CheckoutRefusal.AMOUNT
    return ""


def telegram_payment_notice(*, payload: str, currency: str, total_amount: int,
                            telegram_payment_charge_id: str, provider_payment_charge_id: str,
                            payer_telegram_id: int | None = None) -> PaymentNotice:
    """A successful_payment as the payment inbox takes it, keyed by Telegram's charge id."""
    return PaymentNotice(
        provider=CODE,
        event_key=telegram_payment_charge_id,
        kind=NoticeKind.PAID,
        invoice_id=payload,
        amount_minor=total_amount,
        currency=currency.upper(),
        occurred_at=timezone.now(),
        data={
            "invoice_payload": payload,
            "telegram_payment_charge_id": telegram_payment_charge_id,
            "provider_payment_charge_id": provider_payment_charge_id,
            "payer_telegram_id": payer_telegram_id,
            "total_amount": total_amount,
            "currency": currency.upper(),
        },
    )
