"""The periodic jobs django-q2 runs: the sweeper and the expiry of unpaid orders."""

from typing import Any

from django.conf import settings
from django.utils import timezone


def schedules_ensure(**kwargs: Any) -> None:
    """Create or update our django-q2 schedules; runs after every migrate, so set-up is one step."""
    from django_q.models import Schedule

    every = settings.SWEEP_EVERY_MINUTES
    for name, func in (
        ("orders-sweep", "orders.tasks.sweep"),
        ("orders-expire-unpaid", "orders.tasks.expire_unpaid"),
        ("payments-poll", "orders.tasks.payments_poll"),
    ):
        Schedule.objects.update_or_create(
            name=name,
            defaults={
                "func": func,
                "schedule_type": Schedule.MINUTES,
                "minutes": every,
                "repeats": -1,
                "next_run": timezone.now(),
            },
        )
