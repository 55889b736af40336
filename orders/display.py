"""What buyers read about orders, in every channel: status labels, messages, money."""

from decimal import Decimal
from typing import Any

from orders.models import Order
from orders.models import OrderStatus as S
from orders.transitions import FINAL_STATUSES

CURRENCY_SYMBOLS = {"USD": "$", "EUR": "€", "GBP": "£"}

STATUS_LABELS = {
    S.AWAITING_PAYMENT: "Awaiting payment",
    S.PAID: "Paid, sending Stars",
    S.SUBMITTING: "Sending Stars",
    S.PROCESSING: "Sending Stars",
    S.UNKNOWN: "Checking with our supplier",
    S.DELIVERED: "Delivered",
    S.ON_HOLD: "Delayed",
    S.REVIEW: "Being checked",
    S.FAILED: "Not delivered",
    S.REFUND_PENDING: "Not delivered, refund in progress",
    S.REFUNDED: "Not delivered, refunded",
    S.EXPIRED: "Expired",
    S.CANCELLED: "Cancelled",
}


def money_display(amount: Decimal, currency: str) -> str:
    """$8.50, or 8.50 CHF where we have no symbol; unit prices keep their significant places."""
    text = f"{amount:f}"
    if "." in text:
        whole, fraction = text.split(".")
        text = f"{whole}.{fraction.rstrip('0').ljust(2, '0')}"
    else:
        text = f"{text}.00"
    symbol = CURRENCY_SYMBOLS.get(currency)
    return f"{symbol}{text}" if symbol else f"{text} {currency}"


def recipient_handle(username: str | None, user_id: str) -> str:
    """@name when the account has one, else its numeric ID."""
    if username:
        return "@" + username.lstrip("@")
    return f"Telegram ID {user_id}"


def order_status_message(order: Order) -> str:
    """What the buyer should know about an order now, in one sentence or two."""
    stars = f"{order.stars:,} {order.product.unit_name}"
    handle = recipient_handle(order.recipient_username, order.recipient_user_id)
    status = order.status
    if status == S.AWAITING_PAYMENT:
        return f"Waiting for your payment of {money_display(order.price, order.currency)}."
    if status in (S.PAID, S.SUBMITTING, S.PROCESSING):
        return f"Payment received. Sending {stars} to {handle}…"
    if status == S.DELIVERED:
        return f"✅ {stars} sent to {handle}. Order #{order.reference}"
    if status in (S.FAILED, S.REFUND_PENDING):
        return (f"We couldn't send the {stars} to {handle}, so nothing was delivered. "
                "Your payment is being refunded.")
    if status == S.REFUNDED:
        return (f"We couldn't send the {stars} to {handle}, so nothing was delivered. "
                "Your payment has been refunded.")
    if status == S.EXPIRED:
        return "This order expired before it was paid. Nothing was charged."
    if status == S.CANCELLED:
        return "This order was cancelled. Nothing was charged."
    # unknown, on_hold, review: a person or the sweeper will finish it.
    return ("We're on it: your order is safe and we're checking it with our supplier. "
            f"Either the {stars} reach {handle} or your payment is refunded. No need to pay again.")


def order_status_payload(order: Order) -> dict[str, Any]:
    return {
        "reference": order.reference,
        "status": order.status,
        "status_label": STATUS_LABELS.get(order.status, order.get_status_display()),
        "message": order_status_message(order),
        "is_final": order.status in FINAL_STATUSES,
    }
