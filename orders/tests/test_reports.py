"""The report selectors: figures equal a hand computation, and the query count does not grow."""

from datetime import date
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from orders import reports
from orders.models import Order
from orders.models import OrderStatus as S
from orders.reports import ReportPeriod
from orders.tests.conftest import catalog, make_order  # noqa: F401  (fixtures)
from orders.tests.report_fixtures import (
    BY_CHANNEL,
    BY_METHOD,
    BY_PACKAGE,
    DAYS,
    DELIVERY,
    OUTCOMES,
    PERIOD,
    TOTALS,
    at,
    bulk_orders,
    hand_orders,  # noqa: F401  (fixture)
    line_tuple,
    place,
)

pytestmark = pytest.mark.django_db


def test_totals_count_only_money_we_keep_per_currency(hand_orders):
    assert [line_tuple(line, with_key=False) for line in reports.margin_totals(PERIOD)] == TOTALS


def test_totals_agree_with_order_margin(hand_orders):
    """The report's rule is Order.margin's: summing the property gives the same net."""
    kept = [order for order in hand_orders.values()
            if order.currency == "USD" and order.reference not in ("ORD-X1", "ORD-X2")]
    usd = next(line for line in reports.margin_totals(PERIOD) if line.currency == "USD")
    assert usd.net == sum(order.margin for order in kept) == Decimal("0.69")


@pytest.mark.parametrize("by, expected", [
    ("channel", BY_CHANNEL), ("payment_method", BY_METHOD), ("package", BY_PACKAGE)])
def test_breakdowns(hand_orders, by, expected):
    assert [line_tuple(line) for line in reports.margin_breakdown(PERIOD, by)] == expected


def test_breakdown_labels_are_the_operator_s_words(hand_orders):
    labels = {line.key: line.label for line in reports.margin_breakdown(PERIOD, "payment_method")}
    assert labels["stripe"] == "Card (Stripe Checkout)"
    assert {line.label for line in reports.margin_breakdown(PERIOD, "channel")} == {
        "Storefront", "Telegram bot"}


def test_days(hand_orders):
    days = reports.daily_figures(PERIOD)
    assert [(d.day, d.placed, d.sold, d.stars, {c: str(v) for c, v in d.revenue.items()},
             {c: str(v) for c, v in d.net.items()}) for d in days] == DAYS


def test_days_without_orders_are_zero(hand_orders):
    period = ReportPeriod(date_from=date(2026, 1, 8), date_to=date(2026, 1, 10))
    days = reports.daily_figures(period)
    assert [(d.day, d.placed, d.sold, d.stars, d.revenue) for d in days][:1] == [
        (date(2026, 1, 8), 0, 0, 0, {})]
    assert [d.placed for d in days] == [0, 1, 2]  # the 9th: the order a second before the period


def test_delivery_percentiles(hand_orders):
    delivery = reports.delivery_times(PERIOD)
    assert delivery.delivered == 4
    assert delivery.percentiles == DELIVERY
    assert delivery.in_seconds() == [(50, Decimal("10.0")), (90, Decimal("60.0")),
                                     (99, Decimal("60.0"))]


def test_delivery_percentiles_of_nothing(db):
    delivery = reports.delivery_times(PERIOD)
    assert delivery.delivered == 0 and delivery.percentiles == {50: None, 90: None, 99: None}


def test_outcome_rates(hand_orders):
    outcomes = reports.outcome_rates(PERIOD)
    assert {name: getattr(outcomes, name) for name in OUTCOMES} == OUTCOMES


def test_no_orders_no_division(db):
    outcomes = reports.outcome_rates(PERIOD)
    assert (outcomes.failure_rate, outcomes.refund_rate, outcomes.review_rate) == (None, None, None)
    assert reports.margin_totals(PERIOD) == []
    assert reports.margin_percent(Decimal("0.00"), Decimal("0.00")) is None


@pytest.mark.parametrize("filters, references", [
    ({"channel": "bot"}, {"ORD-B", "ORD-E"}),
    ({"payment_method": "stripe"}, {"ORD-B", "ORD-D"}),
    ({"package": "Standard"}, {"ORD-A", "ORD-C", "ORD-D", "ORD-F", "ORD-G"}),
    ({"channel": "web", "payment_method": "sandbox"}, {"ORD-A", "ORD-I"}),
])
def test_filters(hand_orders, filters, references):
    period = ReportPeriod(date_from=PERIOD.date_from, date_to=PERIOD.date_to, **filters)
    assert set(reports.period_orders(period).values_list("reference", flat=True)) == references
    kept = reports.margin_totals(period)
    assert sum(line.orders for line in kept) == reports.period_orders(period).filter(
        reports.KEPT).count()


