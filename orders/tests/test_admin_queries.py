"""The console stays fast with thousands of orders: each page takes a bounded number of queries.

About 3,000 orders in every status with events, payments and supplier attempts spread over them;
every page an operator works from is counted for a superuser, a Manager and an Operator. The
bounds are what the pages take today; a page whose count grows with the rows (an N+1) fails.
"""

import uuid
from datetime import timedelta
from decimal import Decimal

import pytest
from django.contrib.auth.models import Group
from django.urls import reverse
from django.utils import timezone

from bots.models import TelegramUser
from orders import console, selectors
from orders.models import Order, OrderEvent, Payment, PaymentEvent, SupplierAttempt
from orders.models import OrderStatus as S

ORDERS = 3_000
CHANGELIST = reverse("admin:orders_order_changelist")
# Today's counts for each page, whatever the number of orders (see the module's docstring).
# The home adds the supplier balance (up to 3) and the open reconciliation count (1).
HOME_QUERIES = 12
# The list: no DISTINCT for the date navigation or the method filter, one count (issue #11).
LIST_QUERIES = 8
# The order page adds its promo code (1) and, for an order held for balance, the balance (3).
PAGE_QUERIES = 19
CONFIRM_QUERIES = 9
BULK_CONFIRM_QUERIES = 9


@pytest.fixture
def many_orders(catalog) -> list[Order]:
    """ORDERS orders, round-robin over the statuses, with the rows an operator's pages read."""
    now = timezone.now()
    statuses = list(S.values)
    reasons = {S.ON_HOLD: [selectors.HOLD_REASON_BALANCE, selectors.HOLD_REASON_CREDENTIALS, ""],
               S.REVIEW: ["Payment received after the order was expired", "Underpaid"]}
    rows = []
    for number in range(ORDERS):
        status = statuses[number % len(statuses)]
        choices = reasons.get(status, [""])
        rows.append(Order(
            reference=f"ORD-{900000 + number}", channel=("web", "bot")[number % 2],
            status=status, status_reason=choices[number % len(choices)], product=catalog,
            product_name=catalog.name, package_name="Standard", platform="telegram", stars=500,
            recipient_input="@sandbox_ok", recipient_user_id="100000001",
            recipient_username="@sandbox_ok", price=Decimal("8.50"), currency="USD",
            supplier_code="sandbox", cost=Decimal("8.25"), cost_currency="USD",
            payment_method=("sandbox", "stripe", "ton")[number % 3],
            buyer_telegram_id=300000000 + number % 50, buyer_email="buyer@example.com",
            idempotency_key=uuid.uuid4().hex, expires_at=now + timedelta(minutes=30),
            paid_at=None if status in (S.AWAITING_PAYMENT, S.EXPIRED, S.CANCELLED)
            else now - timedelta(minutes=number % 40)))
    orders = Order.objects.bulk_create(rows, batch_size=500)
    if orders[0].pk is None:  # backends that do not return ids from bulk inserts
        orders = list(Order.objects.order_by("pk"))
    TelegramUser.objects.bulk_create(
        [TelegramUser(telegram_id=300000000 + n, username=f"buyer_{n}") for n in range(50)])
    OrderEvent.objects.bulk_create([
        OrderEvent(order=order, from_status=S.AWAITING_PAYMENT, to_status=order.status,
                   actor="worker", reason="test") for order in orders for _ in range(2)],
        batch_size=1000)
    paid = [order for order in orders if order.paid_at is not None]
    events = PaymentEvent.objects.bulk_create([
        PaymentEvent(provider="sandbox", event_key=f"evt-{order.pk}", kind="paid", order=order,
                     body='{"paid": true}') for order in paid], batch_size=1000)
    if events and events[0].pk is None:
        events = list(PaymentEvent.objects.order_by("pk"))
    Payment.objects.bulk_create([
        Payment(order=order, event=event, provider="sandbox", provider_reference=f"pay-{order.pk}",
                amount=Decimal("8.50"), currency="USD",
                excess_minor=25 if order.pk % 7 == 0 else 0)
        for order, event in zip(paid, events, strict=True)], batch_size=1000)
    SupplierAttempt.objects.bulk_create([
        SupplierAttempt(order=order, number=1, supplier_code="sandbox",
                        idempotency_key=order.idempotency_key, request={"stars": 500},
                        response_body='{"ok": false}', outcome=SupplierAttempt.Outcome.REJECTED)
        for order in paid], batch_size=1000)
    # The order whose page is counted has a long history: its rows must not cost a query each.
    held = next(order for order in paid if order.status == S.ON_HOLD)
    OrderEvent.objects.bulk_create([
        OrderEvent(order=held, from_status=S.PAID, to_status=S.ON_HOLD, actor="worker",
                   reason=f"retry {number}") for number in range(40)])
    SupplierAttempt.objects.bulk_create([
        SupplierAttempt(order=held, number=number, supplier_code="sandbox",
                        idempotency_key=held.idempotency_key, request={"stars": 500},
                        outcome=SupplierAttempt.Outcome.REJECTED) for number in range(2, 12)])
    return orders


