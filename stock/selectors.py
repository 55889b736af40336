"""Reads of the supplier account: its latest balance, the recent spending rate, open mismatches."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from django.conf import settings
from django.db.models import QuerySet, Sum
from django.utils import timezone

from orders.models import Order, OrderStatus
from shop.money import money
from stock.models import BalanceReading, BalanceThreshold, ReconciliationMismatch

HOURS = Decimal("0.1")


@dataclass(frozen=True)
class BalanceStatus:
    """Where a supplier wallet stands, from its newest readings.

    `checked_at`, `ok` and the error describe the newest reading; `amount` and the figures
    derived from it come from the newest reading that succeeded (`amount_checked_at`), so a
    supplier that is down still shows the last balance known. `is_low` means that amount is
    under the threshold now (the alert's own state has a hysteresis, see BalanceThreshold).
    """

    supplier_code: str
    checked_at: datetime
    ok: bool
    error_code: str
    error_message: str
    amount: Decimal | None
    currency: str
    amount_checked_at: datetime | None
    window_hours: int
    rate_per_hour: Decimal | None
    hours_left: Decimal | None
    threshold: Decimal | None
    threshold_currency: str
    is_low: bool


def hours_left(*, amount: Decimal, spent: Decimal, window_hours: int) -> Decimal | None:
    """Hours until `amount` is spent at the rate of `spent` per `window_hours`; None when idle."""
    if spent <= 0 or window_hours <= 0:
        return None
    return max(amount, Decimal(0)) * window_hours / spent


def supplier_spent(*, supplier_code: str, currency: str, since: datetime, until: datetime) -> Decimal:
    """The supplier cost of our orders delivered from `since` to `until`, in `currency`."""
    total = Order.objects.filter(
        supplier_code=supplier_code, cost_currency=currency, status=OrderStatus.DELIVERED,
        delivered_at__gte=since, delivered_at__lt=until,
    ).aggregate(total=Sum("cost"))["total"]
    return money(total or 0)


def balance_latest(*, supplier_code: str | None = None) -> BalanceStatus | None:
    """The supplier's balance as last read, with hours of sales left; None before any reading."""
    code = supplier_code or settings.SUPPLIER_CODE
    readings = BalanceReading.objects.filter(supplier_code=code).order_by("-checked_at", "-id")
    latest = readings.first()
    if latest is None:
        return None
    good = latest if latest.ok else readings.filter(ok=True).first()
    threshold = BalanceThreshold.objects.filter(supplier_code=code).first()
    amount = good.amount if good is not None else None
    left = rate = None
    if good is not None and good.amount is not None:
        left = hours_left(amount=good.amount, spent=good.spent_in_window,
                          window_hours=good.window_hours)
        if left is not None:
            left = left.quantize(HOURS)
            rate = money(good.spent_in_window / good.window_hours)
    limit = threshold.amount if threshold is not None else money(settings.SUPPLIER_LOW_BALANCE)
    limit_currency = threshold.currency if threshold is not None else (good.currency if good else "")
    return BalanceStatus(
        supplier_code=code,
        checked_at=latest.checked_at,
        ok=latest.ok,
        error_code=latest.error_code,
        error_message=latest.error_message,
        amount=amount,
        currency=good.currency if good is not None else "",
        amount_checked_at=good.checked_at if good is not None else None,
        window_hours=good.window_hours if good is not None else settings.SUPPLIER_RATE_WINDOW_HOURS,
        rate_per_hour=rate,
        hours_left=left,
        threshold=limit,
        threshold_currency=limit_currency,
        is_low=(amount is not None and good is not None and good.currency == limit_currency
                and amount < limit),
    )


def mismatches_open_count() -> int:
    """How many reconciliation mismatches wait for an operator."""
    return ReconciliationMismatch.objects.filter(resolved=False).count()


def readings_prunable(*, supplier_code: str,
                      now: datetime | None = None) -> QuerySet[BalanceReading]:
    """Readings older than SUPPLIER_BALANCE_HISTORY_DAYS, except the newest successful one."""
    cutoff = (now or timezone.now()) - timedelta(days=settings.SUPPLIER_BALANCE_HISTORY_DAYS)
    keep = (BalanceReading.objects.filter(supplier_code=supplier_code, ok=True)
            .order_by("-checked_at", "-id").values_list("pk", flat=True).first())
    old = BalanceReading.objects.filter(supplier_code=supplier_code, checked_at__lt=cutoff)
    return old.exclude(pk=keep) if keep is not None else old
