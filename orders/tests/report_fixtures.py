"""A small set of orders with known money, statuses and times, and the report's figures by hand.

Shared by the report, export and dashboard tests. Period: 2026-01-10 and 2026-01-11 (UTC).
"""

import uuid
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest

from orders.models import Order, OrderEvent
from orders.models import OrderStatus as S
from orders.reports import ReportPeriod

PERIOD = ReportPeriod(date_from=date(2026, 1, 10), date_to=date(2026, 1, 11))


def at(day: int, hour: int, minute: int = 0, second: int = 0) -> datetime:
    return datetime(2026, 1, day, hour, minute, second, tzinfo=UTC)


def place(catalog, *, reference: str, created_at: datetime, status: str, channel: str = "web",
          method: str = "sandbox", package: str = "Standard", stars: int = 500,
          price: str = "8.50", cost: str = "8.25", fee: str = "0.00", currency: str = "USD",
          paid_after: float | None = None, delivered_after: float | None = None,
          reached: tuple[str, ...] = (), recipient: str = "@sandbox_ok",
          supplier_order_id: str = "") -> Order:
    """An order row as the services would have left it, at the given times (set-up only)."""
    paid_at = created_at + timedelta(seconds=paid_after) if paid_after is not None else None
    delivered_at = (paid_at + timedelta(seconds=delivered_after)
                    if paid_at is not None and delivered_after is not None else None)
    order = Order.objects.create(
        reference=reference, channel=channel, status=status, product=catalog,
        product_name=catalog.name, package_name=package, platform="telegram", stars=stars,
        recipient_input=recipient, recipient_user_id="100000001", recipient_username=recipient,
        price=Decimal(price), currency=currency, supplier_code="sandbox", cost=Decimal(cost),
        cost_currency=currency, payment_method=method, payment_fee=Decimal(fee),
        idempotency_key=uuid.uuid4().hex, expires_at=created_at + timedelta(minutes=30),
        supplier_order_id=supplier_order_id,
    )
    # created_at is stamped on insert: back-date it as the demo loader does.
    Order.objects.filter(pk=order.pk).update(created_at=created_at, paid_at=paid_at,
                                             delivered_at=delivered_at)
    for to_status in reached:
        OrderEvent.objects.create(order=order, from_status="", to_status=to_status, actor="test")
    order.refresh_from_db()
    return order


@pytest.fixture
def hand_orders(catalog) -> dict[str, Order]:
    """Nine orders: seven in the period, one just before it and one just after."""
    return {
        "A": place(catalog, reference="ORD-A", created_at=at(10, 10), status=S.DELIVERED,
                   paid_after=5, delivered_after=3, supplier_order_id="sup-a"),
        "B": place(catalog, reference="ORD-B", created_at=at(10, 12), status=S.DELIVERED,
                   channel="bot", method="stripe", package="Large", stars=1000, price="16.00",
                   cost="15.50", fee="0.40", paid_after=60, delivered_after=10),
        "C": place(catalog, reference="ORD-C", created_at=at(11, 9), status=S.DELIVERED,
                   method="cryptopay", fee="0.26", paid_after=30, delivered_after=60),
        "D": place(catalog, reference="ORD-D", created_at=at(11, 10), status=S.REFUNDED,
                   method="stripe", fee="0.21", paid_after=20,
                   reached=(S.PAID, S.SUBMITTING, S.FAILED, S.REFUND_PENDING, S.REFUNDED)),
        "E": place(catalog, reference="ORD-E", created_at=at(11, 11), status=S.ON_HOLD,
                   channel="bot", package="Small", stars=100, price="2.00", cost="1.65",
                   paid_after=15, recipient="=cmd|' /C calc'!A0"),
        "F": place(catalog, reference="ORD-F", created_at=at(11, 12), status=S.EXPIRED,
                   method="ton"),
        "G": place(catalog, reference="ORD-G", created_at=at(11, 13), status=S.REVIEW,
                   method="ton", reached=(S.REVIEW,)),
        "I": place(catalog, reference="ORD-I", created_at=at(11, 23, 59, 59), status=S.DELIVERED,
                   package="Medium", stars=250, price="4.00", cost="3.00", fee="0.10",
                   currency="EUR", paid_after=0, delivered_after=20),
        # Outside the period by a second on either side.
        "before": place(catalog, reference="ORD-X1", created_at=at(9, 23, 59, 59),
                        status=S.DELIVERED, paid_after=1, delivered_after=1),
        "after": place(catalog, reference="ORD-X2", created_at=at(12, 0), status=S.DELIVERED,
                       paid_after=1, delivered_after=1),
    }


