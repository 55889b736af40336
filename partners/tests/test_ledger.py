"""Moves of a partner's prepaid balances: charges, refunds, operator entries, and the sums."""

from __future__ import annotations

import uuid
from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import IntegrityError, transaction
from django.db.models import Sum
from django.utils import timezone

from orders.models import Order
from partners.exceptions import InsufficientPartnerBalance, LedgerError
from partners.ledger import balance_adjust, balance_charge, balance_refund
from partners.models import LedgerEntry, Partner
from partners.services import partner_balance_topup, partner_create
from shop.models import Product


def order_row(catalog: Product, price: str = "8.50") -> Order:
    """A bare order row for ledger entries to point at (test set-up only)."""
    return Order.objects.create(
        channel="api", product=catalog, product_name=catalog.name, package_name="Standard",
        platform="telegram", stars=500, recipient_input="123456789",
        recipient_user_id="123456789", price=Decimal(price), currency="USD",
        supplier_code="partner-sandbox", cost=Decimal("8.25"), cost_currency="USD",
        payment_method="balance", idempotency_key=uuid.uuid4().hex,
        expires_at=timezone.now() + timedelta(minutes=30))


def balances(partner: Partner) -> tuple[Decimal, Decimal]:
    partner.refresh_from_db()
    return partner.balance, partner.sandbox_balance


def assert_ledger_adds_up(partner: Partner) -> None:
    """Each balance is the sum of its ledger, and the newest row's balance_after says so."""
    partner.refresh_from_db()
    for sandbox, balance in ((False, partner.balance), (True, partner.sandbox_balance)):
        entries = LedgerEntry.objects.filter(partner=partner, sandbox=sandbox)
        assert (entries.aggregate(total=Sum("amount"))["total"] or Decimal(0)) == balance
        newest = entries.order_by("-id").first()
        assert (newest.balance_after if newest else Decimal(0)) == balance


@pytest.fixture
def partner(catalog) -> Partner:
    partner = partner_create(name="Ledger Ltd", actor="test")
    partner_balance_topup(partner=partner, amount=Decimal("20.00"), actor="ops", note="wire 1")
    return partner


def test_a_new_partner_gets_the_sandbox_start_balance_and_no_live_money(catalog, settings) -> None:
    settings.PARTNER_SANDBOX_START_BALANCE = Decimal("55.00")

    partner = partner_create(name="Fresh", actor="ops")

    assert balances(partner) == (Decimal("0.00"), Decimal("55.00"))
    [grant] = LedgerEntry.objects.filter(partner=partner)
    assert (grant.kind, grant.sandbox, grant.amount) == ("sandbox_grant", True, Decimal("55.00"))


def test_no_sandbox_grant_when_the_start_balance_is_zero(catalog, settings) -> None:
    settings.PARTNER_SANDBOX_START_BALANCE = Decimal("0")

    partner = partner_create(name="Fresh", actor="ops")

    assert balances(partner) == (Decimal("0.00"), Decimal("0.00"))
    assert not LedgerEntry.objects.filter(partner=partner).exists()


def test_charge_takes_the_price_and_records_the_balance_it_left(partner: Partner, catalog) -> None:
    order = order_row(catalog)

    entry = balance_charge(partner=partner, sandbox=False, amount=Decimal("8.50"),
                           order_id=order.pk, actor="partner:1")

    assert (entry.kind, entry.amount, entry.balance_after, entry.sandbox, entry.order_id) == (
        "charge", Decimal("-8.50"), Decimal("11.50"), False, order.pk)
    assert entry.currency == "USD"
    assert balances(partner) == (Decimal("11.50"), Decimal("100.00"))
    assert partner.balance == Decimal("11.50")
    assert_ledger_adds_up(partner)


def test_charge_of_the_whole_balance_leaves_zero(partner: Partner, catalog) -> None:
    balance_charge(partner=partner, sandbox=False, amount=Decimal("20.00"),
                   order_id=order_row(catalog).pk, actor="t")

    assert balances(partner)[0] == Decimal("0.00")


def test_charge_that_would_overdraw_moves_nothing(partner: Partner, catalog) -> None:
    order = order_row(catalog)
    before = LedgerEntry.objects.count()

    with pytest.raises(InsufficientPartnerBalance):
        balance_charge(partner=partner, sandbox=False, amount=Decimal("20.01"), order_id=order.pk,
                       actor="t")

    assert balances(partner) == (Decimal("20.00"), Decimal("100.00"))
    assert LedgerEntry.objects.count() == before


def test_the_sandbox_balance_does_not_pay_live_orders(partner: Partner, catalog) -> None:
    """100.00 in the sandbox, 20.00 live: a live charge of 50 is refused."""
    with pytest.raises(InsufficientPartnerBalance):
        balance_charge(partner=partner, sandbox=False, amount=Decimal("50.00"),
                       order_id=order_row(catalog).pk, actor="t")

    balance_charge(partner=partner, sandbox=True, amount=Decimal("50.00"),
                   order_id=order_row(catalog).pk, actor="t")
    assert balances(partner) == (Decimal("20.00"), Decimal("50.00"))
    assert_ledger_adds_up(partner)


