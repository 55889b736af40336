"""Bulk actions on the order list: the state machine decides what moves; every order is reported."""

import pytest
from django.contrib.messages import SUCCESS, WARNING, get_messages
from django.urls import reverse

from orders import admin as order_admin
from orders import services
from orders.models import Order, OrderEvent
from orders.models import OrderStatus as S
from orders.transitions import order_transition


@pytest.fixture
def jobs(monkeypatch):
    recorded: list[tuple[str, int]] = []
    monkeypatch.setattr("orders.queue.enqueue_fulfilment", lambda pk: recorded.append(("fulfil", pk)))
    monkeypatch.setattr("orders.queue.enqueue_refund", lambda pk: recorded.append(("refund", pk)))
    return recorded


def act(client, action: str, *orders: Order) -> list[tuple[int, str]]:
    """Run a list action on these orders; the messages the operator sees, as (level, text)."""
    response = client.post(reverse("admin:orders_order_changelist"),
                           {"action": action, "_selected_action": [order.pk for order in orders]},
                           follow=True)
    assert response.status_code == 200
    return [(message.level, message.message) for message in get_messages(response.wsgi_request)]


def status(order: Order) -> str:
    return Order.objects.get(pk=order.pk).status


def test_resume_uses_the_service(admin_client, make_order, jobs, django_capture_on_commit_callbacks):
    held = make_order(S.ON_HOLD)
    with django_capture_on_commit_callbacks(execute=True):
        shown = act(admin_client, "resume_fulfilment", held)
    assert status(held) == S.PAID
    event = OrderEvent.objects.get(order=held)
    assert event.actor == "admin:admin" and event.to_status == S.PAID
    assert jobs == [("fulfil", held.pk)]
    assert [text for _, text in shown] == [f"Resume fulfilment: 1 order moved to Paid ({held})."]


def test_refund_moves_a_reviewed_order(admin_client, make_order, jobs, django_capture_on_commit_callbacks):
    review = make_order(S.REVIEW)
    with django_capture_on_commit_callbacks(execute=True):
        act(admin_client, "start_refund", review)
    assert status(review) == S.REFUND_PENDING
    assert jobs == [("refund", review.pk)]


def test_refund_of_a_delivered_order_is_refused_with_a_message(admin_client, make_order, jobs):
    delivered = make_order(S.DELIVERED)
    shown = act(admin_client, "start_refund", delivered)
    assert status(delivered) == S.DELIVERED
    assert not OrderEvent.objects.filter(order=delivered).exists() and jobs == []
    assert shown == [(WARNING, f"Refund: 1 order not moved: {delivered} is Delivered "
                               "(it applies only to Needs review or On hold orders).")]


def test_cancel_of_a_held_order_is_refused_with_a_message(admin_client, make_order):
    held = make_order(S.ON_HOLD)
    shown = act(admin_client, "cancel_unpaid", held)
    assert status(held) == S.ON_HOLD
    assert shown == [(WARNING, f"Cancel: 1 order not moved: {held} is On hold "
                               "(it applies only to Awaiting payment orders).")]


def test_a_mixed_selection_moves_what_applies_and_reports_the_rest(admin_client, make_order, jobs):
    unpaid = [make_order(S.AWAITING_PAYMENT) for _ in range(2)]
    paid, delivered, held = make_order(S.PAID), make_order(S.DELIVERED), make_order(S.ON_HOLD)
    shown = dict((level, text) for level, text in act(admin_client, "cancel_unpaid",
                                                      *unpaid, paid, delivered, held))
    assert [status(order) for order in unpaid] == [S.CANCELLED, S.CANCELLED]
    assert [status(order) for order in (paid, delivered, held)] == [S.PAID, S.DELIVERED, S.ON_HOLD]
    success = shown[SUCCESS]
    assert success.startswith("Cancel: 2 orders moved to Cancelled (")
    assert all(str(order) in success for order in unpaid)
    warning = shown[WARNING]
    assert warning.startswith("Cancel: 3 orders not moved: ")
    for order, label in ((paid, "Paid"), (delivered, "Delivered"), (held, "On hold")):
        assert f"{order} is {label}" in warning
    assert warning.endswith("(it applies only to Awaiting payment orders).")


def test_an_order_moved_meanwhile_is_reported_by_name(admin_client, make_order, monkeypatch):
    """A payment may land between the operator's click and the service's update."""
    first, second = make_order(S.AWAITING_PAYMENT), make_order(S.AWAITING_PAYMENT)

    def paid_first(*, order: Order, actor: str) -> Order:
        if order.pk == second.pk:
            order_transition(order=Order.objects.get(pk=order.pk), to_status=S.PAID,
                             actor="payment:sandbox")
        return services.order_cancel(order=order, actor=actor)

    monkeypatch.setattr(order_admin, "CANCEL", order_admin.OrderMove(
        paid_first, order_admin.CANCEL.from_statuses, order_admin.CANCEL.to_status))
    shown = dict(act(admin_client, "cancel_unpaid", first, second))
    assert status(first) == S.CANCELLED and status(second) == S.PAID
    assert shown[WARNING] == (
        f"Cancel: 1 order not moved: {second} changed meanwhile: "
        f"Order {second} is no longer awaiting_payment (now paid).")


def test_many_refused_orders_are_named_up_to_a_limit(admin_client, make_order):
    delivered = [make_order(S.DELIVERED) for _ in range(order_admin.MESSAGE_REFERENCES + 3)]
    shown = dict(act(admin_client, "resume_fulfilment", *delivered))
    assert "13 orders not moved" in shown[WARNING] and "and 3 more are Delivered" in shown[WARNING]
