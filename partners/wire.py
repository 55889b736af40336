"""How partner orders look on the wire: the supplier API's order shape and five statuses.

The statuses are the ones our own supplier client reads (orders.suppliers.base): pending,
processing, completed, failed. Only a final status of ours becomes a final one on the wire,
so a partner that refunds its buyer on "failed" can never see the Stars delivered after all:
"failed" means the order was refunded to the partner's balance.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from orders.models import Order
from orders.models import OrderStatus as S

PENDING, PROCESSING, COMPLETED, FAILED = "pending", "processing", "completed", "failed"
WIRE_STATUSES = (PENDING, PROCESSING, COMPLETED, FAILED)

_WIRE_STATUS: dict[str, str] = {
    S.AWAITING_PAYMENT: PENDING,
    S.PAID: PENDING,
    S.SUBMITTING: PENDING,
    S.PROCESSING: PROCESSING,
    S.UNKNOWN: PROCESSING,
    S.ON_HOLD: PROCESSING,
    S.REVIEW: PROCESSING,
    S.FAILED: PROCESSING,
    S.REFUND_PENDING: PROCESSING,
    S.DELIVERED: COMPLETED,
    S.REFUNDED: FAILED,
    S.EXPIRED: FAILED,
    S.CANCELLED: FAILED,
}
# Our statuses behind each wire status, for the list's ?status= filter.
STATUSES_BY_WIRE: dict[str, list[str]] = {
    wire: [ours for ours, shown in _WIRE_STATUS.items() if shown == wire] for wire in WIRE_STATUSES
}


def wire_status(status: str) -> str:
    return _WIRE_STATUS.get(status, PROCESSING)


def wire_time(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    return moment.isoformat().replace("+00:00", "Z")


def order_wire(order: Order, *, reference: str) -> dict[str, Any]:
    """One order as GET /orders/{order_id} shows it."""
    status = wire_status(order.status)
    failure_reason = ""
    if status == FAILED:
        failure_reason = order.status_reason or "refunded"
    return {
        "order_id": str(order.public_id),
        "reference": reference,
        "status": status,
        "platform": order.platform,
        "user_id": order.recipient_user_id,
        "username": order.recipient_username or None,
        "stars": order.stars,
        "package_id": order.package_id,
        # What the partner paid for it: the partner's cost, as a supplier reports its own.
        "cost": str(order.price),
        "currency": order.currency,
        "refunded": order.status == S.REFUNDED,
        "failure_reason": failure_reason,
        "created_at": wire_time(order.created_at),
        "updated_at": wire_time(order.status_changed_at),
        "delivered_at": wire_time(order.delivered_at),
    }
