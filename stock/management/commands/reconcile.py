"""`manage.py reconcile [--date YYYY-MM-DD]`: compare one day's orders with the supplier's list."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from orders.exceptions import SupplierError
from stock.services import reconcile_day


def _day(value: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise CommandError(f"--date must be YYYY-MM-DD, not {value!r}") from None


class Command(BaseCommand):
    help = ("Reconcile one day (default: yesterday) of our supplier attempts against the "
            "supplier's order list; mismatches go to the admin's queue. Safe to run again.")

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--date", dest="day", type=_day, default=None,
                            help="The day, YYYY-MM-DD in TIME_ZONE (default: yesterday).")

    def handle(self, *args: Any, **options: Any) -> None:
        day = options["day"] or timezone.localdate() - timedelta(days=1)
        try:
            result = reconcile_day(day=day)
        except SupplierError as exc:
            raise CommandError(f"Could not read the supplier's orders for {day}: {exc}") from exc
        self.stdout.write(
            f"{day}: {result.supplier_orders} supplier orders, {result.our_orders} of ours, "
            f"{len(result.found)} mismatches ({result.new} new)")
        for kind, reference in result.found:
            self.stdout.write(f"  {kind}: {reference}")