def test_days_follow_the_shop_time_zone(settings, catalog):
    """23:30 UTC on the 10th is the 11th in Moscow (UTC+3): the day and the period follow the shop."""
    place(catalog, reference="ORD-TZ", created_at=at(10, 23, 30), status=S.DELIVERED,
          paid_after=1, delivered_after=1)
    settings.TIME_ZONE = "Europe/Moscow"
    days = reports.daily_figures(PERIOD)
    assert [(d.day, d.placed) for d in days] == [(date(2026, 1, 10), 0), (date(2026, 1, 11), 1)]
    only_10th = ReportPeriod(date_from=date(2026, 1, 10), date_to=date(2026, 1, 10))
    assert reports.period_orders(only_10th).count() == 0


def test_period_default_is_the_last_seven_days_with_today():
    period = reports.period_default(today=date(2026, 3, 1))
    assert (period.date_from, period.date_to) == (date(2026, 2, 23), date(2026, 3, 1))
    assert len(period.days()) == 7


def test_a_refunded_order_earns_nothing_but_a_held_one_counts(hand_orders):
    """The rule at the edges: D (refunded) is out of the money, E (on hold, paid) is in."""
    refs = set(reports.period_orders(PERIOD).filter(reports.KEPT).values_list("reference", flat=True))
    assert "ORD-D" not in refs and "ORD-E" in refs and "ORD-G" not in refs


def test_queries_do_not_grow_with_orders_or_days(catalog):
    week = ReportPeriod(date_from=date(2026, 1, 4), date_to=date(2026, 1, 10))
    bulk_orders(catalog, 30)
    with CaptureQueriesContext(connection) as few:
        small = reports.dashboard_figures(week)
    Order.objects.all().delete()
    bulk_orders(catalog, 3000)
    month = ReportPeriod(date_from=date(2025, 12, 12), date_to=date(2026, 1, 10))
    with CaptureQueriesContext(connection) as many:
        large = reports.dashboard_figures(month)
    assert len(few) == len(many) == 10
    assert sum(d.placed for d in small.days) == 30 and sum(d.placed for d in large.days) == 3000
    assert len(large.days) == 30
    # 3000 orders, statuses in a cycle of 6: half delivered, one in six held (paid, kept).
    assert large.totals[0].orders == 1500 + 500
    assert large.totals[0].revenue == Decimal("8.50") * 2000


def test_margin_report_rows_stream_from_one_query(hand_orders, django_assert_num_queries):
    with django_assert_num_queries(1):
        rows = list(reports.margin_report_rows(PERIOD))
    assert [(row.day, row.channel, row.payment_method, row.package, row.line.currency)
            for row in rows] == [
        (date(2026, 1, 10), "bot", "stripe", "Large", "USD"),
        (date(2026, 1, 10), "web", "sandbox", "Standard", "USD"),
        (date(2026, 1, 11), "bot", "sandbox", "Small", "USD"),
        (date(2026, 1, 11), "web", "cryptopay", "Standard", "USD"),
        (date(2026, 1, 11), "web", "sandbox", "Medium", "EUR"),
    ]


def test_partner_test_key_orders_are_left_out(hand_orders):
    """A test key's order moved no money (sandbox supplier, sandbox balance): not in any figure."""
    sandbox = place(hand_orders["A"].product, reference="ORD-SBX", channel="api",
                    method="balance", created_at=hand_orders["A"].created_at,
                    status=S.DELIVERED, paid_after=1, delivered_after=2, price="80.00")
    Order.objects.filter(pk=sandbox.pk).update(supplier_code="partner-sandbox")

    assert [line_tuple(line, with_key=False) for line in reports.margin_totals(PERIOD)] == TOTALS
    assert "ORD-SBX" not in {order.reference for order in reports.period_orders(PERIOD)}
    Order.objects.filter(pk=sandbox.pk).update(supplier_code="sandbox")
    assert "ORD-SBX" in {order.reference for order in reports.period_orders(PERIOD)}
