"""Read-only figures for the dashboard and the margin report: grouped queries, Decimal money.

Every figure is over the orders *placed* in a period (created_at, in the shop's time zone)
and the optional filters. Money counts only what we keep, by the rule of `Order.margin`: paid
(paid_at set) and not failed, refund pending or refunded (nor expired or cancelled). Each
breakdown is one grouped query, so the number of queries does not grow with orders or days.
Amounts are grouped by the order's currency and never added across currencies.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from django.conf import settings
from django.db.models import Count, DurationField, Exists, ExpressionWrapper, F, OuterRef, Q, QuerySet, Sum
from django.db.models.functions import TruncDate
from django.utils import timezone

from orders.models import NO_MARGIN_STATUSES, Channel, Order, OrderEvent, OrderStatus
from orders.suppliers.sandbox import SANDBOX_SUPPLIER_CODE
from shop.models import Package
from shop.money import money

# What we keep: the same rule as Order.margin, as a query.
KEPT = Q(paid_at__isnull=False) & ~Q(status__in=NO_MARGIN_STATUSES)
PERCENTILES = (50, 90, 99)
DEFAULT_DAYS = 7
# Rows fetched per round trip by the streamed margin report.
CHUNK_SIZE = 1000


@dataclass(frozen=True)
class ReportPeriod:
    """Which orders a report covers: placed from date_from to date_to (both included), filtered."""

    date_from: date
    date_to: date
    channel: str = ""
    payment_method: str = ""
    package: str = ""  # the package name copied onto the order

    def days(self) -> list[date]:
        return [self.date_from + timedelta(days=n)
                for n in range((self.date_to - self.date_from).days + 1)]

    def bounds(self) -> tuple[datetime, datetime]:
        """The period as [start, end) instants: midnights in the shop's time zone."""
        zone = timezone.get_current_timezone()
        return (datetime.combine(self.date_from, time.min, tzinfo=zone),
                datetime.combine(self.date_to + timedelta(days=1), time.min, tzinfo=zone))


def period_default(*, today: date | None = None, days: int = DEFAULT_DAYS) -> ReportPeriod:
    """The last `days` days up to today (shop time zone), today included."""
    today = today or timezone.localdate()
    return ReportPeriod(date_from=today - timedelta(days=days - 1), date_to=today)


def period_orders(period: ReportPeriod) -> QuerySet[Order]:
    """Orders placed in the period that match its filters; never partner test-key orders.

    Those are placed with the in-process sandbox supplier and paid from a sandbox balance:
    no money moved, so they would only inflate the figures.
    """
    start, end = period.bounds()
    orders = (Order.objects.filter(created_at__gte=start, created_at__lt=end)
              .exclude(supplier_code=SANDBOX_SUPPLIER_CODE))
    if period.channel:
        orders = orders.filter(channel=period.channel)
    if period.payment_method:
        orders = orders.filter(payment_method=period.payment_method)
    if period.package:
        orders = orders.filter(package_name=period.package)
    return orders.order_by()


def margin_percent(net: Decimal, revenue: Decimal) -> Decimal | None:
    """Net margin as a percentage of revenue, to one decimal; None without revenue."""
    if not revenue:
        return None
    return (net * 100 / revenue).quantize(Decimal("0.1"), rounding=ROUND_HALF_UP)


def rate(part: int, whole: int) -> Decimal | None:
    """part / whole as a percentage to one decimal; None when there is nothing to divide."""
    if not whole:
        return None
    return (Decimal(part) * 100 / whole).quantize(Decimal("0.1"), rounding=ROUND_HALF_UP)


@dataclass(frozen=True)
class MarginLine:
    """One row of a margin table: what was sold under one key, in one currency."""

    key: str
    label: str
    currency: str
    orders: int
    stars: int
    revenue: Decimal
    cost: Decimal
    fees: Decimal
    net: Decimal = field(init=False)
    net_percent: Decimal | None = field(init=False)

    def __post_init__(self) -> None:
        net = money(self.revenue - self.cost - self.fees)
        object.__setattr__(self, "net", net)
        object.__setattr__(self, "net_percent", margin_percent(net, self.revenue))


def _money_sums() -> dict[str, Any]:
    return {"orders": Count("pk"), "stars": Sum("stars"), "revenue": Sum("price"),
            "cost": Sum("cost"), "fees": Sum("payment_fee")}


