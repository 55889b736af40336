"""Many supplier calls in flight: claims of due orders, the fulfilment pool, the supplier's pace.

fulfil_concurrently runs in the cluster's fulfilment task (orders/tasks.py); here it runs in the
test process against the sandbox supplier in a thread, with transactional tests because its
threads open their own database connections.
"""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest
import requests
from django.db import connection
from django.utils import timezone

from orders import leases, services
from orders.models import Order, SupplierAttempt
from orders.models import OrderStatus as S
from orders.suppliers import throttle

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def sandbox_supplier_options(sandbox_supplier_options):
    # Every answer takes 0.3 s, as a distant supplier's would.
    return {**sandbox_supplier_options, "latency_seconds": 0.3}


@pytest.fixture(autouse=True)
def _close_connection():
    yield
    connection.close()


def _due_orders(make_order, count: int, **fields) -> list[Order]:
    now = timezone.now()
    return [make_order(S.PAID, recipient_user_id=str(7_000_000 + number),
                       recipient_username=f"@user{7_000_000 + number}",
                       next_action_at=now - timedelta(seconds=1), paid_at=now, **fields)
            for number in range(count)]


def test_claims_take_each_due_order_once_across_racing_claimers(make_order):
    orders = _due_orders(make_order, 12)
    results: list[list[tuple[int, str]]] = []
    start = threading.Barrier(3)

    def claim() -> None:
        start.wait()
        try:
            results.append(services.orders_claim_due(limit=12))
        finally:
            connection.close()

    threads = [threading.Thread(target=claim) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    claimed = [order_id for result in results for order_id, _ in result]
    assert sorted(claimed) == sorted(order.pk for order in orders)  # all, and none twice
    owners = dict(Order.objects.values_list("pk", "lease_owner"))
    for result in results:
        for order_id, owner in result:
            assert owners[order_id] == owner


def test_claims_skip_held_not_due_and_settled_orders_and_honour_the_limit(make_order):
    due = _due_orders(make_order, 3)
    held = _due_orders(make_order, 1)[0]
    assert leases.order_lease_acquire(order_id=held.pk, owner="a-live-worker")
    later = make_order(S.PAID, next_action_at=timezone.now() + timedelta(minutes=5))
    make_order(S.DELIVERED, next_action_at=timezone.now() - timedelta(seconds=1))
    dispatched = _due_orders(make_order, 1)[0]
    assert leases.order_lease_dispatch(order_id=dispatched.pk, now=timezone.now())

    first = services.orders_claim_due(limit=2)
    rest = services.orders_claim_due(limit=10)
    assert len(first) == 2
    claimed = {order_id for order_id, _ in first + rest}
    # A dispatched order waits for its queued task, which any worker may take over.
    assert claimed == {order.pk for order in due} | {dispatched.pk}
    assert held.pk not in claimed and later.pk not in claimed
    assert services.orders_claim_due(limit=0) == []


def test_one_task_keeps_many_supplier_calls_in_flight_and_places_each_once(
        make_order, supplier, settings):
    settings.FULFILMENT_CONCURRENCY = 10
    settings.FULFILMENT_CLAIM_SECONDS = 2.0
    settings.SUPPLIER_RATE_PER_SECOND = 0
    orders = _due_orders(make_order, 10)
    result = services.fulfil_concurrently(order_id=orders[0].pk)
    assert result.status == S.DELIVERED
    traffic = requests.get(f"{supplier.url}/_sandbox/traffic", timeout=5).json()
    # 10 orders, each a validation then a top-up: one at a time would never overlap.
    assert traffic["max_in_flight"] >= 5
    for order in Order.objects.filter(pk__in=[o.pk for o in orders]):
        assert order.status == S.DELIVERED
        assert (order.lease_owner, order.lease_until) == ("", None)
        assert supplier.topup_calls(order.idempotency_key) == 1
        assert SupplierAttempt.objects.filter(order=order).count() == 1


def test_concurrency_one_is_plain_order_fulfil(make_order, supplier, settings):
    settings.FULFILMENT_CONCURRENCY = 1
    orders = _due_orders(make_order, 3)
    assert services.fulfil_concurrently(order_id=orders[0].pk).status == S.DELIVERED
    statuses = set(Order.objects.filter(pk__in=[o.pk for o in orders[1:]])
                   .values_list("status", flat=True))
    assert statuses == {S.PAID}  # nobody else claimed


def test_the_shop_keeps_to_the_suppliers_rate(make_order, supplier, settings):
    """The supplier allows 4 calls a second; the shop is told 4 and never gets a 429."""
    settings.FULFILMENT_CONCURRENCY = 8
    settings.FULFILMENT_CLAIM_SECONDS = 1.0
    settings.SUPPLIER_RATE_PER_SECOND = 4
    orders = _due_orders(make_order, 6)
    started = time.monotonic()
    services.fulfil_concurrently(order_id=orders[0].pk)
    elapsed = time.monotonic() - started
    assert set(Order.objects.filter(pk__in=[o.pk for o in orders])
               .values_list("status", flat=True)) == {S.DELIVERED}
    # 12 calls at 4 a second cannot all have started within the first 2.5 s.
    assert elapsed >= 2.5


def test_a_429_pauses_every_caller_of_that_supplier(make_order, supplier, settings):
    settings.SUPPLIER_RATE_PER_SECOND = 0
    order = make_order(S.PAID, recipient_user_id="100000008", recipient_username="@sandbox_ratelimit",
                       next_action_at=timezone.now())
    services.order_fulfil(order_id=order.pk, budget_seconds=0)
    order.refresh_from_db()
    assert order.status == S.PAID  # refused with Retry-After: 1, nothing placed
    waits: list[float] = []
    throttle.supplier_slot_wait("sandbox", sleep=waits.append)
    assert waits and 0.5 < waits[0] <= 1.1


def test_a_worker_whose_lease_passed_while_it_waited_for_a_slot_does_not_send(
        make_order, supplier, settings, monkeypatch):
    """Chaos found it: a worker waiting out a 429 pause lost its lease to another worker, which
    looked the key up, found nothing and placed the top-up again; the late first request made
    the second a replay. The top-up goes out only while the lease is still this worker's."""
    settings.SUPPLIER_RATE_PER_SECOND = 0
    order = make_order(S.PAID, recipient_user_id="100000001", recipient_username="@sandbox_ok",
                       next_action_at=timezone.now())
    waited = throttle.supplier_slot_wait
    calls: list[str] = []

    def slot_wait(code: str, **kwargs):
        calls.append(code)
        if len(calls) == 2:  # the validation went out; the top-up waits for its slot
            Order.objects.filter(pk=order.pk).update(
                lease_owner="another-worker", lease_until=timezone.now() + timedelta(seconds=30))
        return waited(code, **kwargs)

    monkeypatch.setattr(throttle, "supplier_slot_wait", slot_wait)
    services.order_fulfil(order_id=order.pk, budget_seconds=0)

    order.refresh_from_db()
    assert supplier.topup_calls(order.idempotency_key) == 0
    assert (order.status, order.lease_owner) == (S.SUBMITTING, "another-worker")
    attempt = SupplierAttempt.objects.get(order=order)
    assert (attempt.outcome, attempt.error_code) == (SupplierAttempt.Outcome.REJECTED, "lease_lost")
    assert attempt.finished_at is not None


def test_the_lease_holder_sends_after_its_wait(make_order, supplier, settings, monkeypatch):
    settings.SUPPLIER_RATE_PER_SECOND = 0
    order = make_order(S.PAID, recipient_user_id="100000001", recipient_username="@sandbox_ok",
                       next_action_at=timezone.now())
    services.order_fulfil(order_id=order.pk, budget_seconds=0)
    order.refresh_from_db()
    assert order.status == S.DELIVERED and supplier.topup_calls(order.idempotency_key) == 1


class _Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0
        self.slept: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def test_slots_spread_calls_over_short_windows(settings):
    settings.SUPPLIER_RATE_LIMITS = {"acme": 5.0}  # windows of 0.2 s, one call each
    clock = _Clock()
    waited = [throttle.supplier_slot_wait("acme", sleep=clock.sleep, now=lambda: clock.now)
              for _ in range(5)]
    assert waited[0] == 0
    assert all(w > 0 for w in waited[1:])
    # Five calls span at least four windows: 0.8 s, at most 1.25 s with the jitter.
    assert 0.8 <= clock.now - 1_000_000.0 <= 1.3


def test_rates_by_code_and_the_configured_supplier(settings):
    settings.SUPPLIER_CODE = "sandbox"
    settings.SUPPLIER_RATE_PER_SECOND = 20
    settings.SUPPLIER_RATE_LIMITS = {"other": 2.5}
    assert throttle.supplier_rate("sandbox").window() == (100, 2)
    assert throttle.supplier_rate("other").window() == (400, 1)
    assert throttle.supplier_rate("partner-sandbox").per_second == 0
    clock = _Clock()
    for _ in range(50):
        assert throttle.supplier_slot_wait("partner-sandbox", sleep=clock.sleep,
                                           now=lambda: clock.now) == 0
