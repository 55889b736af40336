"""The daily reconciliation (stock.services.reconcile_day, `manage.py reconcile`, the task)
against the sandbox supplier seeded with every kind of mismatch."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from orders.models import Order, SupplierAttempt
from orders.models import OrderStatus as S
from stock import services, tasks
from stock.models import ReconciliationMismatch as M

pytestmark = pytest.mark.django_db

DAY = date(2026, 11, 29)
NOON = datetime(2026, 11, 29, 12, 0, tzinfo=timezone.get_current_timezone())


def wire(moment: datetime) -> str:
    return moment.astimezone(timezone.get_current_timezone()).isoformat()


@pytest.fixture
def ours(make_order):
    """An order of ours with its supplier attempt started at `attempted`."""

    def make(status: str, attempted: datetime = NOON, **fields) -> Order:
        order = make_order(status, **fields)
        attempt = SupplierAttempt.objects.create(
            order=order, number=1, supplier_code="sandbox", idempotency_key=order.idempotency_key)
        SupplierAttempt.objects.filter(pk=attempt.pk).update(started_at=attempted)
        return order

    return make


@pytest.fixture
def seeded(supplier, ours):
    """One order for every case, ours and the supplier's; returns the references by case."""

    def theirs(reference: str, status: str = "completed", created: datetime = NOON, **fields):
        supplier.seed_order(reference=reference, user_id=fields.pop("user_id", "100000001"),
                            stars=fields.pop("stars", 500), status=status,
                            created_at=wire(created), **fields)

    cases: dict[str, str] = {}

    matched = ours(S.DELIVERED)
    theirs(matched.idempotency_key)
    cases["matched"] = matched.idempotency_key

    theirs("not-ours-completed")
    cases["delivered_there"] = "not-ours-completed"
    theirs("not-ours-failed", status="failed")  # nothing charged: no mismatch

    refunded = ours(S.REFUNDED)
    theirs(refunded.idempotency_key)
    cases["charged_there"] = refunded.idempotency_key

    lost = ours(S.DELIVERED)
    cases["unknown_there"] = lost.idempotency_key

    differs = ours(S.DELIVERED)
    theirs(differs.idempotency_key, stars=5000, user_id="100000099")
    cases["details_differ"] = differs.idempotency_key

    both_failed = ours(S.FAILED)
    theirs(both_failed.idempotency_key, status="failed")

    held = ours(S.ON_HOLD)
    theirs(held.idempotency_key)
    cases["held_but_delivered_there"] = held.idempotency_key

    reversed_there = ours(S.DELIVERED)
    theirs(reversed_there.idempotency_key, status="reversed")
    cases["failed_there"] = reversed_there.idempotency_key

    in_flight = ours(S.PROCESSING)
    theirs(in_flight.idempotency_key)  # the worker will see it delivered

    # Placed a moment before midnight here, stamped a moment after it there: the same order.
    edge = ours(S.DELIVERED, attempted=NOON.replace(hour=23, minute=59, second=59))
    theirs(edge.idempotency_key, created=NOON + timedelta(hours=12, seconds=5))

    # Another day at the supplier: not this day's business.
    theirs("two-days-ago", created=NOON - timedelta(days=2))
    other_day = ours(S.DELIVERED, attempted=NOON - timedelta(days=2))
    cases["other_day_unknown"] = other_day.idempotency_key
    return cases


def found(kind: str) -> set[str]:
    return set(M.objects.filter(kind=kind).values_list("reference", flat=True))


def test_each_kind_of_mismatch_is_found(seeded):
    result = services.reconcile_day(day=DAY)
    assert found(M.Kind.DELIVERED_THERE) == {seeded["delivered_there"],
                                             seeded["held_but_delivered_there"]}
    assert found(M.Kind.CHARGED_THERE) == {seeded["charged_there"]}
    assert found(M.Kind.UNKNOWN_THERE) == {seeded["unknown_there"]}
    assert found(M.Kind.DETAILS_DIFFER) == {seeded["details_differ"]}
    assert found(M.Kind.FAILED_THERE) == {seeded["failed_there"]}
    assert M.objects.count() == 6 == result.new == len(result.found)
    assert result.supplier_orders == 9  # created that day at the supplier (not the edge one)
    assert result.our_orders == 9  # with a supplier attempt that day (the edge case too)

    differs = M.objects.get(kind=M.Kind.DETAILS_DIFFER)
    assert differs.order is not None and differs.order.idempotency_key == seeded["details_differ"]
    assert (differs.ours["stars"], differs.theirs["stars"]) == (500, 5000)
    assert differs.theirs["user_id"] == "100000099"
    assert differs.supplier_order_id.startswith("SUP-")
    stranger = M.objects.get(kind=M.Kind.DELIVERED_THERE, reference="not-ours-completed")
    assert stranger.order is None and stranger.ours == {} and stranger.day == DAY
    assert all(not mismatch.resolved for mismatch in M.objects.all())


