"""Telegram Payments provider: quotes without a network call, checks before charging, inbox once."""

from datetime import timedelta

import pytest
from django.utils import timezone

from orders.exceptions import PaymentMethodUnavailable, WebhookRejected
from orders.models import Payment, PaymentEvent, PaymentInvoice
from orders.models import OrderStatus as S
from orders.payments.services import payment_notice_accept
from orders.payments.telegram_payments import (
    CheckoutRefusal,
    TelegramPaymentsProvider,
    telegram_checkout_refusal,
    telegram_payment_notice,
)

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def provider_token(settings):
    settings.TELEGRAM_PAYMENTS_PROVIDER_TOKEN = "284685063:TEST:fake"


@pytest.fixture
def invoice(make_order) -> PaymentInvoice:
    order = make_order(S.AWAITING_PAYMENT, channel="bot")
    quote = TelegramPaymentsProvider().create_invoice(order, expires_at=order.expires_at)
    return PaymentInvoice.objects.create(
        order=order, provider=quote.provider, provider_invoice_id=quote.provider_invoice_id,
        amount_minor=quote.amount_minor, currency=quote.currency, exponent=quote.exponent,
        expires_at=quote.expires_at)


def test_quote_in_the_order_currency_with_a_fresh_payload(make_order):
    order = make_order(S.AWAITING_PAYMENT)
    provider = TelegramPaymentsProvider()
    first = provider.create_invoice(order, expires_at=order.expires_at)
    second = provider.create_invoice(order, expires_at=order.expires_at)
    assert (first.provider, first.amount_minor, first.currency, first.exponent) == ("telegram", 850, "USD", 2)
    assert first.provider_invoice_id != second.provider_invoice_id
    assert len(first.provider_invoice_id.encode()) <= 128 and first.pay_url == ""


def test_no_provider_token_no_method(make_order, settings):
    settings.TELEGRAM_PAYMENTS_PROVIDER_TOKEN = ""
    order = make_order(S.AWAITING_PAYMENT)
    with pytest.raises(PaymentMethodUnavailable):
        TelegramPaymentsProvider().create_invoice(order, expires_at=order.expires_at)


def test_no_webhook_no_poll():
    provider = TelegramPaymentsProvider()
    with pytest.raises(WebhookRejected):
        provider.verify_webhook(headers={}, body=b'{"invoice_payload": "tgp-x"}')
    assert provider.poll([]) == []


def test_the_shop_payment_webhook_refuses_telegram(client):
    response = client.post("/payments/telegram/webhook/", data=b"{}", content_type="application/json")
    assert response.status_code in (400, 404)  # 404 until the provider is registered


def test_checkout_refusals(invoice):
    payload = invoice.provider_invoice_id
    check = lambda **kw: telegram_checkout_refusal(**{"payload": payload, "currency": "USD",  # noqa: E731
                                                      "total_amount": 850, **kw})
    assert check() == ""
    assert check(currency="usd") == ""
    assert check(total_amount=851) == CheckoutRefusal.AMOUNT
    assert check(currency="EUR") == CheckoutRefusal.AMOUNT
    assert check(payload="tgp-other") == CheckoutRefusal.UNKNOWN
    PaymentInvoice.objects.filter(pk=invoice.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    assert check() == CheckoutRefusal.EXPIRED
    for status, refusal in [(S.EXPIRED, CheckoutRefusal.EXPIRED), (S.CANCELLED, CheckoutRefusal.CANCELLED),
                            (S.PAID, CheckoutRefusal.PAID), (S.DELIVERED, CheckoutRefusal.PAID)]:
        type(invoice.order).objects.filter(pk=invoice.order_id).update(status=status)
        assert check() == refusal


def test_successful_payment_applied_once(invoice, monkeypatch, django_capture_on_commit_callbacks):
    jobs: list[int] = []
    monkeypatch.setattr("orders.queue.enqueue_fulfilment", jobs.append)
    notice = telegram_payment_notice(payload=invoice.provider_invoice_id, currency="USD", total_amount=850,
                                     telegram_payment_charge_id="tg-1", provider_payment_charge_id="ch_1",
                                     payer_telegram_id=7)
    with django_capture_on_commit_callbacks(execute=True):
        first = payment_notice_accept(notice=notice)
        again = payment_notice_accept(notice=notice)
    assert first.pk == again.pk and first.outcome == PaymentEvent.Outcome.APPLIED
    invoice.order.refresh_from_db()
    assert invoice.order.status == S.PAID and jobs == [invoice.order_id]
    [payment] = Payment.objects.all()
    assert payment.provider_reference == "tg-1"

    result = TelegramPaymentsProvider().refund(payment)
    assert result.refunded is False
    assert "ch_1" in result.message and "dashboard" in result.message


def test_a_short_payment_is_not_accepted(invoice):
    event = payment_notice_accept(notice=telegram_payment_notice(
        payload=invoice.provider_invoice_id, currency="USD", total_amount=800,
        telegram_payment_charge_id="tg-2", provider_payment_charge_id="ch_2"))
    invoice.order.refresh_from_db()
    assert invoice.order.status != S.PAID
    assert event.outcome in (PaymentEvent.Outcome.REVIEW, PaymentEvent.Outcome.REJECTED)
