"""Order reads that are more than one line of ORM."""

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db.models import Count, Q
from django.utils import timezone

from orders.models import Order, OrderStatus, Payment


def order_list_for_buyer(*, telegram_id: int, limit: int = 10) -> list[Order]:
    """A Telegram buyer's most recent orders, newest first, with the product loaded for display."""
    return list(
        Order.objects.filter(buyer_telegram_id=telegram_id)
        .select_related("product")
        .order_by("-created_at", "-pk")[:limit]
    )


# Reasons the services write (orders/services.py); the console's queues split by them.
HOLD_REASON_BALANCE = "Supplier balance too low"
HOLD_REASON_CREDENTIALS = "Supplier rejected our credentials"
LATE_PAYMENT_REASON_PREFIX = "Payment received after the order was"
# Paid and still with a worker; UNKNOWN is left out because it is a queue of its own.
UNDELIVERED_STATUSES = (OrderStatus.PAID, OrderStatus.SUBMITTING, OrderStatus.PROCESSING)


@dataclass(frozen=True)
class ProblemQueueCounts:
    """How many orders (and overpaid payments) wait in each of the console's problem queues."""

    on_hold: int
    on_hold_balance: int
    on_hold_credentials: int
    unknown: int
    review: int
    late_payments: int
    failed_awaiting_refund: int
    paid_undelivered: int
    overpaid_payments: int
    undelivered_cutoff: datetime


def problem_queue_counts(*, undelivered_minutes: int, now: datetime | None = None) -> ProblemQueueCounts:
    """Every queue's count in two queries: one over orders, one over payments.

    Late payments are also in review (their status); paid-undelivered means paid more than
    `undelivered_minutes` ago and not yet delivered, held, failed or unknown.
    """
    cutoff = (now or timezone.now()) - timedelta(minutes=undelivered_minutes)
    on_hold = Q(status=OrderStatus.ON_HOLD)
    review = Q(status=OrderStatus.REVIEW)
    orders = Order.objects.aggregate(
        on_hold=Count("pk", filter=on_hold),
        on_hold_balance=Count("pk", filter=on_hold & Q(status_reason=HOLD_REASON_BALANCE)),
        on_hold_credentials=Count("pk", filter=on_hold & Q(status_reason=HOLD_REASON_CREDENTIALS)),
        unknown=Count("pk", filter=Q(status=OrderStatus.UNKNOWN)),
        review=Count("pk", filter=review),
        late_payments=Count(
            "pk", filter=review & Q(status_reason__startswith=LATE_PAYMENT_REASON_PREFIX)),
        failed_awaiting_refund=Count(
            "pk", filter=Q(status__in=[OrderStatus.FAILED, OrderStatus.REFUND_PENDING])),
        paid_undelivered=Count(
            "pk", filter=Q(status__in=UNDELIVERED_STATUSES, paid_at__lt=cutoff)),
    )
    # An excess is owed back until the payment itself is refunded (which returns all of it).
    overpaid_payments = Payment.objects.filter(
        excess_minor__gt=0, status=Payment.Status.CONFIRMED).count()
    return ProblemQueueCounts(**orders, overpaid_payments=overpaid_payments,
                              undelivered_cutoff=cutoff)
