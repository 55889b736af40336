"""Moves of a partner's prepaid balance: each one a conditional UPDATE plus a ledger row.

The balance column is what the charge checks and moves, in one UPDATE that only lands while
the balance covers it; so two racing charges cannot both spend the last of it, on SQLite or
PostgreSQL, and a CHECK constraint refuses a negative balance underneath. The ledger rows say
why the balance is what it is.
"""

from __future__ import annotations

from decimal import Decimal

from django.db import transaction
from django.db.models import F

from partners.exceptions import InsufficientPartnerBalance, LedgerError
from partners.models import LedgerEntry, Partner


def _field(sandbox: bool) -> str:
    return "sandbox_balance" if sandbox else "balance"


def _move(*, partner: Partner, sandbox: bool, amount: Decimal, kind: str, actor: str,
          note: str = "", order_id: int | None = None) -> LedgerEntry:
    """Add `amount` (negative to take) to one balance and record it; inside the caller's atomic."""
    field = _field(sandbox)
    rows = Partner.objects.filter(pk=partner.pk)
    if amount < 0:
        rows = rows.filter(**{f"{field}__gte": -amount})
    if rows.update(**{field: F(field) + amount}) != 1:
        raise InsufficientPartnerBalance(
            f"Your {'sandbox ' if sandbox else ''}balance does not cover {-amount} "
            f"{partner.currency}; top it up first.")
    after = Partner.objects.values_list(field, flat=True).get(pk=partner.pk)
    setattr(partner, field, after)
    return LedgerEntry.objects.create(
        partner=partner, sandbox=sandbox, kind=kind, amount=amount, balance_after=after,
        currency=partner.currency, order_id=order_id, note=note[:255], actor=actor[:100])


def balance_charge(*, partner: Partner, sandbox: bool, amount: Decimal, order_id: int,
                   actor: str) -> LedgerEntry:
    """Take an order's price; raises InsufficientPartnerBalance and moves nothing if short."""
    if amount <= 0:
        raise LedgerError("A charge must be positive.")
    return _move(partner=partner, sandbox=sandbox, amount=-amount, kind=LedgerEntry.Kind.CHARGE,
                 actor=actor, order_id=order_id, note="Order charge")


def balance_refund(*, order_id: int, actor: str) -> LedgerEntry:
    """Give back what an order was charged, once: a second call returns the first refund."""
    with transaction.atomic():
        existing = LedgerEntry.objects.filter(order_id=order_id,
                                              kind=LedgerEntry.Kind.REFUND).first()
        if existing is not None:
            return existing
        charge = LedgerEntry.objects.select_related("partner").get(
            order_id=order_id, kind=LedgerEntry.Kind.CHARGE)
        # Locks the partner row (PostgreSQL) so that a racing refund waits, then finds ours
        # through the unique (order, kind) constraint.
        Partner.objects.select_for_update().filter(pk=charge.partner_id).first()
        if LedgerEntry.objects.filter(order_id=order_id, kind=LedgerEntry.Kind.REFUND).exists():
            return LedgerEntry.objects.get(order_id=order_id, kind=LedgerEntry.Kind.REFUND)
        return _move(partner=charge.partner, sandbox=charge.sandbox, amount=-charge.amount,
                     kind=LedgerEntry.Kind.REFUND, actor=actor, order_id=order_id,
                     note="Order refund")


def balance_adjust(*, partner: Partner, sandbox: bool, amount: Decimal, kind: str, actor: str,
                   note: str) -> LedgerEntry:
    """An operator's top-up (positive) or correction (either sign), with a note saying why."""
    if amount == 0:
        raise LedgerError("The amount must not be zero.")
    if kind not in (LedgerEntry.Kind.TOPUP, LedgerEntry.Kind.ADJUSTMENT,
                    LedgerEntry.Kind.SANDBOX_GRANT):
        raise LedgerError(f"{kind} is not an operator's entry.")
    if kind == LedgerEntry.Kind.TOPUP and amount < 0:
        raise LedgerError("A top-up adds money; use an adjustment to take some away.")
    with transaction.atomic():
        try:
            return _move(partner=partner, sandbox=sandbox, amount=amount, kind=kind, actor=actor,
                         note=note)
        except InsufficientPartnerBalance as error:
            raise LedgerError(str(error)) from None
