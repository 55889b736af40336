"""Exactly-once fulfilment through a real django-q2 cluster (subprocesses) and the sandbox supplier.

The cluster runs `manage.py qcluster` against this test database and whatever broker the
settings choose (the ORM broker by default, Redis when REDIS_URL is set, as in CI).
"""

import time

import pytest
from django.db import connection

from orders import queue, services
from orders.models import Order, SupplierAttempt
from orders.models import OrderStatus as S
from orders.tests.clusters import Cluster, cluster_test_env, paid_order

pytestmark = [pytest.mark.cluster, pytest.mark.django_db(transaction=True)]

@pytest.fixture
def sandbox_supplier_options(sandbox_supplier_options):
    # Long enough a window to kill the cluster while @sandbox_hold's answer is on its way.
    return {**sandbox_supplier_options, "slow_seconds": 3.0}


@pytest.fixture
def cluster(sandbox_supplier, settings, tmp_path):
    c = Cluster(cluster_test_env(sandbox_supplier, settings), tmp_path)
    c.start()
    yield c
    c.stop()
    connection.close()


def _wait_for(order: Order, status: str, cluster: Cluster, seconds: float) -> Order:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        order.refresh_from_db()
        if order.status == status:
            return order
        time.sleep(0.2)
    pytest.fail(f"{order} is {order.status}, not {status}, after {seconds}s\n{cluster.logs()}")


def test_cluster_delivers_apaid_order(cluster, sandbox_supplier):
    order = _wait_for(paid_order("@sandbox_ok"), S.DELIVERED, cluster, 30)
    assert sandbox_supplier.topup_calls(order.idempotency_key) == 1


def test_duplicate_confirmations_and_tasks_place_once(cluster, sandbox_supplier):
    order = paid_order("@sandbox_slow")
    for _ in range(4):
        services.order_pay_sandbox(order=Order.objects.get(pk=order.pk))
        queue.enqueue_fulfilment(order.pk)
    order = _wait_for(order, S.DELIVERED, cluster, 30)
    assert sandbox_supplier.topup_calls(order.idempotency_key) == 1
    assert SupplierAttempt.objects.filter(order=order).count() == 1
    assert order.payments.count() == 1


def test_sigkill_mid_call_then_restart_delivers_once(cluster, sandbox_supplier):
    """Kill -9 the whole cluster while the supplier is answering; the sweeper finishes the job."""
    order = paid_order("@sandbox_hold")
    deadline = time.monotonic() + 30
    while sandbox_supplier.topup_calls(order.idempotency_key) == 0:
        if time.monotonic() > deadline:
            pytest.fail("the top-up call never reached the supplier\n" + cluster.logs())
        time.sleep(0.05)
    cluster.kill()
    order.refresh_from_db()
    assert order.status == S.SUBMITTING  # the worker died before it could save anything
    cluster.start()
    # The recovery loop sees the order once the dead worker's lease lapses; a worker looks it
    # up by our idempotency key and adopts the supplier's order instead of placing another.
    order = _wait_for(order, S.DELIVERED, cluster, 30)
    assert sandbox_supplier.topup_calls(order.idempotency_key) == 1
    assert sandbox_supplier.calls(order.idempotency_key)["orders_created"] == 1
    assert [e.to_status for e in order.events.all()][-2:] == [S.UNKNOWN, S.DELIVERED]
