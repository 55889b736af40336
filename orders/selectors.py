"""Order reads that are more than one line of ORM."""

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db.models import Count, Q, QuerySet
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


def overpaid_payments() -> QuerySet[Payment]:
    """Confirmed payments whose excess is still owed back.

    A payment refunded in full returned its excess with it; one whose excess went back on its
    own has excess_refunded_at.
    """
    return Payment.objects.filter(status=Payment.Status.CONFIRMED, excess_minor__gt=0,
                                  excess_refunded_at__isnull=True)


def _queue_conditions(cutoff: datetime) -> dict[str, Q]:
    """Each problem queue's orders as a condition; `cutoff` is when paid is "too long ago"."""
    on_hold = Q(status=OrderStatus.ON_HOLD)
    review = Q(status=OrderStatus.REVIEW)
    return {
        "on_hold": on_hold,
        "on_hold_balance": on_hold & Q(status_reason=HOLD_REASON_BALANCE),
        "on_hold_credentials": on_hold & Q(status_reason=HOLD_REASON_CREDENTIALS),
        "on_hold_other": on_hold & ~Q(status_reason__in=[HOLD_REASON_BALANCE,
                                                         HOLD_REASON_CREDENTIALS]),
        "unknown": Q(status=OrderStatus.UNKNOWN),
        "review": review,
        "late_payments": review & Q(status_reason__startswith=LATE_PAYMENT_REASON_PREFIX),
        "failed_awaiting_refund": Q(status__in=[OrderStatus.FAILED, OrderStatus.REFUND_PENDING]),
        "paid_undelivered": Q(status__in=UNDELIVERED_STATUSES, paid_at__lt=cutoff),
        "overpaid": Q(pk__in=overpaid_payments().values("order_id")),
    }


# The queues' names, as the order list's ?queue= takes them and the admin home links to them.
QUEUE_NAMES = ("on_hold", "on_hold_balance", "on_hold_credentials", "on_hold_other", "unknown",
               "review", "late_payments", "failed_awaiting_refund", "paid_undelivered", "overpaid")


def undelivered_cutoff(*, undelivered_minutes: int, now: datetime | None = None) -> datetime:
    """Orders paid before this and not yet delivered are late."""
    return (now or timezone.now()) - timedelta(minutes=undelivered_minutes)


def problem_queue_filter(name: str, *, undelivered_minutes: int, now: datetime | None = None) -> Q:
    """The condition selecting one queue's orders; KeyError for a name that is not a queue."""
    cutoff = undelivered_cutoff(undelivered_minutes=undelivered_minutes, now=now)
    return _queue_conditions(cutoff)[name]


@dataclass(frozen=True)
class ProblemQueueCounts:
    """How many orders wait in each of the console's problem queues."""

    on_hold: int
    on_hold_balance: int
    on_hold_credentials: int
    on_hold_other: int
    unknown: int
    review: int
    late_payments: int
    failed_awaiting_refund: int
    paid_undelivered: int
    overpaid: int
    undelivered_cutoff: datetime


def problem_queue_counts(*, undelivered_minutes: int, now: datetime | None = None) -> ProblemQueueCounts:
    """Every queue's count in one query, from the same conditions the order list filters by.

    Late payments are also in review (their status); paid-undelivered means paid more than
    `undelivered_minutes` ago and not yet delivered, held, failed or unknown; overpaid counts
    orders (not payments) with an excess still owed back.
    """
    cutoff = undelivered_cutoff(undelivered_minutes=undelivered_minutes, now=now)
    counts = Order.objects.aggregate(**{
        name: Count("pk", filter=condition)
        for name, condition in _queue_conditions(cutoff).items()
    })
    return ProblemQueueCounts(**counts, undelivered_cutoff=cutoff)
