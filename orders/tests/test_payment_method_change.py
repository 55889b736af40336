"""Switching an unpaid order's payment method, and what the buyer is asked to pay afterwards.

The old invoice closes, but money sent to it later is still applied to the order: nothing is lost.
"""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone, translation

from bots.messages import order_text
from orders.display import order_payment_due, order_status_message
from orders.exceptions import OrderStateChanged, PaymentMethodUnavailable
from orders.models import Order, OrderEvent, OrderStatus, PaymentEvent, PaymentInvoice
from orders.payments import payment_provider_get
from orders.payments.services import invoice_open, payment_method_change, payment_notice_accept
from orders.services import order_mark_paid


@pytest.fixture
def stripe_and_ton_on(settings):
    """Stripe (2.5 % fee) and TON enabled beside the sandbox; no provider is called here."""
    methods = settings.PAYMENT_METHODS
    settings.PAYMENT_METHODS = {
        **methods,
        "stripe": {**methods["stripe"], "enabled": True, "fee_percent": Decimal("2.5")},
        "ton": {**methods["ton"], "enabled": True},
        "telegram": {**methods["telegram"], "enabled": True},
    }


@pytest.fixture
def sandbox_order(make_order, stripe_and_ton_on):
    """A web order awaiting payment with its sandbox invoice open."""
    order = make_order()
    invoice_open(order=order)
    return order


def test_switch_sets_method_and_fee_closes_open_invoices_and_notes_it(sandbox_order):
    changed = payment_method_change(order=sandbox_order, payment_method="stripe", actor="buyer:web")

    assert changed.payment_method == "stripe"
    assert changed.payment_fee == Decimal("0.21")  # 2.5 % of $8.50, to the cent
    assert changed.status == OrderStatus.AWAITING_PAYMENT
    assert list(sandbox_order.invoices.values_list("status", flat=True)) == [PaymentInvoice.Status.CANCELLED]
    note = OrderEvent.objects.filter(order=sandbox_order).latest("pk")
    assert (note.from_status, note.to_status, note.actor) == ("awaiting_payment", "awaiting_payment", "buyer:web")
    assert note.reason == "Payment method changed from sandbox to stripe"
    assert note.data["invoices_closed"] == [sandbox_order.invoices.get().pk]


@pytest.mark.parametrize("method", ["telegram", "bogus", "", "cryptopay"])
def test_only_methods_enabled_for_the_orders_channel(sandbox_order, method):
    """telegram is on, but for the bot only; cryptopay is off."""
    with pytest.raises(PaymentMethodUnavailable):
        payment_method_change(order=sandbox_order, payment_method=method, actor="buyer:web")

    sandbox_order.refresh_from_db()
    assert sandbox_order.payment_method == "sandbox"
    assert sandbox_order.invoices.get().status == PaymentInvoice.Status.OPEN


@pytest.mark.parametrize("status", [OrderStatus.PAID, OrderStatus.CANCELLED, OrderStatus.EXPIRED])
def test_only_while_awaiting_payment(make_order, stripe_and_ton_on, status):
    order = make_order(status)

    with pytest.raises(OrderStateChanged):
        payment_method_change(order=order, payment_method="ton", actor="buyer:web")

    order.refresh_from_db()
    assert order.payment_method == "sandbox"
    assert not OrderEvent.objects.filter(order=order).exists()


def test_the_same_method_changes_nothing(sandbox_order):
    payment_method_change(order=sandbox_order, payment_method="sandbox", actor="buyer:web")

    assert sandbox_order.invoices.get().status == PaymentInvoice.Status.OPEN
    assert not OrderEvent.objects.filter(order=sandbox_order).exists()


def test_a_late_payment_to_the_closed_invoice_still_pays_the_order(sandbox_order):
    old = sandbox_order.invoices.get()
    payment_method_change(order=sandbox_order, payment_method="ton", actor="buyer:web")

    event = payment_notice_accept(notice=payment_provider_get("sandbox").simulate_payment(old))

    sandbox_order.refresh_from_db()
    assert event.outcome == PaymentEvent.Outcome.APPLIED and event.invoice == old
    assert sandbox_order.status == OrderStatus.PAID
    assert sandbox_order.payments.get().invoice == old


def test_a_late_payment_after_paying_the_new_way_is_kept_for_a_refund(sandbox_order):
    old = sandbox_order.invoices.get()
    payment_method_change(order=sandbox_order, payment_method="stripe", actor="buyer:web")
    order_mark_paid(order=sandbox_order, provider="stripe", provider_reference="cs_new",
                    amount=Decimal("8.50"), currency="USD", actor="payment:stripe")
    payment_notice_accept(notice=payment_provider_get("sandbox").simulate_payment(old))

    sandbox_order.refresh_from_db()
    assert sandbox_order.payments.count() == 2  # both recorded, neither dropped
    assert OrderEvent.objects.filter(order=sandbox_order, reason="Extra payment received: refund it").exists()


# --- What the buyer is asked to pay, on the web and in the bot ------------------------------


def _order_paying_with(make_order, method: str, **fields):
    order = make_order(**fields)
    Order.objects.filter(pk=order.pk).update(payment_method=method)  # test set-up only
    order.refresh_from_db()
    return order


def _ton_invoice(order, *, minutes: int = 15, status=PaymentInvoice.Status.OPEN) -> PaymentInvoice:
    return PaymentInvoice.objects.create(
        order=order, provider="ton", status=status, comment=f"ORD{order.pk}x{minutes}",
        amount_minor=1_700_000_000, currency="TON", exponent=9, rate=Decimal("5"),
        expires_at=timezone.now() + timedelta(minutes=minutes),
    )


@pytest.mark.parametrize("channel", ["web", "bot"])
def test_the_open_quote_is_what_the_buyer_is_asked_for(make_order, channel):
    order = _order_paying_with(make_order, "ton", channel=channel)
    invoice = _ton_invoice(order)

    due = order_payment_due(order)

    assert (due.amount, due.currency, due.pay_by) == (Decimal("1.700000000"), "TON", invoice.expires_at)
    with translation.override("en"):
        assert order_status_message(order) == "Waiting for your payment of 1.70 TON."
        assert order_text(order).startswith("Waiting for your payment of 1.70 TON.")
    with translation.override("ru"):
        assert order_status_message(order) == "Ожидаем оплату: 1,70 TON."


@pytest.mark.parametrize("minutes, status, method", [
    (-1, PaymentInvoice.Status.OPEN, "ton"),  # lapsed quote: the next pay page quotes again
    (15, PaymentInvoice.Status.CANCELLED, "ton"),  # closed by a switch
    (15, PaymentInvoice.Status.OPEN, "sandbox"),  # a quote in a method no longer chosen
])
def test_without_a_live_quote_the_price_and_order_window_are_asked_for(make_order, minutes, status,
                                                                       method):
    order = _order_paying_with(make_order, method)
    _ton_invoice(order, minutes=minutes, status=status)

    due = order_payment_due(order)

    assert (due.amount, due.currency, due.pay_by) == (Decimal("8.50"), "USD", order.expires_at)
    with translation.override("en"):
        assert order_status_message(order) == "Waiting for your payment of $8.50."
