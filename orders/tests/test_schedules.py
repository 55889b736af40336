"""The periodic jobs: django-q2 schedules (orders/schedules.py) and the cluster's own loop."""

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from django.utils import timezone
from django_q.models import Schedule

from orders.management.commands import qcluster
from orders.schedules import reconcile_next_run, schedules_ensure

pytestmark = pytest.mark.django_db


def test_every_job_is_scheduled_once_however_often_migrate_runs(settings):
    settings.SUPPLIER_BALANCE_CHECK_MINUTES = 7
    schedules_ensure()
    schedules_ensure()
    jobs = {s.name: s for s in Schedule.objects.all()}
    assert set(jobs) == {"orders-sweep", "orders-expire-unpaid", "payments-poll",
                         "stock-balance-check", "stock-reconcile-daily",
                         "partners-webhooks-due", "partners-idempotency-purge"}
    balance = jobs["stock-balance-check"]
    assert (balance.func, balance.schedule_type, balance.minutes) == (
        "stock.tasks.balance_check", Schedule.MINUTES, 7)
    daily = jobs["stock-reconcile-daily"]
    assert (daily.func, daily.schedule_type) == ("stock.tasks.reconcile_yesterday", Schedule.DAILY)
    local = timezone.localtime(daily.next_run)
    assert (local.hour, local.minute, local.second) == (0, 30, 0)
    assert timezone.now() < daily.next_run <= timezone.now() + timedelta(days=1)


def test_the_reconciliation_runs_at_half_past_midnight_local_time(settings):
    utc = ZoneInfo("UTC")
    assert reconcile_next_run(datetime(2026, 11, 30, 0, 10, tzinfo=utc)) == datetime(
        2026, 11, 30, 0, 30, tzinfo=utc)
    assert reconcile_next_run(datetime(2026, 11, 30, 0, 30, tzinfo=utc)) == datetime(
        2026, 12, 1, 0, 30, tzinfo=utc)
    assert reconcile_next_run(datetime(2026, 11, 30, 15, 0, tzinfo=utc)) == datetime(
        2026, 12, 1, 0, 30, tzinfo=utc)


def test_the_cluster_loop_checks_the_balance_at_start_then_on_its_own_period(monkeypatch, settings):
    settings.SWEEP_EVERY_MINUTES = 1
    settings.SUPPLIER_BALANCE_CHECK_MINUTES = 5
    settings.RECOVERY_TICK_SECONDS = 0
    clock = [1000.0]
    enqueued: list[tuple[float, str]] = []
    monkeypatch.setattr(qcluster, "orders_recover", lambda: [])
    monkeypatch.setattr(qcluster.queue, "enqueue_periodic",
                        lambda func: enqueued.append((clock[0], func)))
    monkeypatch.setattr(qcluster.time, "monotonic", lambda: clock[0])
    monkeypatch.setattr(qcluster.time, "sleep", lambda seconds: clock.__setitem__(0, clock[0] + 60))
    ticks = iter(range(7))
    monkeypatch.setattr(qcluster.connections, "close_all", lambda: None)
    qcluster.recovery_loop(alive=lambda: next(ticks, None) is not None)
    balance = [at for at, func in enqueued if func == "stock.tasks.balance_check"]
    sweeps = [at for at, func in enqueued if func == "orders.tasks.sweep"]
    assert balance == [1000.0, 1300.0]  # at start, then five minutes later
    assert len(sweeps) == 7  # every minute
