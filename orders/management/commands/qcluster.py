"""`manage.py qcluster`: django-q2's cluster, plus the recovery loop that keeps paid orders moving.

django-q2 runs its scheduler only after a cluster has been up for 30 s, and on the ORM broker a
task taken by a killed cluster stays invisible for Q_CLUSTER["retry"] seconds: a cluster in a
crash loop would never sweep. So the cluster's main process, which otherwise only waits for
its sentinel, sweeps itself: at start, then every RECOVERY_TICK_SECONDS it enqueues every
in-flight order that is due and that no live worker holds (orders.services.orders_recover),
and it enqueues the periodic jobs (sweep, expiry, payment polling) at start and every
SWEEP_EVERY_MINUTES, and the supplier balance check at start and every
SUPPLIER_BALANCE_CHECK_MINUTES, whatever django-q2's scheduler does.

This command replaces django-q2's own `qcluster` (orders comes before django_q in
INSTALLED_APPS), so every way of starting the cluster gets the loop.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any

from django.conf import settings
from django.db import DatabaseError, connections
from django_q.cluster import Cluster
from django_q.management.commands.qcluster import Command as DjangoQClusterCommand

from orders import queue
from orders.services import orders_recover

logger = logging.getLogger("orders.recovery")

PERIODIC_TASKS = ("orders.tasks.sweep", "orders.tasks.expire_unpaid", "orders.tasks.payments_poll")
BALANCE_CHECK_TASK = "stock.tasks.balance_check"


class Command(DjangoQClusterCommand):
    help = "Starts the django-q2 cluster and the recovery loop that re-enqueues abandoned paid orders."

    def handle(self, *args: Any, **options: Any) -> None:
        settings.SECRET_KEY  # noqa: B018  (as django-q2 does: signing needs it)
        if options.get("cluster_name"):
            os.environ["Q_CLUSTER_NAME"] = options["cluster_name"]
        # No database work before start(): the sentinel is forked from this process and must
        # not inherit an open connection.
        cluster = Cluster()
        cluster.start()
        if options.get("run_once", False):
            cluster.stop()
            return
        recovery_loop(alive=lambda: cluster.sentinel is not None and cluster.sentinel.is_alive())


def recovery_loop(*, alive: Any) -> None:
    """Sweep at once, then every tick, until the cluster stops (SIGTERM/SIGINT stop it)."""
    tick = float(settings.RECOVERY_TICK_SECONDS)
    periodic_every = 60.0 * settings.SWEEP_EVERY_MINUTES
    balance_every = 60.0 * settings.SUPPLIER_BALANCE_CHECK_MINUTES
    next_periodic = next_balance = 0.0
    logger.info("recovery loop: sweeping every %ss", tick)
    while alive():
        try:
            enqueued = orders_recover()
            if enqueued:
                logger.info("recovery: enqueued orders %s", enqueued)
            if time.monotonic() >= next_periodic:
                for func in PERIODIC_TASKS:
                    queue.enqueue_periodic(func)
                next_periodic = time.monotonic() + periodic_every
            if time.monotonic() >= next_balance:
                queue.enqueue_periodic(BALANCE_CHECK_TASK)
                next_balance = time.monotonic() + balance_every
        except DatabaseError as exc:
            # The database restarting must not stop the loop: the next tick tries again.
            logger.warning("recovery sweep failed: %s", exc)
            connections.close_all()
        except Exception:
            # Nor a broker that is down (Redis); recorded with its traceback, tried next tick.
            logger.exception("recovery sweep failed")
        time.sleep(tick)
    connections.close_all()