def _line(row: dict[str, Any], key: str, label: str) -> MarginLine:
    return MarginLine(
        key=key, label=label, currency=row["currency"], orders=row["orders"],
        stars=row["stars"] or 0, revenue=money(row["revenue"] or 0), cost=money(row["cost"] or 0),
        fees=money(row["fees"] or 0))


def _method_label(code: str) -> str:
    return str(settings.PAYMENT_METHODS.get(code, {}).get("label", code))


def _channel_label(code: str) -> str:
    return str(dict(Channel.choices).get(code, code))


def margin_totals(period: ReportPeriod) -> list[MarginLine]:
    """Revenue, supplier cost, fees and net margin of the money kept, one line per currency."""
    rows = (period_orders(period).filter(KEPT).values("currency").annotate(**_money_sums())
            .order_by("currency"))
    return [_line(row, row["currency"], row["currency"]) for row in rows]


# Breakdown name -> (order field, label of a value).
BREAKDOWNS = {
    "channel": ("channel", _channel_label),
    "payment_method": ("payment_method", _method_label),
    "package": ("package_name", lambda name: name or "—"),
}


def margin_breakdown(period: ReportPeriod, by: str) -> list[MarginLine]:
    """The margin table split by channel, payment method or package: one grouped query."""
    field_name, label = BREAKDOWNS[by]
    rows = (period_orders(period).filter(KEPT).values(field_name, "currency")
            .annotate(**_money_sums()).order_by("currency", "-revenue", field_name))
    return [_line(row, row[field_name], label(row[field_name])) for row in rows]


@dataclass(frozen=True)
class DayFigures:
    """One day of the period: orders placed and sold, Stars sold, revenue and net per currency."""

    day: date
    placed: int = 0
    sold: int = 0
    stars: int = 0
    revenue: dict[str, Decimal] = field(default_factory=dict)
    net: dict[str, Decimal] = field(default_factory=dict)


def daily_figures(period: ReportPeriod) -> list[DayFigures]:
    """Every day of the period, days without orders included, from one grouped query."""
    day = TruncDate("created_at", tzinfo=timezone.get_current_timezone())
    rows = (period_orders(period).annotate(day=day).values("day", "currency").annotate(
        placed=Count("pk"), sold=Count("pk", filter=KEPT), stars=Sum("stars", filter=KEPT),
        revenue=Sum("price", filter=KEPT), cost=Sum("cost", filter=KEPT),
        fees=Sum("payment_fee", filter=KEPT)).order_by("day", "currency"))
    by_day = {d: DayFigures(day=d) for d in period.days()}
    for row in rows:
        figures = by_day.get(row["day"])
        if figures is None:  # cannot happen: the period's bounds are these days
            continue
        revenue = money(row["revenue"] or 0)
        by_day[figures.day] = DayFigures(
            day=figures.day, placed=figures.placed + row["placed"],
            sold=figures.sold + row["sold"], stars=figures.stars + (row["stars"] or 0),
            revenue={**figures.revenue, row["currency"]: revenue},
            net={**figures.net, row["currency"]: money(
                revenue - (row["cost"] or 0) - (row["fees"] or 0))})
    return list(by_day.values())


@dataclass(frozen=True)
class DeliveryTimes:
    """Paid → delivered, over the period's delivered orders: how many, and the percentiles."""

    delivered: int
    percentiles: dict[int, timedelta | None]

    def in_seconds(self) -> list[tuple[int, Decimal | None]]:
        """(percentile, seconds to one decimal) pairs, for display."""
        tenth = Decimal("0.1")
        return [(p, None if duration is None else Decimal(duration // timedelta(microseconds=1))
                 .scaleb(-6).quantize(tenth, rounding=ROUND_HALF_UP))
                for p, duration in self.percentiles.items()]


def delivery_times(period: ReportPeriod) -> DeliveryTimes:
    """Nearest-rank percentiles of paid → delivered, one query for the count plus one per percentile.

    Portable (SQLite and PostgreSQL) and never loads the table: each percentile is the row at
    its rank in the orders sorted by duration, fetched with an offset.
    """
    delivered = period_orders(period).filter(
        status=OrderStatus.DELIVERED, paid_at__isnull=False, delivered_at__isnull=False)
    count = delivered.count()
    durations = delivered.annotate(duration=ExpressionWrapper(
        F("delivered_at") - F("paid_at"), output_field=DurationField(),
    )).order_by("duration", "pk").values_list("duration", flat=True)
    percentiles: dict[int, timedelta | None] = {}
    for p in PERCENTILES:
        if not count:
            percentiles[p] = None
            continue
        rank = max(math.ceil(p * count / 100), 1)
        percentiles[p] = durations[rank - 1]
    return DeliveryTimes(delivered=count, percentiles=percentiles)


@dataclass(frozen=True)
class OutcomeRates:
    """How orders of the period went: counts, and rates as percentages (None: nothing to divide).

    failure: paid orders that failed at the supplier at some point (an event to failed);
    refund: paid orders refunded or being refunded; review: orders that ever needed review.
    """

    placed: int
    paid: int
    delivered: int
    failed: int
    refunded: int
    reviewed: int
    failure_rate: Decimal | None = field(init=False)
    refund_rate: Decimal | None = field(init=False)
    review_rate: Decimal | None = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "failure_rate", rate(self.failed, self.paid))
        object.__setattr__(self, "refund_rate", rate(self.refunded, self.paid))
        object.__setattr__(self, "review_rate", rate(self.reviewed, self.placed))