@pytest.fixture(params=["superuser", "Managers", "Operators"])
def console_client(request, client, django_user_model):
    """A logged-in client for each role that works the console."""
    if request.param == "superuser":
        user = django_user_model.objects.create_superuser(username="root", password="x")
    else:
        user = django_user_model.objects.create_user(username=request.param.lower(), is_staff=True)
        user.groups.add(Group.objects.get(name=request.param))
    client.force_login(user)
    return client


def assert_bounded(client, django_assert_max_num_queries, url: str, bound: int,
                   data: dict | None = None) -> str:
    with django_assert_max_num_queries(bound):
        response = client.get(url, data or {})
    assert response.status_code == 200, url
    return response.content.decode()


def test_every_console_page_is_bounded(console_client, many_orders, django_assert_max_num_queries):
    """One test per role (the orders are built once): home, list, order page, confirmations."""
    client, bounded = console_client, django_assert_max_num_queries

    body = assert_bounded(client, bounded, reverse("admin:index"), HOME_QUERIES)
    assert "Problem queues" in body

    body = assert_bounded(client, bounded, CHANGELIST, LIST_QUERIES)
    assert many_orders[-1].reference in body
    for name in selectors.QUEUE_NAMES:
        assert_bounded(client, bounded, CHANGELIST, LIST_QUERIES, {"queue": name})
    for term in ("buyer_7", many_orders[5].reference, "pay-1", "@sandbox_ok"):
        assert_bounded(client, bounded, CHANGELIST, LIST_QUERIES, {"q": term})

    held = next(o for o in many_orders if o.status == S.ON_HOLD and o.paid_at)
    assert held.events.count() > 40 and held.supplier_attempts.count() > 10
    body = assert_bounded(client, bounded, reverse("admin:orders_order_change", args=[held.pk]),
                          PAGE_QUERIES)
    assert "order-summary" in body and "/console/retry/" in body

    for action in console.ACTIONS.values():
        candidates = Order.objects.order_by("pk").prefetch_related("payments")
        if action.statuses is not None:
            candidates = candidates.filter(status__in=action.statuses)
        order = next(o for o in candidates[:200] if action.applies_to(o))
        assert_bounded(client, bounded,
                       reverse("admin:orders_order_console", args=[order.pk, action.name]),
                       CONFIRM_QUERIES)

    # Select all 3,000 across the list: the confirmation page still reads them in one query.
    for action in ("resume_fulfilment", "start_refund", "cancel_unpaid", "mark_refunded_manually"):
        with bounded(BULK_CONFIRM_QUERIES):
            response = client.post(CHANGELIST, {
                "action": action, "_selected_action": [many_orders[0].pk], "select_across": "1"})
        assert response.status_code == 200 and 'name="confirm"' in response.content.decode()
