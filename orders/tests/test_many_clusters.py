"""Many machines: two django-q2 clusters and more sweepers at once, every order fulfilled once.

Two `manage.py qcluster` processes share this test database and broker (Redis in CI's second
pass, the ORM broker otherwise), as two machines would; each runs its own recovery loop, and
the test process sweeps too (the scheduled sweep), all while a burst of paid orders with
every kind of supplier trouble arrives. Claims are SELECT ... FOR UPDATE SKIP LOCKED on
PostgreSQL and conditional UPDATEs on SQLite (orders.services.orders_claim_due).
"""

from __future__ import annotations

import threading
import time

import pytest
from django.db import connection

from orders import services
from orders.models import Order, OrderEvent, SupplierAttempt
from orders.models import OrderStatus as S
from orders.tests.clusters import Cluster, cluster_test_env, paid_order

pytestmark = [pytest.mark.cluster, pytest.mark.django_db(transaction=True)]

RECIPIENTS = ["@sandbox_ok", "@sandbox_slow", "@sandbox_flaky", "@sandbox_ratelimit",
              "@sandbox_fail"] + [str(7_300_000 + n) for n in range(5)]


@pytest.fixture
def sandbox_supplier_options(sandbox_supplier_options):
    return {**sandbox_supplier_options, "latency_seconds": 0.2}


@pytest.fixture
def clusters(sandbox_supplier, settings, tmp_path):
    settings.SUPPLIER_TIMEOUT = 5.0
    env = cluster_test_env(sandbox_supplier, settings, FULFILMENT_CONCURRENCY="8",
                           RECOVERY_TICK_SECONDS="0.5")
    started = []
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        cluster = Cluster(env, tmp_path / name)
        cluster.start()
        started.append(cluster)
    yield started
    for cluster in started:
        cluster.stop()
    connection.close()


def test_two_clusters_and_sweepers_fulfil_each_order_once(clusters, sandbox_supplier):
    stop = threading.Event()

    def sweep() -> None:  # the scheduled sweep, from a third process's point of view
        try:
            while not stop.is_set():
                services.orders_sweep()
                time.sleep(0.3)
        finally:
            connection.close()

    sweeper = threading.Thread(target=sweep)
    sweeper.start()
    try:
        orders = [paid_order(recipient) for recipient in RECIPIENTS * 4]
        deadline = time.monotonic() + 90
        settled = {S.DELIVERED, S.REFUNDED}
        while time.monotonic() < deadline:
            statuses = set(Order.objects.filter(pk__in=[o.pk for o in orders])
                           .values_list("status", flat=True))
            if statuses <= settled:
                break
            time.sleep(0.5)
    finally:
        stop.set()
        sweeper.join()
    logs = "\n".join(cluster.logs() for cluster in clusters)
    for order in orders:
        order.refresh_from_db()
        expected = S.REFUNDED if order.recipient_input == "@sandbox_fail" else S.DELIVERED
        assert order.status == expected, f"{order}: {order.status}\n{logs}"
        calls = sandbox_supplier.calls(order.idempotency_key)
        assert calls["orders_created"] == 1, (order, calls)
        assert SupplierAttempt.objects.filter(
            order=order, outcome=SupplierAttempt.Outcome.ACCEPTED).count() <= 1
        moves = list(OrderEvent.objects.filter(order=order).values_list("from_status", "to_status"))
        # Paid once; back to paid only from a refusal or an outcome proven unplaced.
        assert moves.count((S.AWAITING_PAYMENT, S.PAID)) == 1, moves
        assert [to for _, to in moves].count(expected) == 1, moves
    # Both machines took part.
    for cluster in clusters:
        full = "".join(p.read_text(errors="replace") for p in cluster.log_dir.glob("*.log"))
        assert "Processed 'orders.tasks.fulfil_order'" in full