def test_running_a_day_again_adds_nothing_and_keeps_what_operators_did(seeded, django_user_model):
    services.reconcile_day(day=DAY)
    operator = django_user_model.objects.create_user(username="olga")
    first = M.objects.get(reference=seeded["charged_there"])
    services.mismatch_update(mismatch_id=first.pk, resolved=True, note="refunded by hand",
                             user=operator)
    again = services.reconcile_day(day=DAY)
    assert again.new == 0 and len(again.found) == 6
    assert M.objects.count() == 6
    first.refresh_from_db()
    assert first.resolved and first.note == "refunded by hand" and first.resolved_by == operator


def test_the_next_day_sees_its_own_orders_only(seeded):
    services.reconcile_day(day=DAY + timedelta(days=1))
    # The order stamped just after midnight there is ours from the day before, and matched.
    assert not M.objects.filter(reference__in=set(seeded.values())).exists()


def test_an_unreadable_supplier_records_nothing(seeded, settings):
    from orders.exceptions import SupplierAuthError

    settings.SUPPLIER_API_KEY = "wrong"
    with pytest.raises(SupplierAuthError):
        services.reconcile_day(day=DAY)
    assert not M.objects.exists()


def test_resolving_and_reopening_records_who_and_when(seeded, django_user_model):
    services.reconcile_day(day=DAY)
    operator = django_user_model.objects.create_user(username="olga")
    pk = M.objects.get(kind=M.Kind.UNKNOWN_THERE).pk
    resolved = services.mismatch_update(mismatch_id=pk, resolved=True, note="asked", user=operator)
    assert resolved.resolved_at is not None and resolved.resolved_by == operator
    reopened = services.mismatch_update(mismatch_id=pk, resolved=False, note="not yet", user=operator)
    assert (reopened.resolved, reopened.resolved_at, reopened.resolved_by) == (False, None, None)
    assert services.mismatches_resolve(mismatch_ids=[pk], user=operator) == 1
    assert services.mismatches_resolve(mismatch_ids=[pk], user=operator) == 0


def test_the_command_reconciles_a_given_day(seeded):
    out = StringIO()
    call_command("reconcile", "--date", DAY.isoformat(), stdout=out)
    assert out.getvalue().startswith(f"{DAY}: 9 supplier orders, 9 of ours, 6 mismatches (6 new)")
    assert f"unknown_there: {seeded['unknown_there']}" in out.getvalue()
    out = StringIO()
    call_command("reconcile", "--date", DAY.isoformat(), stdout=out)
    assert "6 mismatches (0 new)" in out.getvalue()


def test_the_command_defaults_to_yesterday_and_refuses_bad_dates(supplier, make_order):
    out = StringIO()
    call_command("reconcile", stdout=out)
    assert out.getvalue().startswith(f"{timezone.localdate() - timedelta(days=1)}: 0 supplier orders")
    with pytest.raises(CommandError):
        call_command("reconcile", "--date", "29.11.2026")


def test_the_command_reports_an_unreadable_supplier(supplier, settings):
    settings.SUPPLIER_API_KEY = "wrong"
    with pytest.raises(CommandError, match="Could not read the supplier's orders"):
        call_command("reconcile", "--date", DAY.isoformat())


def test_the_daily_task_reconciles_yesterday(supplier, ours):
    yesterday_noon = timezone.localtime().replace(hour=12, minute=0, second=0) - timedelta(days=1)
    lost = ours(S.DELIVERED, attempted=yesterday_noon)
    summary = tasks.reconcile_yesterday()
    assert summary["day"] == str(timezone.localdate() - timedelta(days=1))
    assert (summary["mismatches"], summary["new"]) == (1, 1)
    assert M.objects.get().reference == lost.idempotency_key
