"""Bulk actions on the order list: a confirmation page with a reason, then the state machine
decides what moves; every order is reported, and every move is in the admin log."""

import pytest
from django.contrib.admin.models import CHANGE, LogEntry
from django.contrib.messages import SUCCESS, WARNING, get_messages
from django.urls import reverse

from orders import services
from orders.models import Order, OrderEvent, Payment
from orders.models import OrderStatus as S
from orders.transitions import order_transition

CHANGELIST = reverse("admin:orders_order_changelist")


@pytest.fixture
def jobs(monkeypatch):
    recorded: list[tuple[str, int]] = []
    monkeypatch.setattr("orders.queue.enqueue_fulfilment", lambda pk: recorded.append(("fulfil", pk)))
    monkeypatch.setattr("orders.queue.enqueue_refund", lambda pk: recorded.append(("refund", pk)))
    return recorded


def confirm_page(client, action: str, *orders: Order):
    """The list action's first POST: the confirmation page, nothing moved yet."""
    return client.post(CHANGELIST, {"action": action,
                                    "_selected_action": [order.pk for order in orders]})


def act(client, action: str, *orders: Order, reason: str = "Checked with the supplier",
        **extra: str) -> list[tuple[int, str]]:
    """Run a list action on these orders, confirmed with a reason; the messages the operator sees."""
    response = client.post(CHANGELIST, {
        "action": action, "_selected_action": [order.pk for order in orders], "confirm": "yes",
        "reason": reason, **extra}, follow=True)
    assert response.status_code == 200
    return [(message.level, message.message) for message in get_messages(response.wsgi_request)]


def status(order: Order) -> str:
    return Order.objects.get(pk=order.pk).status


def test_the_first_post_asks_for_a_reason_and_moves_nothing(admin_client, make_order, jobs):
    held, delivered = make_order(S.ON_HOLD), make_order(S.DELIVERED)
    response = confirm_page(admin_client, "resume_fulfilment", held, delivered)
    body = response.content.decode()
    assert response.status_code == 200
    assert 'name="reason"' in body and 'name="confirm" value="yes"' in body
    assert held.reference in body  # it applies to the held one ...
    assert "1 selected order is not moved" in body  # ... and says the delivered one is left
    for order in (held, delivered):
        assert f'name="_selected_action" value="{order.pk}"' in body
    assert status(held) == S.ON_HOLD and jobs == []
    assert not OrderEvent.objects.exists()


def test_a_blank_reason_is_refused_and_nothing_moves(admin_client, make_order, jobs):
    held = make_order(S.ON_HOLD)
    response = admin_client.post(CHANGELIST, {"action": "resume_fulfilment",
                                              "_selected_action": [held.pk], "confirm": "yes",
                                              "reason": "   "})
    assert response.status_code == 200
    assert response.context["form"].errors["reason"]
    assert status(held) == S.ON_HOLD and jobs == []


def test_resume_uses_the_service(admin_client, make_order, jobs, django_capture_on_commit_callbacks):
    held = make_order(S.ON_HOLD)
    with django_capture_on_commit_callbacks(execute=True):
        shown = act(admin_client, "resume_fulfilment", held, reason="Balance topped up")
    assert status(held) == S.PAID
    event = OrderEvent.objects.get(order=held)
    assert (event.actor, event.to_status, event.reason) == ("admin:admin", S.PAID,
                                                            "Balance topped up")
    assert jobs == [("fulfil", held.pk)]
    assert [text for _, text in shown] == [f"Retry fulfilment: 1 order moved to Paid ({held})."]
    entry = LogEntry.objects.get(object_id=str(held.pk))
    assert entry.action_flag == CHANGE and "Balance topped up" in entry.get_change_message()


def test_refund_moves_reviewed_and_failed_orders(admin_client, make_order, jobs,
                                                 django_capture_on_commit_callbacks):
    review, failed = make_order(S.REVIEW), make_order(S.FAILED)
    with django_capture_on_commit_callbacks(execute=True):
        act(admin_client, "start_refund", review, failed)
    assert status(review) == S.REFUND_PENDING and status(failed) == S.REFUND_PENDING
    assert sorted(jobs) == sorted([("refund", review.pk), ("refund", failed.pk)])


