"""The payment inbox: every confirmation stored once, compared with its quote, applied once."""

import threading
from decimal import Decimal
from datetime import timedelta

import pytest
from django.db import connection
from django.urls import reverse
from django.utils import timezone

from orders import services
from orders.exceptions import OrderStateChanged
from orders.models import Order, OrderEvent, Payment, PaymentEvent, PaymentInvoice
from orders.models import OrderStatus as S
from orders.payments import payment_provider_get
from orders.payments.base import NoticeKind, PaymentNotice
from orders.payments.money import from_minor, to_minor
from orders.payments.services import (
    invoice_open,
    payment_event_apply,
    payment_notice_accept,
    payments_poll,
)


@pytest.fixture
def enqueued(monkeypatch):
    jobs: list[int] = []
    monkeypatch.setattr("orders.queue.enqueue_fulfilment", jobs.append)
    return jobs


@pytest.fixture
def invoice(make_order) -> PaymentInvoice:
    return invoice_open(order=make_order(S.AWAITING_PAYMENT))


def notice(invoice: PaymentInvoice, *, key: str = "evt-1", amount: int | None = None,
           currency: str | None = None, kind: str = NoticeKind.PAID, **extra) -> PaymentNotice:
    return PaymentNotice(
        provider=invoice.provider, event_key=key, kind=kind, account=invoice.account,
        invoice_id=invoice.provider_invoice_id,
        amount_minor=invoice.amount_minor if amount is None else amount,
        currency=currency or invoice.currency, **extra,
    )


def test_invoice_is_quoted_in_minor_units_and_reused(make_order):
    order = make_order(S.AWAITING_PAYMENT)
    first = invoice_open(order=order)
    assert (first.amount_minor, first.currency, first.exponent) == (850, "USD", 2)
    assert first.expires_at <= order.expires_at
    assert invoice_open(order=order).pk == first.pk


def test_no_invoice_for_an_order_not_awaiting_payment(make_order):
    with pytest.raises(OrderStateChanged):
        invoice_open(order=make_order(S.EXPIRED))