def _reached(status: str) -> Exists:
    return Exists(OrderEvent.objects.filter(order=OuterRef("pk"), to_status=status))


def outcome_rates(period: ReportPeriod) -> OutcomeRates:
    """Failure, refund and review rates of the period's orders, in one query."""
    paid = Q(paid_at__isnull=False)
    counts = period_orders(period).aggregate(
        placed=Count("pk"),
        paid=Count("pk", filter=paid),
        delivered=Count("pk", filter=Q(status=OrderStatus.DELIVERED)),
        failed=Count("pk", filter=paid & Q(_reached(OrderStatus.FAILED))),
        refunded=Count("pk", filter=paid & Q(status__in=[OrderStatus.REFUND_PENDING,
                                                         OrderStatus.REFUNDED])),
        reviewed=Count("pk", filter=Q(_reached(OrderStatus.REVIEW))),
    )
    return OutcomeRates(**counts)


@dataclass(frozen=True)
class Dashboard:
    """Everything the dashboard shows for one period."""

    period: ReportPeriod
    totals: list[MarginLine]
    days: list[DayFigures]
    by_channel: list[MarginLine]
    by_method: list[MarginLine]
    by_package: list[MarginLine]
    delivery: DeliveryTimes
    outcomes: OutcomeRates

    def chart_data(self) -> dict[str, Any]:
        """The charts' series, JSON-safe (amounts as strings: Decimal stays exact)."""
        currencies = sorted({line.currency for line in self.totals})
        return {
            "days": [figures.day.isoformat() for figures in self.days],
            "placed": [figures.placed for figures in self.days],
            "sold": [figures.sold for figures in self.days],
            "stars": [figures.stars for figures in self.days],
            "revenue": {currency: [str(figures.revenue.get(currency, Decimal("0.00")))
                                   for figures in self.days] for currency in currencies},
            "net": {currency: [str(figures.net.get(currency, Decimal("0.00")))
                               for figures in self.days] for currency in currencies},
        }


def dashboard_figures(period: ReportPeriod) -> Dashboard:
    """The dashboard's figures: ten queries whatever the number of orders or days."""
    return Dashboard(
        period=period,
        totals=margin_totals(period),
        days=daily_figures(period),
        by_channel=margin_breakdown(period, "channel"),
        by_method=margin_breakdown(period, "payment_method"),
        by_package=margin_breakdown(period, "package"),
        delivery=delivery_times(period),
        outcomes=outcome_rates(period),
    )


@dataclass(frozen=True)
class MarginReportRow:
    """One line of the margin report: a day × channel × method × package, in one currency."""

    day: date
    channel: str
    payment_method: str
    package: str
    line: MarginLine


def margin_report_rows(period: ReportPeriod) -> Iterator[MarginReportRow]:
    """The margin report, streamed from one grouped query in chunks: never the whole table."""
    day = TruncDate("created_at", tzinfo=timezone.get_current_timezone())
    keys = ("day", "channel", "payment_method", "package_name", "currency")
    rows = (period_orders(period).filter(KEPT).annotate(day=day).values(*keys)
            .annotate(**_money_sums()).order_by(*keys))
    for row in rows.iterator(chunk_size=CHUNK_SIZE):
        yield MarginReportRow(
            day=row["day"], channel=row["channel"], payment_method=row["payment_method"],
            package=row["package_name"], line=_line(row, row["package_name"], row["package_name"]))


def report_package_names() -> list[str]:
    """Package names to filter by: the catalog's (one small query, not a scan of the orders)."""
    names = Package.objects.order_by("sort_order", "quantity").values_list("name", flat=True)
    return list(dict.fromkeys(names))
