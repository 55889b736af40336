"""Every write about the supplier account: balance readings, low-balance alerts, reconciliation.

The supplier is called outside any transaction; what it said is then recorded in short ones.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from functools import partial
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone
from django_q.tasks import async_task

from orders.exceptions import SupplierError
from orders.models import Order, SupplierAttempt
from orders.models import OrderStatus as S
from orders.services import orders_held_resume
from orders.suppliers import get_supplier_client
from orders.suppliers.base import SupplierOrder, SupplierOrderStatus
from orders.transitions import IN_FLIGHT_STATUSES
from shop.money import money
from stock import selectors
from stock.models import BalanceAlert, BalanceReading, BalanceThreshold, ReconciliationMismatch

logger = logging.getLogger(__name__)

# An alert left "sending" this long (its worker died mid-send) may be claimed again.
ALERT_RECLAIM_AFTER = timedelta(minutes=10)
# How far past the day's edges the supplier's list is read: its clock and ours differ, and an
# order placed at 23:59:59.9 here may be stamped 00:00:00 there.
RECONCILE_SLACK = timedelta(minutes=15)
# Supplier statuses that mean the supplier took (or will take) our money for the order.
CHARGED = frozenset({SupplierOrderStatus.PENDING, SupplierOrderStatus.PROCESSING,
                     SupplierOrderStatus.COMPLETED})
UNDONE_HERE = frozenset({S.FAILED, S.REFUND_PENDING, S.REFUNDED})


def _now() -> datetime:
    return timezone.now()


# --- Balance -------------------------------------------------------------------------------


def balance_check() -> BalanceReading:
    """Read the supplier balance and record it; judge the low-balance alert; resume held orders.

    A supplier error is recorded as a failed reading (its code and message) and changes
    nothing else: the job never fails on the supplier's account. A resumed order the supplier
    refuses again goes back on hold, so a wallet that reads full but will not pay costs at
    most one attempt per check.
    """
    code = settings.SUPPLIER_CODE
    window = settings.SUPPLIER_RATE_WINDOW_HOURS
    try:
        balance = get_supplier_client().balance()
    except SupplierError as exc:
        logger.warning("supplier balance unreadable: %s", exc.code)
        reading = BalanceReading.objects.create(
            supplier_code=code, checked_at=_now(), ok=False, window_hours=window,
            error_code=exc.code[:50], error_message=str(exc)[:255],
        )
        readings_prune(supplier_code=code)
        return reading
    now = _now()
    spent = selectors.supplier_spent(supplier_code=code, currency=balance.currency,
                                     since=now - timedelta(hours=window), until=now)
    reading = BalanceReading.objects.create(
        supplier_code=code, checked_at=now, ok=True, amount=money(balance.amount),
        currency=balance.currency[:3], spent_in_window=spent, window_hours=window,
    )
    balance_threshold_judge(reading=reading)
    readings_prune(supplier_code=code)
    resumed = orders_held_resume(balance=balance)
    if resumed:
        logger.info("balance %s %s covers held orders %s: resumed", reading.amount,
                    reading.currency, resumed)
    return reading


def readings_prune(*, supplier_code: str) -> int:
    """Delete readings past SUPPLIER_BALANCE_HISTORY_DAYS (never the last good one)."""
    deleted, _ = selectors.readings_prunable(supplier_code=supplier_code).delete()
    return deleted


def _rearm_level(threshold: Decimal) -> Decimal:
    return money(threshold * (1 + settings.SUPPLIER_LOW_BALANCE_REARM_PERCENT / Decimal(100)))


def balance_threshold_judge(*, reading: BalanceReading) -> BalanceAlert | None:
    """Move the supplier's low-balance state on a good reading; the alert when it crossed.

    Low when the balance is under the threshold; restored once it is back at the threshold
    plus SUPPLIER_LOW_BALANCE_REARM_PERCENT; in between the state stays as it was. The state
    moves by a conditional UPDATE on what was read (is_low, reading_at), so of concurrent
    checks exactly one records a crossing, and a reading older than the one last judged is
    ignored. The alert is sent after commit, by a task.
    """
    if not reading.ok or reading.amount is None:
        return None
    threshold, _ = BalanceThreshold.objects.get_or_create(
        supplier_code=reading.supplier_code,
        defaults={"amount": money(settings.SUPPLIER_LOW_BALANCE), "currency": reading.currency},
    )
    for _attempt in range(10):
        current = BalanceThreshold.objects.get(pk=threshold.pk)
        if current.reading_at is not None and current.reading_at > reading.checked_at:
            return None  # a newer reading has been judged already
        if current.currency != reading.currency:
            logger.warning("balance in %s, threshold in %s: not compared", reading.currency,
                           current.currency)
            return None
        if reading.amount < current.amount:
            low = True
        elif reading.amount >= _rearm_level(current.amount):
            low = False
        else:
            low = current.is_low
        changes: dict[str, Any] = {"is_low": low, "reading_at": reading.checked_at,
                                   "updated_at": _now()}
        if low != current.is_low:
            changes["crossed_at" if low else "restored_at"] = reading.checked_at
        with transaction.atomic():
            moved = BalanceThreshold.objects.filter(
                pk=current.pk, is_low=current.is_low, reading_at=current.reading_at,
            ).update(**changes)
            if not moved:
                continue  # another check judged a reading meanwhile: read its result again
            if low == current.is_low:
                return None
            left = selectors.hours_left(amount=reading.amount, spent=reading.spent_in_window,
                                        window_hours=reading.window_hours)
            alert = BalanceAlert.objects.create(
                supplier_code=reading.supplier_code,
                kind=BalanceAlert.Kind.LOW if low else BalanceAlert.Kind.RESTORED,
                reading=reading, amount=reading.amount, currency=reading.currency,
                threshold=current.amount,
                hours_left=left.quantize(selectors.HOURS) if left is not None else None,
            )
            transaction.on_commit(partial(_enqueue_alert, alert.pk))
        logger.warning("supplier %s balance %s %s: %s", reading.supplier_code, reading.amount,
                       reading.currency, alert.kind)
        return alert
    logger.warning("low-balance state kept changing under us; reading %s not judged", reading.pk)
    return None


def balance_threshold_set(*, threshold: BalanceThreshold) -> BalanceThreshold:
    """Save a threshold's amount and currency as a Manager set them, leaving the alert's state.

    Only those fields are written: the state (is_low, reading_at) may have moved since the
    form was loaded, and a stale copy must not overwrite it. A new threshold starts armed.
    """
    threshold.amount = money(threshold.amount)
    if threshold.pk is None:
        threshold.save()
    else:
        threshold.save(update_fields=["amount", "currency", "updated_at"])
    return threshold


def _enqueue_alert(alert_id: int) -> None:
    async_task("stock.tasks.balance_alert_send", alert_id, group="alerts",
               task_name=f"balance-alert-{alert_id}")


@dataclass(frozen=True)
class AlertClaim:
    """An alert this worker may send now, and where to."""

    alert: BalanceAlert
    chat_id: str


def balance_alert_claim(*, alert_id: int) -> AlertClaim | None:
    """Claim an alert for sending; None when it was sent, is being sent, or is not to be sent.

    A failed alert, or one left "sending" long ago by a dead worker, is claimed again. Without
    an operators' chat or a bot token the alert is marked skipped.
    """
    chat_id = str(settings.OPERATORS_CHAT_ID).strip()
    if not chat_id or not settings.TELEGRAM_BOT_TOKEN:
        BalanceAlert.objects.filter(pk=alert_id, outcome=BalanceAlert.Outcome.PENDING).update(
            outcome=BalanceAlert.Outcome.SKIPPED, updated_at=_now())
        return None
    claimable = (Q(outcome__in=[BalanceAlert.Outcome.PENDING, BalanceAlert.Outcome.FAILED])
                 | Q(outcome=BalanceAlert.Outcome.SENDING, updated_at__lt=_now() - ALERT_RECLAIM_AFTER))
    claimed = BalanceAlert.objects.filter(claimable, pk=alert_id).update(
        outcome=BalanceAlert.Outcome.SENDING, chat_id=chat_id[:64], updated_at=_now())
    if claimed != 1:
        return None
    return AlertClaim(alert=BalanceAlert.objects.get(pk=alert_id), chat_id=chat_id)


def balance_alert_record(*, alert_id: int, outcome: str, message_id: int | None = None,
                         error: str = "") -> None:
    """Record how sending a claimed alert went."""
    BalanceAlert.objects.filter(pk=alert_id).update(
        outcome=outcome, message_id=message_id, error=error[:255], updated_at=_now())


# --- Reconciliation ------------------------------------------------------------------------


@dataclass
class ReconcileResult:
    """What one day's reconciliation compared and found."""

    day: date
    supplier_orders: int = 0
    our_orders: int = 0
    found: list[tuple[str, str]] = field(default_factory=list)  # (kind, reference)
    new: int = 0


