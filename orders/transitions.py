"""The order state machine: the declared moves and the one function that makes them."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from orders import queue
from orders.exceptions import InvalidTransition, OrderStateChanged
from orders.models import Order, OrderEvent
from orders.models import OrderStatus as S

TRANSITIONS: dict[str, frozenset[str]] = {
    S.AWAITING_PAYMENT: frozenset({S.PAID, S.EXPIRED, S.CANCELLED, S.REVIEW}),
    S.PAID: frozenset({S.SUBMITTING, S.ON_HOLD, S.REVIEW, S.FAILED}),
    # Back to PAID only when the supplier said for certain that nothing was placed.
    S.SUBMITTING: frozenset(
        {S.PROCESSING, S.DELIVERED, S.UNKNOWN, S.FAILED, S.ON_HOLD, S.PAID, S.REVIEW}
    ),
    S.PROCESSING: frozenset({S.DELIVERED, S.FAILED, S.UNKNOWN, S.REVIEW}),
    # UNKNOWN leaves only on what a lookup by our idempotency key found (or an operator).
    S.UNKNOWN: frozenset({S.PROCESSING, S.DELIVERED, S.FAILED, S.PAID, S.REVIEW}),
    S.ON_HOLD: frozenset({S.PAID, S.REVIEW, S.REFUND_PENDING}),
    # REFUNDED: an operator refunded it outside the shop and records the reference.
    S.REVIEW: frozenset({S.PAID, S.REFUND_PENDING, S.DELIVERED, S.REFUNDED}),
    S.FAILED: frozenset({S.REFUND_PENDING}),
    S.REFUND_PENDING: frozenset({S.REFUNDED, S.REVIEW}),
    # Closed for the buyer, but money that arrives late must reach an operator, never vanish.
    # A late payment that covers the current price is accepted (re-quoted), else reviewed.
    S.EXPIRED: frozenset({S.PAID, S.REVIEW}),
    S.CANCELLED: frozenset({S.REVIEW}),
    # Final: Stars are non-reversible once delivered.
    S.DELIVERED: frozenset(),
    S.REFUNDED: frozenset(),
}

FINAL_STATUSES = frozenset({S.DELIVERED, S.REFUNDED, S.EXPIRED, S.CANCELLED})
# Moves the buyer is told about, through the channel they ordered on.
BUYER_NOTICE_STATUSES = frozenset({S.DELIVERED, S.REFUND_PENDING, S.REFUNDED})
# Paid orders a worker still owes something: the sweeper's queue.
IN_FLIGHT_STATUSES = frozenset({S.PAID, S.SUBMITTING, S.PROCESSING, S.UNKNOWN})


def can_transition(from_status: str, to_status: str) -> bool:
    """Whether the state machine declares this move."""
    return to_status in TRANSITIONS.get(from_status, frozenset())


def order_transition(
    *,
    order: Order,
    to_status: str,
    actor: str,
    reason: str = "",
    data: dict[str, Any] | None = None,
    expected_status: str | None = None,
    **fields: Any,
) -> Order:
    """Move an order to a new status, recording an OrderEvent; the only writer of Order.status.

    The move is a conditional UPDATE on the status we read, so of two racing callers exactly
    one wins (select_for_update alone would do nothing on SQLite). The loser gets
    OrderStateChanged and must re-read. ``fields`` are saved in the same UPDATE.
    """
    with transaction.atomic():
        current = (
            Order.objects.select_for_update().only("status").get(pk=order.pk).status
        )
        if expected_status is not None and current != expected_status:
            raise OrderStateChanged(order.reference, expected=expected_status, actual=current)
        if not can_transition(current, to_status):
            raise InvalidTransition(order.reference, current, to_status)
        now = timezone.now()
        values: dict[str, Any] = {
            "status": to_status,
            "status_changed_at": now,
            "updated_at": now,
            "status_reason": reason[:255],
            **fields,
        }
        if to_status == S.PAID and order.paid_at is None and "paid_at" not in fields:
            values["paid_at"] = now
        if to_status == S.DELIVERED:
            values.setdefault("delivered_at", now)
            values.setdefault("next_action_at", None)
        if to_status in FINAL_STATUSES or to_status in {S.ON_HOLD, S.REVIEW, S.FAILED}:
            values.setdefault("next_action_at", None)
        updated = Order.objects.filter(pk=order.pk, status=current).update(**values)
        if updated != 1:
            raise OrderStateChanged(order.reference, expected=current, actual=None)
        OrderEvent.objects.create(
            order=order,
            from_status=current,
            to_status=to_status,
            actor=actor[:100],
            reason=reason[:255],
            data=data or {},
        )
        if order.channel in settings.ORDER_STATUS_TASKS:
            hook_channel, hook_order_id = order.channel, order.pk
            transaction.on_commit(
                lambda: queue.enqueue_status_hook(hook_order_id, hook_channel, to_status)
            )
        if to_status in BUYER_NOTICE_STATUSES:
            channel, order_id = order.channel, order.pk
            transaction.on_commit(
                lambda: queue.enqueue_buyer_notice(order_id, channel, to_status)
            )
    for name, value in values.items():
        setattr(order, name, value)
    return order