@pytest.mark.parametrize("amount", [Decimal("0"), Decimal("-1.00")])
def test_charge_must_be_positive(partner: Partner, catalog, amount: Decimal) -> None:
    with pytest.raises(LedgerError):
        balance_charge(partner=partner, sandbox=False, amount=amount,
                       order_id=order_row(catalog).pk, actor="t")
    assert balances(partner)[0] == Decimal("20.00")


def test_an_order_is_charged_once(partner: Partner, catalog) -> None:
    order = order_row(catalog)
    balance_charge(partner=partner, sandbox=False, amount=Decimal("1.00"), order_id=order.pk,
                   actor="t")

    with pytest.raises(IntegrityError), transaction.atomic():
        balance_charge(partner=partner, sandbox=False, amount=Decimal("1.00"), order_id=order.pk,
                       actor="t")

    assert balances(partner)[0] == Decimal("19.00")


def test_refund_gives_the_charge_back_once_however_often_it_is_called(
        partner: Partner, catalog) -> None:
    order = order_row(catalog)
    balance_charge(partner=partner, sandbox=True, amount=Decimal("8.50"), order_id=order.pk,
                   actor="t")

    first = balance_refund(order_id=order.pk, actor="refund-task")
    second = balance_refund(order_id=order.pk, actor="refund-task")

    assert first.pk == second.pk
    assert (first.kind, first.amount, first.balance_after, first.sandbox) == (
        "refund", Decimal("8.50"), Decimal("100.00"), True)
    assert balances(partner) == (Decimal("20.00"), Decimal("100.00"))
    assert LedgerEntry.objects.filter(order=order, kind="refund").count() == 1
    assert_ledger_adds_up(partner)


def test_refund_goes_back_to_the_balance_that_was_charged(partner: Partner, catalog) -> None:
    order = order_row(catalog)
    balance_charge(partner=partner, sandbox=False, amount=Decimal("5.00"), order_id=order.pk,
                   actor="t")

    balance_refund(order_id=order.pk, actor="t")

    assert balances(partner) == (Decimal("20.00"), Decimal("100.00"))


def test_refund_of_an_order_never_charged_moves_nothing(partner: Partner, catalog) -> None:
    order = order_row(catalog)

    with pytest.raises(LedgerEntry.DoesNotExist):
        balance_refund(order_id=order.pk, actor="t")

    assert balances(partner) == (Decimal("20.00"), Decimal("100.00"))


def test_refund_after_the_balance_was_spent_elsewhere_still_lands(partner: Partner, catalog) -> None:
    refunded = order_row(catalog)
    balance_charge(partner=partner, sandbox=False, amount=Decimal("10.00"), order_id=refunded.pk,
                   actor="t")
    balance_charge(partner=partner, sandbox=False, amount=Decimal("10.00"),
                   order_id=order_row(catalog).pk, actor="t")
    assert balances(partner)[0] == Decimal("0.00")

    balance_refund(order_id=refunded.pk, actor="t")

    assert balances(partner)[0] == Decimal("10.00")
    assert_ledger_adds_up(partner)


def test_operator_topup_and_adjustments(partner: Partner) -> None:
    topped = partner_balance_topup(partner=partner, amount=Decimal("30.00"), actor="ops",
                                   note="wire 2")
    taken = balance_adjust(partner=partner, sandbox=False, amount=Decimal("-5.00"),
                           kind=LedgerEntry.Kind.ADJUSTMENT, actor="ops", note="fee")

    assert (topped.kind, topped.balance_after, topped.note, topped.actor) == (
        "topup", Decimal("50.00"), "wire 2", "ops")
    assert (taken.kind, taken.amount, taken.balance_after) == ("adjustment", Decimal("-5.00"),
                                                               Decimal("45.00"))
    assert_ledger_adds_up(partner)


@pytest.mark.parametrize(("amount", "kind"), [
    (Decimal("0"), LedgerEntry.Kind.ADJUSTMENT),
    (Decimal("-1.00"), LedgerEntry.Kind.TOPUP),
    (Decimal("5.00"), LedgerEntry.Kind.CHARGE),
    (Decimal("5.00"), LedgerEntry.Kind.REFUND),
    (Decimal("-20.01"), LedgerEntry.Kind.ADJUSTMENT),  # would overdraw
])
def test_operator_entries_that_cannot_be_made(partner: Partner, amount: Decimal, kind: str) -> None:
    before = LedgerEntry.objects.count()

    with pytest.raises(LedgerError):
        balance_adjust(partner=partner, sandbox=False, amount=amount, kind=kind, actor="ops",
                       note="x")

    assert balances(partner)[0] == Decimal("20.00")
    assert LedgerEntry.objects.count() == before


@pytest.mark.parametrize("amount", [Decimal("0"), Decimal("-3")])
def test_partner_balance_topup_must_be_positive(partner: Partner, amount: Decimal) -> None:
    with pytest.raises(LedgerError):
        partner_balance_topup(partner=partner, amount=amount, actor="ops", note="x")


def test_the_database_refuses_a_negative_balance(partner: Partner) -> None:
    for field in ("balance", "sandbox_balance"):
        with pytest.raises(IntegrityError), transaction.atomic():
            Partner.objects.filter(pk=partner.pk).update(**{field: Decimal("-0.01")})