def day_window(day: date) -> tuple[datetime, datetime]:
    """The day from midnight to midnight in the shop's time zone (TIME_ZONE)."""
    start = datetime.combine(day, time.min, tzinfo=timezone.get_current_timezone())
    return start, datetime.combine(day + timedelta(days=1), time.min, tzinfo=start.tzinfo)


def reconcile_day(*, day: date) -> ReconcileResult:
    """Compare the day's orders at the supplier with ours; record each mismatch once.

    The supplier's orders created that day are matched to ours by reference (our idempotency
    key), whatever day ours were placed; our delivered orders with a supplier attempt that day
    must be in the supplier's list (read a little past midnight on both sides, for clocks that
    differ). Orders still in flight here (paid, submitting, processing, unknown) are left to
    the worker that owns them. Re-running a day adds nothing already recorded; a resolved
    mismatch stays resolved. Raises SupplierError when the list cannot be read.
    """
    code = settings.SUPPLIER_CODE
    start, end = day_window(day)
    theirs = get_supplier_client().orders_between(since=start - RECONCILE_SLACK,
                                                  until=end + RECONCILE_SLACK)
    by_reference = {order.reference: order for order in theirs}
    in_day = [order for order in theirs
              if order.created_at is None or start <= order.created_at < end]
    ours = Order.objects.in_bulk([order.reference for order in in_day],
                                 field_name="idempotency_key")
    attempted = list(Order.objects.filter(
        supplier_code=code,
        pk__in=SupplierAttempt.objects.filter(started_at__gte=start, started_at__lt=end)
        .values("order_id"),
    ))
    result = ReconcileResult(day=day, supplier_orders=len(in_day), our_orders=len(attempted))
    found: list[ReconciliationMismatch] = []
    for their in in_day:
        our = ours.get(their.reference)
        found.extend(_compare(code, day, our, their))
    for our in attempted:
        if our.status == S.DELIVERED and our.idempotency_key not in by_reference:
            found.append(_mismatch(code, day, ReconciliationMismatch.Kind.UNKNOWN_THERE,
                                   our.idempotency_key, our, None))
    with transaction.atomic():
        for mismatch in found:
            _, created = ReconciliationMismatch.objects.get_or_create(
                supplier_code=mismatch.supplier_code, kind=mismatch.kind,
                reference=mismatch.reference,
                defaults={"day": day, "order": mismatch.order, "ours": mismatch.ours,
                          "theirs": mismatch.theirs,
                          "supplier_order_id": mismatch.supplier_order_id},
            )
            result.new += created
            result.found.append((mismatch.kind, mismatch.reference))
    logger.info("reconciled %s: %s supplier orders, %s of ours, %s mismatches (%s new)", day,
                result.supplier_orders, result.our_orders, len(result.found), result.new)
    return result


