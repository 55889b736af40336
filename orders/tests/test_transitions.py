"""The state machine: every declared move works and records an event; every other move is refused."""

import threading

import pytest
from django.db import connection

from orders.exceptions import InvalidTransition, OrderStateChanged
from orders.models import Order, OrderEvent
from orders.models import OrderStatus as S
from orders.transitions import FINAL_STATUSES, TRANSITIONS, can_transition, order_transition

ALL_PAIRS = [(a, b) for a in S.values for b in S.values]


def test_every_status_is_in_the_machine():
    assert set(TRANSITIONS) == set(S.values)
    for moves in TRANSITIONS.values():
        assert moves <= set(S.values)


def test_delivered_and_refunded_are_final():
    assert TRANSITIONS[S.DELIVERED] == frozenset()
    assert TRANSITIONS[S.REFUNDED] == frozenset()
    assert {S.DELIVERED, S.REFUNDED} <= FINAL_STATUSES


def test_the_happy_path_is_declared():
    path = [S.AWAITING_PAYMENT, S.PAID, S.SUBMITTING, S.PROCESSING, S.DELIVERED]
    assert all(can_transition(a, b) for a, b in zip(path, path[1:], strict=False))


def test_unpaid_orders_never_reach_the_supplier():
    assert not can_transition(S.AWAITING_PAYMENT, S.SUBMITTING)
    assert not can_transition(S.AWAITING_PAYMENT, S.DELIVERED)
    assert not can_transition(S.EXPIRED, S.SUBMITTING)


def test_unknown_is_never_resent_directly():
    # Only a lookup decides; back to paid is the lookup's "not placed" verdict.
    assert not can_transition(S.UNKNOWN, S.SUBMITTING)


@pytest.mark.parametrize(("from_status", "to_status"), ALL_PAIRS)
def test_transition_matrix(make_order, from_status, to_status):
    order = make_order(from_status)
    if can_transition(from_status, to_status):
        order_transition(order=order, to_status=to_status, actor="test", reason="matrix")
        order.refresh_from_db()
        assert order.status == to_status
        event = OrderEvent.objects.get(order=order)
        assert (event.from_status, event.to_status, event.actor) == (from_status, to_status, "test")
    else:
        with pytest.raises(InvalidTransition):
            order_transition(order=order, to_status=to_status, actor="test")
        order.refresh_from_db()
        assert order.status == from_status
        assert not OrderEvent.objects.filter(order=order).exists()


def test_expected_status_guards_against_stale_reads(make_order):
    order = make_order(S.PAID)
    stale = Order.objects.get(pk=order.pk)
    order_transition(order=order, to_status=S.SUBMITTING, actor="a", expected_status=S.PAID)
    with pytest.raises(OrderStateChanged):
        order_transition(order=stale, to_status=S.SUBMITTING, actor="b", expected_status=S.PAID)
    assert OrderEvent.objects.filter(order=order, to_status=S.SUBMITTING).count() == 1


def test_fields_are_saved_with_the_move(make_order):
    order = make_order(S.SUBMITTING)
    order_transition(order=order, to_status=S.PROCESSING, actor="w", supplier_order_id="SUP-1")
    order.refresh_from_db()
    assert order.supplier_order_id == "SUP-1"
    assert order.status_reason == ""


def test_delivery_stamps_time_and_clears_the_job(make_order):
    from django.utils import timezone

    order = make_order(S.PROCESSING, next_action_at=timezone.now())
    order_transition(order=order, to_status=S.DELIVERED, actor="w")
    order.refresh_from_db()
    assert order.delivered_at is not None
    assert order.next_action_at is None


@pytest.mark.django_db(transaction=True)
def test_racing_claims_one_winner(make_order):
    """Eight threads claim the same paid order; exactly one moves it."""
    order = make_order(S.PAID)
    results: list[str] = []
    barrier = threading.Barrier(8)

    def claim():
        barrier.wait()
        try:
            order_transition(order=Order.objects.get(pk=order.pk), to_status=S.SUBMITTING,
                             actor="racer", expected_status=S.PAID)
            results.append("won")
        except (OrderStateChanged, InvalidTransition):
            results.append("lost")
        finally:
            connection.close()

    threads = [threading.Thread(target=claim) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results.count("won") == 1
    assert OrderEvent.objects.filter(order=order, to_status=S.SUBMITTING).count() == 1


@pytest.mark.parametrize("to_status", [S.DELIVERED, S.REFUND_PENDING])
def test_final_moves_notify_the_buyer_on_commit(make_order, settings, monkeypatch, to_status,
                                                django_capture_on_commit_callbacks):
    settings.ORDER_NOTICE_TASKS = {"bot": "bots.tasks.order_notify"}
    sent: list[tuple] = []
    monkeypatch.setattr("orders.queue.async_task", lambda *args, **kw: sent.append(args))
    order = make_order(S.PROCESSING if to_status == S.DELIVERED else S.FAILED, channel="bot")
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        order_transition(order=order, to_status=to_status, actor="test")
    assert sent == []  # nothing leaves before the commit
    for callback in callbacks:
        callback()
    assert sent == [("bots.tasks.order_notify", order.pk, to_status)]


def test_web_orders_have_no_push_notice(make_order, settings, monkeypatch,
                                        django_capture_on_commit_callbacks):
    settings.ORDER_NOTICE_TASKS = {"bot": "bots.tasks.order_notify"}
    sent: list[tuple] = []
    monkeypatch.setattr("orders.queue.async_task", lambda *args, **kw: sent.append(args))
    with django_capture_on_commit_callbacks(execute=True):
        order_transition(order=make_order(S.PROCESSING), to_status=S.DELIVERED, actor="test")
    assert sent == []
