"""Leases on paid orders: taken, renewed while the worker makes progress, lost when it stalls."""

import time
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from orders import leases, services
from orders.models import Order
from orders.models import OrderStatus as S


@pytest.fixture
def enqueued(monkeypatch):
    jobs: list[int] = []
    monkeypatch.setattr("orders.queue.enqueue_fulfilment", jobs.append)
    return jobs


def test_a_held_lease_keeps_other_workers_off(make_order):
    order = make_order(S.PAID, next_action_at=timezone.now())
    assert leases.order_lease_acquire(order_id=order.pk, owner="a")
    assert not leases.order_lease_acquire(order_id=order.pk, owner="b")
    leases.order_lease_release(order_id=order.pk, owner="b")  # not b's to release
    assert not leases.order_lease_acquire(order_id=order.pk, owner="b")
    leases.order_lease_release(order_id=order.pk, owner="a")
    assert leases.order_lease_acquire(order_id=order.pk, owner="b")


def test_a_lapsed_lease_can_be_taken_and_its_old_holder_cannot_renew(make_order):
    order = make_order(S.SUBMITTING, next_action_at=timezone.now())
    assert leases.order_lease_acquire(order_id=order.pk, owner="dead")
    Order.objects.filter(pk=order.pk).update(lease_until=timezone.now() - timedelta(seconds=1))
    assert leases.order_lease_acquire(order_id=order.pk, owner="alive")
    assert not leases.order_lease_renew(order_id=order.pk, owner="dead")
    assert leases.order_lease_renew(order_id=order.pk, owner="alive")


def test_recovery_enqueues_due_free_orders_once_until_the_dispatch_lapses(make_order, enqueued,
                                                                           settings):
    settings.FULFILMENT_DISPATCH_SECONDS = 4
    settings.FULFILMENT_LEASE_SECONDS = 60
    now = timezone.now()
    due = make_order(S.PROCESSING, next_action_at=now - timedelta(seconds=1))
    held = make_order(S.SUBMITTING, next_action_at=now - timedelta(seconds=1))
    assert leases.order_lease_acquire(order_id=held.pk, owner="worker")
    make_order(S.PAID, next_action_at=now + timedelta(minutes=1))
    make_order(S.DELIVERED, next_action_at=now - timedelta(seconds=1))

    assert services.orders_recover(now=now) == [due.pk]
    # Its task is waiting in the queue: no second copy on the next tick.
    assert services.orders_recover(now=now + timedelta(seconds=1)) == []
    # A lost task (the queue died with the cluster) is enqueued again once the mark lapses.
    later = now + timedelta(seconds=10)
    assert services.orders_recover(now=later) == [due.pk]
    assert enqueued == [due.pk, due.pk]


def test_a_dispatched_order_is_taken_by_the_first_worker(make_order):
    order = make_order(S.PAID, next_action_at=timezone.now())
    assert leases.order_lease_dispatch(order_id=order.pk, now=timezone.now())
    assert leases.order_lease_acquire(order_id=order.pk, owner="worker")
    assert not leases.order_lease_dispatch(order_id=order.pk, now=timezone.now())


def test_fulfil_does_nothing_while_another_worker_holds_the_order(catalog, supplier, make_order):
    order = make_order(S.PAID, next_action_at=timezone.now())
    assert leases.order_lease_acquire(order_id=order.pk, owner="other-worker")
    assert services.order_fulfil(order_id=order.pk).status == S.PAID
    assert supplier.topup_calls(order.idempotency_key) == 0


def test_fulfil_releases_its_lease_when_done(catalog, supplier, make_order):
    order = make_order(S.PAID, next_action_at=timezone.now())
    order = services.order_fulfil(order_id=order.pk)
    assert order.status == S.DELIVERED
    assert (order.lease_owner, order.lease_until) == ("", None)


@pytest.mark.django_db(transaction=True)
def test_the_keeper_renews_while_the_worker_progresses_and_stops_when_it_stalls(make_order, settings):
    settings.FULFILMENT_LEASE_HEARTBEAT = True
    settings.FULFILMENT_LEASE_SECONDS = 0.6  # renewed every 0.2 s
    order = make_order(S.PROCESSING, next_action_at=timezone.now())
    assert leases.order_lease_acquire(order_id=order.pk, owner="me")
    keeper = leases.LeaseKeeper(order_id=order.pk, owner="me")
    keeper.MARGIN_SECONDS = 0
    keeper.expect(1.0)  # "my next step takes up to 1 s"
    keeper.start()
    try:
        time.sleep(0.9)
        order.refresh_from_db()
        assert order.lease_until > timezone.now()  # renewed past the first 0.6 s
        time.sleep(1.2)  # the step overran its promise: the worker is stalled
        order.refresh_from_db()
        assert order.lease_until < timezone.now()
        assert leases.order_lease_acquire(order_id=order.pk, owner="next-worker")
    finally:
        keeper.stop()
        connection.close()


@pytest.mark.django_db(transaction=True)
def test_the_keeper_notices_a_lost_lease(make_order, settings):
    settings.FULFILMENT_LEASE_HEARTBEAT = True
    settings.FULFILMENT_LEASE_SECONDS = 0.6
    order = make_order(S.PROCESSING, next_action_at=timezone.now())
    assert leases.order_lease_acquire(order_id=order.pk, owner="me")
    keeper = leases.LeaseKeeper(order_id=order.pk, owner="me")
    keeper.expect(10)
    keeper.start()
    try:
        Order.objects.filter(pk=order.pk).update(lease_owner="someone-else")
        deadline = time.monotonic() + 3
        while not keeper.lost and time.monotonic() < deadline:
            time.sleep(0.05)
        assert keeper.lost
    finally:
        keeper.stop()
        connection.close()
