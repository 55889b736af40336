"""The demo orders: varied, spread over days, loaded once, without calling anyone."""

from datetime import timedelta
from io import StringIO

import pytest
from django.contrib.auth.models import Group
from django.core.management import call_command
from django.db.models import Max, Min
from django.urls import reverse
from django.utils import timezone

from bots.services import notice_claim
from orders import demo, selectors
from orders.models import Order, OrderEvent, Payment, PaymentInvoice, SupplierAttempt
from orders.models import OrderStatus as S
from orders.tests.conftest import catalog, make_order  # noqa: F401  (fixtures)

pytestmark = pytest.mark.django_db


@pytest.fixture
def no_outside_calls(monkeypatch):
    """Any supplier or payment provider client the loader asked for would fail the test."""

    def refuse(*args, **kwargs):
        raise AssertionError("the demo loader must not call a supplier or payment provider")

    monkeypatch.setattr("orders.services.get_supplier_client", refuse)
    monkeypatch.setattr("orders.services.payment_provider_get", refuse)
    monkeypatch.setattr("orders.payments.services.payment_provider_get", refuse)


def counts() -> dict[str, int]:
    return {model.__name__: model.objects.count()
            for model in (Order, OrderEvent, Payment, PaymentInvoice, SupplierAttempt)}


def test_loading_twice_gives_the_same_rows(catalog, no_outside_calls):
    assert demo.demo_orders_load() == len(demo.DEMO_ORDERS)
    first = counts()
    assert demo.demo_orders_load() == 0
    assert counts() == first and first["Order"] == len(demo.DEMO_ORDERS)


def test_it_adds_nothing_to_a_shop_that_has_orders(catalog, make_order):
    make_order(S.DELIVERED)
    assert demo.demo_orders_load() == 0 and Order.objects.count() == 1


def test_every_case_the_console_shows_is_there(catalog, no_outside_calls):
    demo.demo_orders_load()
    delivered = Order.objects.filter(status=S.DELIVERED)
    assert set(delivered.values_list("payment_method", flat=True)) == {
        "sandbox", "ton", "stripe", "cryptopay", "telegram"}
    assert set(delivered.values_list("channel", flat=True)) == {"web", "bot"}
    for status in (S.REFUNDED, S.ON_HOLD, S.UNKNOWN, S.REVIEW, S.EXPIRED, S.CANCELLED):
        assert Order.objects.filter(status=status).count() == 1, status
    held = Order.objects.get(status=S.ON_HOLD)
    assert held.recipient_username == "@sandbox_broke"
    assert held.status_reason == selectors.HOLD_REASON_BALANCE
    counts = selectors.problem_queue_counts(undelivered_minutes=10)
    assert (counts.on_hold_balance, counts.unknown, counts.review, counts.overpaid) == (
        1, 1, 1, 1)
    refunded = Order.objects.get(status=S.REFUNDED)
    assert refunded.payments.get().status == Payment.Status.REFUNDED and refunded.margin == 0
    # Delivered orders carry what the services record: a payment, an attempt, the supplier's id.
    for order in delivered:
        assert order.payments.count() == 1 and order.supplier_attempts.count() == 1
        assert order.supplier_order_id and order.paid_at < order.delivered_at


def test_orders_span_several_days_with_consistent_times(catalog, no_outside_calls):
    now = timezone.now()
    demo.demo_orders_load(now=now)
    span = Order.objects.aggregate(first=Min("created_at"), last=Max("created_at"))
    assert now - timedelta(days=7) < span["first"] and span["last"] < now
    days = {timezone.localdate(created) for created in Order.objects.values_list("created_at", flat=True)}
    assert len(days) >= 5
    for order in Order.objects.prefetch_related("events"):
        times = [event.created_at for event in order.events.all()]
        assert times == sorted(times) and times[0] == order.created_at, order
        assert order.status_changed_at == times[-1], order
        if order.paid_at:
            assert order.created_at < order.paid_at
    # The slowest delivery is the one the demo makes slow: the p99 has something to show.
    slowest = max(o.delivered_at - o.paid_at for o in Order.objects.filter(status=S.DELIVERED))
    assert slowest == timedelta(seconds=95)


def test_no_worker_is_asked_to_fulfil_and_no_bot_buyer_is_messaged(
        catalog, no_outside_calls, settings, monkeypatch, django_capture_on_commit_callbacks):
    """The demo's work is already done; its Telegram buyers are not real (even with a token set)."""
    settings.ORDER_NOTICE_TASKS = {"web": "shop.tasks.order_receipt", "bot": "bots.tasks.order_notify"}
    fulfil, notices = [], []
    monkeypatch.setattr("orders.queue.enqueue_fulfilment", fulfil.append)
    monkeypatch.setattr("orders.queue.enqueue_buyer_notice",
                        lambda order_id, channel, status: notices.append((order_id, channel, status)))
    with django_capture_on_commit_callbacks(execute=True):
        demo.demo_orders_load()
    assert fulfil == []
    bot_notices = [(order_id, status) for order_id, channel, status in notices if channel == "bot"]
    assert bot_notices  # the bot orders did reach delivered
    for order_id, status in bot_notices:
        assert notice_claim(order_id=order_id, status=status) is None


def test_unknown_and_held_orders_wait_for_an_operator_or_the_sweeper(catalog, no_outside_calls):
    demo.demo_orders_load()
    # Not picked up by the recovery loop (it would look the order up at the sandbox supplier).
    assert Order.objects.get(status=S.UNKNOWN).next_action_at is None
    assert Order.objects.get(status=S.ON_HOLD).next_action_at is not None


def test_demo_setup_loads_them_once(catalog, settings, tmp_path, no_outside_calls):
    settings.BASE_DIR = tmp_path
    output = StringIO()
    call_command("demo_setup", stdout=output)
    call_command("demo_setup", stdout=output)
    assert Order.objects.count() == len(demo.DEMO_ORDERS)
    assert "Demo orders: 34 created" in output.getvalue()
    assert "Demo orders: not added" in output.getvalue()


def test_the_dashboard_over_the_demo_shows_revenue(catalog, client, django_user_model, no_outside_calls):
    demo.demo_orders_load()
    manager = django_user_model.objects.create_user(username="manager", is_staff=True)
    manager.groups.add(Group.objects.get(name="Managers"))
    client.force_login(manager)
    response = client.get(reverse("admin:dashboard"))
    assert response.status_code == 200
    dashboard = response.context["dashboard"]
    usd = dashboard.totals[0]
    assert usd.currency == "USD" and usd.revenue > 0 and usd.orders == 30
    assert sum(day.placed for day in dashboard.days) == len(demo.DEMO_ORDERS)
    assert {line.key for line in dashboard.by_method} == {
        "sandbox", "ton", "stripe", "cryptopay", "telegram"}
    assert dashboard.delivery.delivered == 28 and dashboard.outcomes.refunded == 1


def test_demo_orders_are_priced_as_buyers_orders_are(catalog, no_outside_calls, settings):
    """Each method's fee is charged, and no demo sale is one the margin guard would refuse."""
    from shop.money import percent_of

    demo.demo_orders_load()
    orders = list(Order.objects.all())
    for order in orders:
        fee_percent = settings.PAYMENT_METHODS[order.payment_method]["fee_percent"]
        assert order.payment_fee == percent_of(order.price, fee_percent), order
        assert order.price - order.cost - order.payment_fee >= catalog.min_margin, order
    assert any(order.payment_fee > 0 for order in orders)  # card and crypto sales pay fees