def _compare(code: str, day: date, our: Order | None,
             their: SupplierOrder) -> list[ReconciliationMismatch]:
    kinds = ReconciliationMismatch.Kind
    charged = their.status in CHARGED
    completed = their.status == SupplierOrderStatus.COMPLETED
    found: list[ReconciliationMismatch] = []

    def add(kind: str) -> None:
        found.append(_mismatch(code, day, kind, their.reference, our, their))

    if our is None:
        if completed:
            add(kinds.DELIVERED_THERE)
        elif charged:
            add(kinds.CHARGED_THERE)
        return found
    if our.stars != their.stars or our.recipient_user_id != their.user_id:
        add(kinds.DETAILS_DIFFER)
    if our.status in IN_FLIGHT_STATUSES:
        return found
    if our.status == S.DELIVERED:
        if not charged:
            add(kinds.FAILED_THERE)
    elif our.status in UNDONE_HERE:
        if charged:
            add(kinds.CHARGED_THERE)
    elif completed:  # held, in review, expired, cancelled: not delivered here
        add(kinds.DELIVERED_THERE)
    elif charged:
        add(kinds.CHARGED_THERE)
    return found


def _mismatch(code: str, day: date, kind: str, reference: str, our: Order | None,
              their: SupplierOrder | None) -> ReconciliationMismatch:
    return ReconciliationMismatch(
        supplier_code=code, day=day, kind=kind, reference=reference, order=our,
        supplier_order_id=their.order_id if their else (our.supplier_order_id if our else ""),
        ours=({"reference": our.reference, "status": our.status, "stars": our.stars,
               "recipient_user_id": our.recipient_user_id, "cost": str(our.cost),
               "supplier_order_id": our.supplier_order_id} if our else {}),
        theirs=({"order_id": their.order_id, "status": str(their.status), "stars": their.stars,
                 "user_id": their.user_id, "cost": str(their.cost) if their.cost is not None else None,
                 "created_at": their.created_at.isoformat() if their.created_at else None}
                if their else {}),
    )


def mismatch_update(*, mismatch_id: int, resolved: bool, note: str, user: Any) -> ReconciliationMismatch:
    """Set a mismatch's note and whether it is resolved (who and when, on resolving)."""
    with transaction.atomic():
        mismatch = ReconciliationMismatch.objects.select_for_update().get(pk=mismatch_id)
        if resolved and not mismatch.resolved:
            mismatch.resolved_at, mismatch.resolved_by = _now(), user
        elif not resolved:
            mismatch.resolved_at, mismatch.resolved_by = None, None
        mismatch.resolved, mismatch.note = resolved, note
        mismatch.save(update_fields=["resolved", "resolved_at", "resolved_by", "note"])
    return mismatch


def mismatches_resolve(*, mismatch_ids: list[int], user: Any) -> int:
    """Mark open mismatches resolved by `user`; returns how many were still open."""
    return ReconciliationMismatch.objects.filter(pk__in=mismatch_ids, resolved=False).update(
        resolved=True, resolved_at=_now(), resolved_by=user)