# By hand. Kept (paid, not failed/refunding/refunded): A, B, C, E in USD; I in EUR.
# USD: revenue 8.50 + 16.00 + 8.50 + 2.00 = 35.00; cost 8.25 + 15.50 + 8.25 + 1.65 = 33.65;
# fees 0 + 0.40 + 0.26 + 0 = 0.66; net 0.69 = 1.97 % of 35.00.
TOTALS = [
    ("EUR", 1, 250, "4.00", "3.00", "0.10", "0.90", "22.5"),
    ("USD", 4, 2100, "35.00", "33.65", "0.66", "0.69", "2.0"),
]
# (key, currency, orders, stars, revenue, cost, fees, net, net %), by currency then revenue.
BY_CHANNEL = [
    ("web", "EUR", 1, 250, "4.00", "3.00", "0.10", "0.90", "22.5"),
    ("bot", "USD", 2, 1100, "18.00", "17.15", "0.40", "0.45", "2.5"),
    ("web", "USD", 2, 1000, "17.00", "16.50", "0.26", "0.24", "1.4"),
]
BY_METHOD = [
    ("sandbox", "EUR", 1, 250, "4.00", "3.00", "0.10", "0.90", "22.5"),
    ("stripe", "USD", 1, 1000, "16.00", "15.50", "0.40", "0.10", "0.6"),
    ("sandbox", "USD", 2, 600, "10.50", "9.90", "0.00", "0.60", "5.7"),
    ("cryptopay", "USD", 1, 500, "8.50", "8.25", "0.26", "-0.01", "-0.1"),
]
BY_PACKAGE = [
    ("Medium", "EUR", 1, 250, "4.00", "3.00", "0.10", "0.90", "22.5"),
    ("Standard", "USD", 2, 1000, "17.00", "16.50", "0.26", "0.24", "1.4"),
    ("Large", "USD", 1, 1000, "16.00", "15.50", "0.40", "0.10", "0.6"),
    ("Small", "USD", 1, 100, "2.00", "1.65", "0.00", "0.35", "17.5"),
]
# (day, placed, sold, stars sold, revenue by currency, net by currency)
DAYS = [
    (date(2026, 1, 10), 2, 2, 1500, {"USD": "24.50"}, {"USD": "0.35"}),
    (date(2026, 1, 11), 6, 3, 850, {"EUR": "4.00", "USD": "10.50"},
     {"EUR": "0.90", "USD": "0.34"}),
]
# Delivered in the period: A 3 s, B 10 s, I 20 s, C 60 s. Nearest rank of 4: p50 = 2nd,
# p90 and p99 = 4th.
DELIVERY = {50: timedelta(seconds=10), 90: timedelta(seconds=60), 99: timedelta(seconds=60)}
# Placed 8; paid A B C D E I = 6; failed at the supplier: D; refunded: D; reviewed: G.
OUTCOMES = {"placed": 8, "paid": 6, "delivered": 4, "failed": 1, "refunded": 1, "reviewed": 1,
            "failure_rate": Decimal("16.7"), "refund_rate": Decimal("16.7"),
            "review_rate": Decimal("12.5")}
# The margin CSV: one row per day × channel × method × package × currency, in that order.
MARGIN_CSV = (
    "date,channel,payment_method,package,currency,orders,stars,revenue,supplier_cost,"
    "payment_fees,net_margin,net_margin_percent\r\n"
    "2026-01-10,bot,stripe,Large,USD,1,1000,16.00,15.50,0.40,0.10,0.6\r\n"
    "2026-01-10,web,sandbox,Standard,USD,1,500,8.50,8.25,0.00,0.25,2.9\r\n"
    "2026-01-11,bot,sandbox,Small,USD,1,100,2.00,1.65,0.00,0.35,17.5\r\n"
    "2026-01-11,web,cryptopay,Standard,USD,1,500,8.50,8.25,0.26,-0.01,-0.1\r\n"
    "2026-01-11,web,sandbox,Medium,EUR,1,250,4.00,3.00,0.10,0.90,22.5\r\n"
)


def line_tuple(line, *, with_key: bool = True) -> tuple:
    values = (line.currency, line.orders, line.stars, str(line.revenue), str(line.cost),
              str(line.fees), str(line.net), str(line.net_percent))
    return (line.key, *values) if with_key else values


def bulk_orders(catalog, count: int, days: int = 7) -> None:
    """`count` orders spread over `days` days, in several statuses, channels and methods."""
    statuses = [S.DELIVERED, S.DELIVERED, S.DELIVERED, S.REFUNDED, S.EXPIRED, S.ON_HOLD]
    methods = ["sandbox", "stripe", "ton", "cryptopay"]
    rows = [Order(
        reference=f"ORD-B{n:07d}", channel="web" if n % 3 else "bot",
        status=statuses[n % len(statuses)], product=catalog, product_name=catalog.name,
        package_name=["Standard", "Large", "Small"][n % 3], platform="telegram", stars=500,
        recipient_input="@sandbox_ok", recipient_user_id="100000001",
        recipient_username="@sandbox_ok", price=Decimal("8.50"), currency="USD",
        supplier_code="sandbox", cost=Decimal("8.25"), cost_currency="USD",
        payment_method=methods[n % len(methods)], payment_fee=Decimal("0.21"),
        idempotency_key=uuid.uuid4().hex, expires_at=at(10, 0)) for n in range(count)]
    Order.objects.bulk_create(rows, batch_size=500)
    ids = list(Order.objects.order_by("pk").values_list("pk", flat=True))
    per_day = len(ids) // days + 1
    for day in range(days):
        chunk = ids[day * per_day:(day + 1) * per_day]
        created = at(4 + day, 12)
        Order.objects.filter(pk__in=chunk).update(created_at=created)
        Order.objects.filter(pk__in=chunk, status__in=[S.DELIVERED, S.REFUNDED, S.ON_HOLD]).update(
            paid_at=created + timedelta(seconds=30))
        Order.objects.filter(pk__in=chunk, status=S.DELIVERED).update(
            delivered_at=created + timedelta(seconds=30 + day))
