"""stock.selectors.balance_latest: the newest reading, the last good amount, hours of sales left."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from stock import selectors
from stock.models import BalanceReading, BalanceThreshold, ReconciliationMismatch

pytestmark = pytest.mark.django_db


def reading(minutes_ago: int, amount: str | None = "100.00", *, spent: str = "0",
            supplier: str = "sandbox", error: str = "") -> BalanceReading:
    return BalanceReading.objects.create(
        supplier_code=supplier, checked_at=timezone.now() - timedelta(minutes=minutes_ago),
        ok=amount is not None, amount=Decimal(amount) if amount else None,
        currency="USD" if amount else "", spent_in_window=Decimal(spent), window_hours=24,
        error_code=error)


def test_nothing_before_the_first_reading():
    assert selectors.balance_latest() is None


def test_the_newest_reading_with_hours_of_sales_left(settings):
    reading(10, "500.00", spent="10.00")
    newest = reading(1, "100.00", spent="33.00")
    reading(1, "1.00", supplier="other")
    status = selectors.balance_latest()
    assert status is not None
    assert (status.amount, status.currency, status.checked_at) == (Decimal("100.00"), "USD",
                                                                   newest.checked_at)
    # 33.00 in 24 h is 1.375 an hour: 100 / 1.375 = 72.72... hours.
    assert status.hours_left == Decimal("72.7")
    assert status.rate_per_hour == Decimal("1.38")
    assert (status.threshold, status.threshold_currency, status.is_low) == (Decimal("50.00"), "USD", False)
    assert selectors.balance_latest(supplier_code="other").amount == Decimal("1.00")


def test_no_sales_means_no_hours_figure():
    reading(1, "100.00", spent="0")
    status = selectors.balance_latest()
    assert status is not None and status.hours_left is None and status.rate_per_hour is None


def test_a_failed_check_keeps_the_last_good_amount():
    good = reading(10, "42.00", spent="24.00")
    failed = reading(1, None, error="unauthorized")
    status = selectors.balance_latest()
    assert status is not None
    assert (status.ok, status.error_code, status.checked_at) == (False, "unauthorized", failed.checked_at)
    assert (status.amount, status.amount_checked_at) == (Decimal("42.00"), good.checked_at)
    assert status.hours_left == Decimal("42.0")
    assert status.is_low  # 42 under the default 50


def test_only_failures_show_no_amount():
    reading(1, None, error="connect_failed")
    status = selectors.balance_latest()
    assert status is not None and status.amount is None and not status.is_low


def test_low_follows_the_threshold_set_for_the_supplier():
    reading(1, "80.00")
    BalanceThreshold.objects.create(supplier_code="sandbox", amount=Decimal("100.00"), currency="USD")
    status = selectors.balance_latest()
    assert status is not None and status.is_low and status.threshold == Decimal("100.00")


def test_the_latest_balance_takes_a_bounded_number_of_queries(django_assert_max_num_queries):
    for minutes in range(50):
        reading(minutes + 1, "100.00")
    reading(0, None, error="x")
    with django_assert_max_num_queries(3):
        selectors.balance_latest()


def test_open_mismatches_are_counted():
    for number, resolved in enumerate((False, False, True)):
        ReconciliationMismatch.objects.create(supplier_code="sandbox", day=timezone.localdate(),
                                              kind="unknown_there", reference=f"r{number}",
                                              resolved=resolved)
    assert selectors.mismatches_open_count() == 2


def test_hours_left_arithmetic():
    assert selectors.hours_left(amount=Decimal("10"), spent=Decimal("0"), window_hours=24) is None
    assert selectors.hours_left(amount=Decimal("-5"), spent=Decimal("1"), window_hours=24) == 0
    assert selectors.hours_left(amount=Decimal("12"), spent=Decimal("24"), window_hours=24) == 12