def test_refund_of_a_delivered_order_is_refused_with_a_message(admin_client, make_order, jobs):
    delivered = make_order(S.DELIVERED)
    shown = act(admin_client, "start_refund", delivered)
    assert status(delivered) == S.DELIVERED
    assert not OrderEvent.objects.filter(order=delivered).exists() and jobs == []
    assert not LogEntry.objects.exists()
    assert shown == [(WARNING, f"Refund: 1 order not moved: {delivered} is Delivered "
                               "(it applies only to Failed or Needs review or On hold orders).")]


def test_cancel_of_a_held_order_is_refused_with_a_message(admin_client, make_order):
    held = make_order(S.ON_HOLD)
    shown = act(admin_client, "cancel_unpaid", held)
    assert status(held) == S.ON_HOLD
    assert shown == [(WARNING, f"Cancel: 1 order not moved: {held} is On hold "
                               "(it applies only to Awaiting payment orders).")]


def test_mark_refunded_records_the_reference_on_orders_and_payments(admin_client, make_order):
    pending, review, delivered = (make_order(S.REFUND_PENDING), make_order(S.REVIEW),
                                  make_order(S.DELIVERED))
    payment = Payment.objects.create(order=review, provider="ton", provider_reference="tx-1",
                                     amount="5", currency="TON")
    shown = dict(act(admin_client, "mark_refunded_manually", pending, review, delivered,
                     reason="Sent back from the wallet", reference="tx-back-9"))
    assert [status(order) for order in (pending, review, delivered)] == [
        S.REFUNDED, S.REFUNDED, S.DELIVERED]
    assert shown[SUCCESS].startswith("Mark refunded manually: 2 orders moved to Refunded")
    assert f"{delivered} is Delivered" in shown[WARNING]
    event = OrderEvent.objects.get(order=review)
    assert event.reason == "Sent back from the wallet"
    assert event.data["refund_reference"] == "tx-back-9"
    payment.refresh_from_db()
    assert (payment.status, payment.refund_reference) == (Payment.Status.REFUNDED, "tx-back-9")
    assert LogEntry.objects.count() == 2


def test_mark_refunded_needs_the_reference(admin_client, make_order):
    pending = make_order(S.REFUND_PENDING)
    response = admin_client.post(CHANGELIST, {
        "action": "mark_refunded_manually", "_selected_action": [pending.pk], "confirm": "yes",
        "reason": "Done by hand"})
    assert response.status_code == 200 and response.context["form"].errors["reference"]
    assert status(pending) == S.REFUND_PENDING


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
    """A payment may land between the list being read and the service's update."""
    first, second = make_order(S.AWAITING_PAYMENT), make_order(S.AWAITING_PAYMENT)
    cancel = services.order_cancel

    def paid_first(*, order: Order, actor: str, reason: str) -> Order:
        if order.pk == second.pk:
            order_transition(order=Order.objects.get(pk=order.pk), to_status=S.PAID,
                             actor="payment:sandbox")
        return cancel(order=order, actor=actor, reason=reason)

    monkeypatch.setattr(services, "order_cancel", paid_first)
    shown = dict(act(admin_client, "cancel_unpaid", first, second))
    assert status(first) == S.CANCELLED and status(second) == S.PAID
    assert shown[WARNING] == (
        f"Cancel: 1 order not moved: {second} changed meanwhile: "
        f"Order {second} is no longer awaiting_payment (now paid).")
    assert not OrderEvent.objects.filter(order=second, actor="admin:admin").exists()


def test_many_refused_orders_are_named_up_to_a_limit(admin_client, make_order):
    from orders import admin as order_admin

    delivered = [make_order(S.DELIVERED) for _ in range(order_admin.MESSAGE_REFERENCES + 3)]
    shown = dict(act(admin_client, "resume_fulfilment", *delivered))
    assert "13 orders not moved" in shown[WARNING] and "and 3 more are Delivered" in shown[WARNING]


def test_select_across_keeps_the_list_filter(admin_client, make_order, jobs):
    """"Select all" with a filter: the confirmed action moves the filtered orders only."""
    held = [make_order(S.ON_HOLD) for _ in range(2)]
    other_channel = make_order(S.ON_HOLD, channel="bot")
    response = admin_client.post(f"{CHANGELIST}?channel__exact=web", {
        "action": "resume_fulfilment", "_selected_action": [held[0].pk], "select_across": "1",
        "confirm": "yes", "reason": "All web orders"}, follow=True)
    assert response.status_code == 200
    assert [status(order) for order in held] == [S.PAID, S.PAID]
    assert status(other_channel) == S.ON_HOLD
