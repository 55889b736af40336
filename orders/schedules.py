"""The periodic jobs django-q2 runs: the sweeper, the expiry of unpaid orders, the supplier
balance check and the daily reconciliation with the supplier."""

from datetime import datetime, time, timedelta
from typing import Any

from django.conf import settings
from django.utils import timezone

# The daily reconciliation of yesterday runs at this time (TIME_ZONE), once the day is over
# at the supplier too (stock.services.RECONCILE_SLACK).
RECONCILE_AT = time(0, 30)


def reconcile_next_run(now: datetime | None = None) -> datetime:
    """The next RECONCILE_AT after `now`, in the shop's time zone."""
    local = timezone.localtime(now or timezone.now())
    run = datetime.combine(local.date(), RECONCILE_AT, tzinfo=local.tzinfo)
    return run if run > local else run + timedelta(days=1)


def schedules_ensure(**kwargs: Any) -> None:
    """Create or update our django-q2 schedules; runs after every migrate, so set-up is one step."""
    from django_q.models import Schedule

    every = settings.SWEEP_EVERY_MINUTES
    for name, func, minutes in (
        ("orders-sweep", "orders.tasks.sweep", every),
        ("orders-expire-unpaid", "orders.tasks.expire_unpaid", every),
        ("payments-poll", "orders.tasks.payments_poll", every),
        ("stock-balance-check", "stock.tasks.balance_check", settings.SUPPLIER_BALANCE_CHECK_MINUTES),
        # Partner webhooks: retries that are due, and changes a lost task did not announce.
        ("partners-webhooks-due", "partners.tasks.webhooks_due", 1),
        ("partners-idempotency-purge", "partners.tasks.idempotency_keys_purge", 60),
    ):
        Schedule.objects.update_or_create(
            name=name,
            defaults={
                "func": func,
                "schedule_type": Schedule.MINUTES,
                "minutes": minutes,
                "repeats": -1,
                "next_run": timezone.now(),
            },
        )
    Schedule.objects.update_or_create(
        name="stock-reconcile-daily",
        defaults={
            "func": "stock.tasks.reconcile_yesterday",
            "schedule_type": Schedule.DAILY,
            "repeats": -1,
            "next_run": reconcile_next_run(),
        },
    )