def test_exact_payment_marks_paid(invoice, enqueued, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        event = payment_notice_accept(notice=notice(invoice))
    order = Order.objects.get(pk=invoice.order_id)
    assert event.outcome == PaymentEvent.Outcome.APPLIED and event.order_id == order.pk
    assert order.status == S.PAID
    payment = Payment.objects.get(order=order)
    assert (payment.amount, payment.currency, payment.excess_minor) == (from_minor(850, "USD"), "USD", 0)
    assert payment.event_id == event.pk and payment.invoice_id == invoice.pk
    assert PaymentInvoice.objects.get(pk=invoice.pk).status == PaymentInvoice.Status.PAID
    assert enqueued == [order.pk]


def test_the_same_event_five_times_applies_once(invoice, enqueued, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        for _ in range(5):
            payment_notice_accept(notice=notice(invoice))
    assert PaymentEvent.objects.count() == 1
    assert Payment.objects.count() == 1
    assert OrderEvent.objects.filter(order_id=invoice.order_id, to_status=S.PAID).count() == 1
    assert enqueued == [invoice.order_id]


@pytest.mark.django_db(transaction=True)
def test_the_same_event_concurrently_applies_once(make_order, enqueued):
    invoice = invoice_open(order=make_order(S.AWAITING_PAYMENT))
    barrier = threading.Barrier(5)
    errors: list[BaseException] = []

    def deliver():
        try:
            barrier.wait()
            payment_notice_accept(notice=notice(invoice))
        except BaseException as exc:  # noqa: BLE001 - asserted below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=deliver) for _ in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert Payment.objects.count() == 1 and PaymentEvent.objects.count() == 1
    assert OrderEvent.objects.filter(order_id=invoice.order_id, to_status=S.PAID).count() == 1
    assert enqueued == [invoice.order_id]


def test_underpayment_goes_to_review_with_the_amount(invoice, enqueued):
    event = payment_notice_accept(notice=notice(invoice, amount=849))
    order = Order.objects.get(pk=invoice.order_id)
    assert order.status == S.REVIEW and "8.49" in order.status_reason
    assert event.outcome == PaymentEvent.Outcome.REVIEW
    assert Payment.objects.get(order=order).amount == from_minor(849, "USD")
    assert enqueued == []


def test_overpayment_is_fulfilled_and_the_excess_recorded(invoice, enqueued, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        payment_notice_accept(notice=notice(invoice, amount=1000))
    order = Order.objects.get(pk=invoice.order_id)
    assert order.status == S.PAID
    assert Payment.objects.get(order=order).excess_minor == 150
    assert OrderEvent.objects.filter(order=order, reason__contains="refund the excess").exists()


def test_wrong_currency_goes_to_review(invoice, enqueued):
    payment_notice_accept(notice=notice(invoice, currency="EUR"))
    order = Order.objects.get(pk=invoice.order_id)
    assert order.status == S.REVIEW and "EUR" in order.status_reason


def test_event_naming_another_order_goes_to_review_and_pays_neither(invoice, make_order, enqueued):
    """The id matched one order's invoice, the provider's reference names another: money an
    operator must place, never a payment of the invoice's order."""
    other = make_order(S.AWAITING_PAYMENT)
    event = payment_notice_accept(notice=notice(invoice, order_reference=other.reference))
    mine = Order.objects.get(pk=invoice.order_id)
    assert event.outcome == PaymentEvent.Outcome.REVIEW
    assert mine.reference in event.detail and other.reference in event.detail
    assert event.data["mismatch"]["notice_order_reference"] == other.reference
    assert event.data["mismatch"]["invoice_order_reference"] == mine.reference
    assert mine.status == S.AWAITING_PAYMENT and not Payment.objects.exists()
    assert PaymentInvoice.objects.get(pk=invoice.pk).status == PaymentInvoice.Status.OPEN
    # The order the money names shows it to an operator.
    other.refresh_from_db()
    assert other.status == S.REVIEW and mine.reference in other.status_reason
    assert OrderEvent.objects.get(order=other, to_status=S.REVIEW).data["payment_event_id"] == event.pk
    assert enqueued == []


def test_misdirected_money_naming_a_paid_order_is_noted_on_it(invoice, make_order, enqueued):
    other = make_order(S.PAID)
    event = payment_notice_accept(notice=notice(invoice, order_reference=other.reference))
    assert event.outcome == PaymentEvent.Outcome.REVIEW
    other.refresh_from_db()
    assert other.status == S.PAID  # its delivery goes on; the extra money is noted
    assert OrderEvent.objects.filter(order=other, from_status=S.PAID, to_status=S.PAID,
                                     data__payment_event_id=event.pk).exists()
    assert Order.objects.get(pk=invoice.order_id).status == S.AWAITING_PAYMENT


def test_misdirected_money_naming_no_order_of_ours_goes_to_review(invoice, enqueued):
    event = payment_notice_accept(notice=notice(invoice, order_reference="ORD-999999"))
    assert event.outcome == PaymentEvent.Outcome.REVIEW and "ORD-999999" in event.detail
    assert Order.objects.get(pk=invoice.order_id).status == S.AWAITING_PAYMENT
    assert not Payment.objects.exists()


def test_an_invoice_stored_before_accounts_is_matched_only_when_its_account_has_no_such_id(
        invoice, make_order, enqueued):
    PaymentInvoice.objects.filter(pk=invoice.pk).update(account="")  # as migration 0004 left it
    other_order = make_order(S.AWAITING_PAYMENT)
    twin = PaymentInvoice.objects.create(
        order=other_order, provider="sandbox", account="sandbox",
        provider_invoice_id=invoice.provider_invoice_id, amount_minor=850, currency="USD",
        exponent=2, expires_at=invoice.expires_at)
    event = payment_notice_accept(notice=notice(twin, order_reference=other_order.reference))
    assert event.invoice_id == twin.pk and event.outcome == PaymentEvent.Outcome.APPLIED
    assert Order.objects.get(pk=invoice.order_id).status == S.AWAITING_PAYMENT
    # With no row of its own account, the old row is the one: its order reference still checked.
    PaymentInvoice.objects.filter(pk=twin.pk).update(account="another")
    stale = payment_notice_accept(notice=notice(twin, key="evt-2", order_reference=other_order.reference))
    assert stale.invoice_id == invoice.pk and stale.outcome == PaymentEvent.Outcome.REVIEW
    legacy = payment_notice_accept(notice=notice(
        twin, key="evt-3", order_reference=Order.objects.get(pk=invoice.order_id).reference))
    assert legacy.invoice_id == invoice.pk and legacy.outcome == PaymentEvent.Outcome.APPLIED
    assert Order.objects.get(pk=invoice.order_id).status == S.PAID


def test_event_for_no_invoice_of_ours_is_kept_and_ignored(invoice, enqueued):
    stray = PaymentNotice(provider="sandbox", event_key="stray", kind=NoticeKind.PAID,
                          invoice_id="not-ours", amount_minor=500, currency="USD")
    event = payment_notice_accept(notice=stray)
    assert event.outcome == PaymentEvent.Outcome.IGNORED and event.order_id is None
    assert Order.objects.get(pk=invoice.order_id).status == S.AWAITING_PAYMENT


def test_expired_session_cancels_the_unpaid_order(invoice):
    payment_notice_accept(notice=notice(invoice, kind=NoticeKind.EXPIRED, amount=None, key="exp"))
    assert PaymentInvoice.objects.get(pk=invoice.pk).status == PaymentInvoice.Status.EXPIRED
    assert Order.objects.get(pk=invoice.order_id).status == S.CANCELLED


def test_out_of_order_expiry_after_payment_changes_nothing(invoice, enqueued):
    payment_notice_accept(notice=notice(invoice))
    payment_notice_accept(notice=notice(invoice, kind=NoticeKind.EXPIRED, amount=None, key="exp"))
    assert Order.objects.get(pk=invoice.order_id).status == S.PAID
    assert PaymentInvoice.objects.get(pk=invoice.pk).status == PaymentInvoice.Status.PAID


def test_late_payment_covering_the_current_price_is_fulfilled(invoice, enqueued):
    order = Order.objects.get(pk=invoice.order_id)
    services.orders_expire(now=order.expires_at + timedelta(seconds=1))
    late = notice(invoice, occurred_at=invoice.expires_at + timedelta(minutes=5))
    payment_notice_accept(notice=late)
    order.refresh_from_db()
    assert order.status == S.PAID
    assert "expired" in order.status_reason


def test_late_payment_short_of_the_current_price_goes_to_review(invoice, enqueued, monkeypatch):
    order = Order.objects.get(pk=invoice.order_id)
    services.orders_expire(now=order.expires_at + timedelta(seconds=1))
    provider = type(payment_provider_get("sandbox"))
    monkeypatch.setattr(provider, "requote_minor", lambda self, inv: 900)  # the price went up
    payment_notice_accept(notice=notice(invoice, occurred_at=timezone.now() + timedelta(hours=1)))
    order.refresh_from_db()
    assert order.status == S.REVIEW and "no longer covers" in order.status_reason
    assert enqueued == []


def test_pending_event_is_applied_again_by_the_poller(invoice, enqueued):
    """A crash after the inbox insert but before applying: the scheduled poller finishes it."""
    event = PaymentEvent.objects.create(
        provider="sandbox", event_key="crashed", kind=NoticeKind.PAID, amount_minor=850,
        currency="USD", data={"_notice": {"invoice_id": invoice.provider_invoice_id}},
    )
    PaymentEvent.objects.filter(pk=event.pk).update(received_at=timezone.now() - timedelta(minutes=2))
    assert payments_poll()["retried"] == 1
    assert Order.objects.get(pk=invoice.order_id).status == S.PAID
    assert payment_event_apply(event_id=event.pk).outcome == PaymentEvent.Outcome.APPLIED


def test_sandbox_payment_twice_pays_once(make_order, enqueued):
    order = make_order(S.AWAITING_PAYMENT)
    services.order_pay_sandbox(order=order)
    services.order_pay_sandbox(order=Order.objects.get(pk=order.pk))
    assert Payment.objects.filter(order=order).count() == 1
    assert PaymentInvoice.objects.filter(order=order).count() == 1


def test_money_helpers_are_exact():
    assert to_minor("8.50", "USD") == 850
    assert to_minor("1.000000001", "TON") == 1_000_000_001
    assert to_minor("0.0000000001", "TON", round_up=True) == 1
    assert from_minor(1_500_000, "USDT") == Decimal("1.5")
    assert from_minor(850, "USD") == Decimal("8.50")


def test_webhook_refuses_what_it_cannot_verify(client, invoice):
    url = reverse("orders:payment_webhook", args=["sandbox"])
    response = client.post(url, data=b'{"paid": true}', content_type="application/json")
    assert response.status_code == 400
    assert client.post(reverse("orders:payment_webhook", args=["nope"]), data=b"{}",
                       content_type="application/json").status_code == 404
    assert client.get(url).status_code == 405
    assert not PaymentEvent.objects.exists()
    assert Order.objects.get(pk=invoice.order_id).status == S.AWAITING_PAYMENT
