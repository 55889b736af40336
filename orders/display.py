"""What buyers read about orders, in every channel: status labels, messages, money.

Every text is translated when a function runs, so it follows the language active then: the
request's on the storefront (LocaleMiddleware), `translation.override(...)` in the bot.
"""

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from django.utils import formats, timezone
from django.utils.functional import Promise
from django.utils.translation import gettext as _
from django.utils.translation import ngettext, pgettext, pgettext_lazy

from orders.models import Order, PaymentInvoice
from orders.models import OrderStatus as S
from orders.payments.money import from_minor
from orders.transitions import FINAL_STATUSES

CURRENCY_SYMBOLS = {"USD": "$", "EUR": "€", "GBP": "£"}

# Lazy: the label is looked up in whichever language is active when it is read.
STATUS_LABELS: dict[str, Promise] = {
    S.AWAITING_PAYMENT: pgettext_lazy("order status", "Awaiting payment"),
    S.PAID: pgettext_lazy("order status", "Paid, sending Stars"),
    S.SUBMITTING: pgettext_lazy("order status", "Sending Stars"),
    S.PROCESSING: pgettext_lazy("order status", "Sending Stars"),
    S.UNKNOWN: pgettext_lazy("order status", "Checking with our supplier"),
    S.DELIVERED: pgettext_lazy("order status", "Delivered"),
    S.ON_HOLD: pgettext_lazy("order status", "Delayed"),
    S.REVIEW: pgettext_lazy("order status", "Being checked"),
    S.FAILED: pgettext_lazy("order status", "Not delivered"),
    S.REFUND_PENDING: pgettext_lazy("order status", "Not delivered, refund in progress"),
    S.REFUNDED: pgettext_lazy("order status", "Not delivered, refunded"),
    S.EXPIRED: pgettext_lazy("order status", "Expired"),
    S.CANCELLED: pgettext_lazy("order status", "Cancelled"),
}


def number_display(value: int) -> str:
    """5,000 in English, 5 000 in Russian: grouped the way the active language groups digits."""
    return formats.number_format(value, force_grouping=True)


def stars_display(quantity: int) -> str:
    """500 Stars, 1 Star; «500 звёзд», «1 звезда», «2 звезды»."""
    return ngettext("%(count)s Star", "%(count)s Stars", quantity) % {
        "count": number_display(quantity)
    }


def money_display(amount: Decimal, currency: str) -> str:
    """$8.50, or 8.50 CHF where we have no symbol; unit prices keep their significant places.

    The decimal separator and where the symbol goes follow the active language («8,50 $»).
    """
    whole, _point, fraction = f"{amount:f}".partition(".")
    fraction = fraction.rstrip("0").ljust(2, "0")
    number = formats.number_format(Decimal(f"{whole}.{fraction}"), decimal_pos=len(fraction))
    symbol = CURRENCY_SYMBOLS.get(currency)
    if symbol:
        return pgettext("money: currency symbol and amount", "%(symbol)s%(amount)s") % {
            "symbol": symbol, "amount": number,
        }
    return pgettext("money: amount and currency code", "%(amount)s %(currency)s") % {
        "amount": number, "currency": currency,
    }


def recipient_handle(username: str | None, user_id: str) -> str:
    """@name when the account has one, else its numeric ID."""
    if username:
        return "@" + username.lstrip("@")
    return _("Telegram ID %(user_id)s") % {"user_id": user_id}


@dataclass(frozen=True)
class PaymentDue:
    """What a buyer must send for an unpaid order, in what, and by when."""

    amount: Decimal
    currency: str
    pay_by: datetime


def order_payment_due(order: Order) -> PaymentDue:
    """The open quote's amount, currency and expiry; without one, the order's price and window.

    A quote in another currency (1.70 TON for $8.50) is what the buyer must actually send, and
    its expiry is already the earlier of the quote's and the order's.
    """
    invoice = (order.invoices.filter(provider=order.payment_method, status=PaymentInvoice.Status.OPEN,
                                     expires_at__gt=timezone.now())
               .order_by("-created_at").first())
    if invoice is None:
        return PaymentDue(amount=order.price, currency=order.currency, pay_by=order.expires_at)
    return PaymentDue(amount=from_minor(invoice.amount_minor, invoice.currency),
                      currency=invoice.currency, pay_by=invoice.expires_at)


def order_status_message(order: Order) -> str:
    """What the buyer should know about an order now, in one sentence or two."""
    count = order.stars
    handle = recipient_handle(order.recipient_username, order.recipient_user_id)
    # Whole sentences per plural form: in Russian the noun and the verb both agree with the number.
    values = {"count": number_display(count), "handle": handle, "reference": order.reference}
    status = order.status
    if status == S.AWAITING_PAYMENT:
        due = order_payment_due(order)
        return _("Waiting for your payment of %(amount)s.") % {
            "amount": money_display(due.amount, due.currency)
        }
    if status in (S.PAID, S.SUBMITTING, S.PROCESSING):
        return ngettext(
            "Payment received. Sending %(count)s Star to %(handle)s…",
            "Payment received. Sending %(count)s Stars to %(handle)s…",
            count,
        ) % values
    if status == S.DELIVERED:
        return ngettext(
            "✅ %(count)s Star sent to %(handle)s. Order #%(reference)s",
            "✅ %(count)s Stars sent to %(handle)s. Order #%(reference)s",
            count,
        ) % values
    if status in (S.FAILED, S.REFUND_PENDING):
        return ngettext(
            "We couldn't send the %(count)s Star to %(handle)s, so nothing was delivered. "
            "Your payment is being refunded.",
            "We couldn't send the %(count)s Stars to %(handle)s, so nothing was delivered. "
            "Your payment is being refunded.",
            count,
        ) % values
    if status == S.REFUNDED:
        return ngettext(
            "We couldn't send the %(count)s Star to %(handle)s, so nothing was delivered. "
            "Your payment has been refunded.",
            "We couldn't send the %(count)s Stars to %(handle)s, so nothing was delivered. "
            "Your payment has been refunded.",
            count,
        ) % values
    if status == S.EXPIRED:
        return _("This order expired before it was paid. Nothing was charged.")
    if status == S.CANCELLED:
        return _("This order was cancelled. Nothing was charged.")
    # unknown, on_hold, review: a person or the sweeper will finish it.
    return ngettext(
        "We're on it: your order is safe and we're checking it with our supplier. "
        "Either the %(count)s Star reaches %(handle)s or your payment is refunded. "
        "No need to pay again.",
        "We're on it: your order is safe and we're checking it with our supplier. "
        "Either the %(count)s Stars reach %(handle)s or your payment is refunded. "
        "No need to pay again.",
        count,
    ) % values


def order_status_payload(order: Order) -> dict[str, Any]:
    label = STATUS_LABELS.get(order.status)
    return {
        "reference": order.reference,
        "status": order.status,
        "status_label": str(label) if label is not None else order.get_status_display(),
        "message": order_status_message(order),
        "is_final": order.status in FINAL_STATUSES,
    }
