"""Telegram Payments in the bot: sendInvoice, pre_checkout_query re-checks, successful_payment → inbox."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

import orders.payments
from bots import services
from bots.models import BuyerNotice, TelegramUser
from orders.models import Order, Payment, PaymentEvent, PaymentInvoice
from orders.models import OrderStatus as S
from orders.payments.telegram_payments import TelegramPaymentsProvider
from orders.tasks import fulfil_order

pytestmark = pytest.mark.django_db(transaction=True)

BUYER_ID = 100000001  # the sandbox supplier knows this ID as @sandbox_ok
LABEL = "Card in Telegram (Telegram Payments)"
PROVIDER_TOKEN = "284685063:TEST:fake-provider-token"


@pytest.fixture
def telegram_payments(settings, monkeypatch) -> None:
    """The method on for the bot, as the registry and settings lines in the hand-over add it."""
    monkeypatch.setitem(orders.payments._PROVIDERS, "telegram", TelegramPaymentsProvider)
    settings.PAYMENT_METHODS = {
        **settings.PAYMENT_METHODS,
        "telegram": {"label": LABEL, "fee_percent": Decimal("0"), "channels": ["bot"],
                     "enabled": True},
    }
    settings.TELEGRAM_PAYMENTS_PROVIDER_TOKEN = PROVIDER_TOKEN


async def _order_with_invoice(session):
    chat = session.chat(BUYER_ID, "Ann", username="sandbox_ok")
    await chat.send("/buy")
    await chat.tap("⭐ 500 · $8.50")
    await chat.tap("👤 Myself")
    await chat.tap("✅ Yes")
    await chat.tap(LABEL)
    return chat


def _sent_invoice(fake) -> dict:
    [call] = fake.calls("sendInvoice")
    return call.params


async def _pre_checkout(chat, payload: str, currency: str = "USD", amount: int = 850) -> dict:
    update = chat.user.pre_checkout(payload, currency, amount)
    await chat.session.feed(update)
    answer = chat.fake.checkout_answer(update["pre_checkout_query"]["id"])
    assert answer is not None, "pre_checkout_query not answered"
    return answer


def test_the_method_is_off_unless_enabled(bot):
    async def scenario(session):
        chat = session.chat(BUYER_ID, "Ann", username="sandbox_ok")
        await chat.send("/buy")
        await chat.tap("⭐ 500 · $8.50")
        await chat.tap("👤 Myself")
        await chat.tap("✅ Yes")
        assert LABEL not in chat.buttons and "🧪 Test payment" in chat.buttons

    bot.run(scenario)


def test_invoice_sent_with_the_order_price_and_a_per_invoice_payload(bot, telegram_payments):
    async def scenario(session):
        chat = await _order_with_invoice(session)
        return chat.messages[-2], chat.last

    shown, invoice_message = bot.run(scenario)
    order = Order.objects.get()
    invoice = PaymentInvoice.objects.get()
    assert (order.payment_method, invoice.provider, invoice.amount_minor, invoice.currency) == (
        "telegram", "telegram", 850, "USD")
    sent = _sent_invoice(bot.fake)
    assert sent["payload"] == invoice.provider_invoice_id and sent["payload"].startswith("tgp-")
    assert sent["provider_token"] == PROVIDER_TOKEN and sent["currency"] == "USD"
    assert sent["prices"] == [{"label": "500 Stars", "amount": 850}]
    assert sent["title"] == "500 Stars"
    assert sent["description"] == f"500 Stars for @sandbox_ok. Order #{order.reference}."
    assert invoice_message.extra["invoice"]["total_amount"] == 850
    assert shown.text.splitlines()[:3] == [f"Order #{order.reference}", "500 Stars for @sandbox_ok.",
                                           "To pay: $8.50"]
    assert "Tap “Pay” on the invoice below" in shown.text
    assert shown.button_texts == ["✖ Cancel order"]  # Telegram's own Pay button is on the invoice


def test_pay_in_telegram_until_delivered_and_a_repeated_payment_counts_once(
        bot, telegram_payments, fulfilment_jobs, sandbox_supplier):
    async def buy(session):
        return await _order_with_invoice(session)

    bot.run(buy)
    payload = PaymentInvoice.objects.get().provider_invoice_id

    async def pay(session):
        chat = session.chat(BUYER_ID, "Ann", username="sandbox_ok")
        answer = await _pre_checkout(chat, payload)
        assert answer["ok"] is True and "error_message" not in answer
        paid = chat.user.successful_payment(payload, "USD", 850, charge_id="tg-charge-1",
                                            provider_charge_id="ch_1")
        await session.feed(paid)
        assert chat.screen == ("Payment received. Sending 500 Stars to @sandbox_ok…\n\n"
                               "We'll message you here when they arrive.")
        await session.feed(paid)  # Telegram or our webhook retrying the same update
        assert chat.screen.startswith("Payment received. Sending 500 Stars")

    bot.run(pay)
    order = Order.objects.get()
    assert order.status == S.PAID and fulfilment_jobs == [order.pk]
    [payment] = Payment.objects.all()
    assert (payment.provider, payment.provider_reference, payment.amount, payment.currency) == (
        "telegram", "tg-charge-1", Decimal("8.50"), "USD")
    assert payment.raw["provider_payment_charge_id"] == "ch_1"
    assert PaymentEvent.objects.get().outcome == PaymentEvent.Outcome.APPLIED
    assert TelegramUser.objects.get(telegram_id=BUYER_ID).state == services.IDLE

    assert fulfil_order(order.pk) == S.DELIVERED
    assert fulfil_order(order.pk) == S.DELIVERED
    assert sandbox_supplier.topup_calls(order.idempotency_key) == 1
    assert bot.fake.last_bot_message(BUYER_ID).text == (
        f"✅ 500 Stars sent to @sandbox_ok. Order #{order.reference}\n\nThank you! Send /buy to buy more.")
    assert BuyerNotice.objects.filter(order=order).count() == 1

    async def pay_again(session):
        chat = session.chat(BUYER_ID, "Ann", username="sandbox_ok")
        answer = await _pre_checkout(chat, payload)
        assert answer == {**answer, "ok": False, "error_message": "This order is already paid."}

    bot.run(pay_again)


@pytest.mark.parametrize("case", ["amount", "currency", "expired", "window", "cancelled", "unknown"])
def test_pre_checkout_refuses_what_the_order_cannot_take(bot, telegram_payments, case):
    async def buy(session):
        chat = await _order_with_invoice(session)
        if case == "cancelled":
            await chat.tap("✖ Cancel order")

    bot.run(buy)
    invoice = PaymentInvoice.objects.get()
    if case == "expired":
        Order.objects.filter(pk=invoice.order_id).update(status=S.EXPIRED)  # set-up: the scheduler's move
    if case == "window":
        PaymentInvoice.objects.filter(pk=invoice.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    payload = "tgp-" + "0" * 32 if case == "unknown" else invoice.provider_invoice_id
    currency = "EUR" if case == "currency" else "USD"
    amount = 849 if case == "amount" else 850
    expected = {
        "amount": "This invoice no longer matches the order. Send /buy to place a new one.",
        "currency": "This invoice no longer matches the order. Send /buy to place a new one.",
        "expired": "This order has expired. Send /buy to place a new one.",
        "window": "This order has expired. Send /buy to place a new one.",
        "cancelled": "This order was cancelled. Send /buy to place a new one.",
        "unknown": "We can't find this order. Send /buy to place a new one.",
    }[case]

    async def pay(session):
        chat = session.chat(BUYER_ID, "Ann", username="sandbox_ok")
        answer = await _pre_checkout(chat, payload, currency, amount)
        assert (answer["ok"], answer.get("error_message")) == (False, expected)

    bot.run(pay)
    assert not bot.fake.unanswered_checkouts()
    assert not Payment.objects.exists()


def test_refusal_is_in_the_buyers_language(bot, telegram_payments):
    async def buy(session):
        chat = session.chat(BUYER_ID, "Аня", username="sandbox_ok", language_code="ru")
        await chat.send("/cancel")

    bot.run(buy)

    async def pay(session):
        chat = session.chat(BUYER_ID, "Аня", username="sandbox_ok", language_code="ru")
        answer = await _pre_checkout(chat, "tgp-unknown")
        assert answer["ok"] is False and answer["error_message"] != (
            "We can't find this order. Send /buy to place a new one.")
        assert "/buy" in answer["error_message"]

    bot.run(pay)


def test_a_payment_for_no_invoice_of_ours_is_recorded_and_the_buyer_told(bot, telegram_payments):
    async def pay(session):
        chat = session.chat(BUYER_ID, "Ann", username="sandbox_ok")
        await session.feed(chat.user.successful_payment("tgp-nothing", "USD", 850, charge_id="tg-x"))
        assert chat.screen.startswith("We received your payment but couldn't match it to an order.")

    bot.run(pay)
    event = PaymentEvent.objects.get()
    assert (event.provider, event.event_key, event.outcome) == ("telegram", "tg-x",
                                                                PaymentEvent.Outcome.IGNORED)


def test_without_a_provider_token_the_method_is_refused(bot, telegram_payments, settings):
    settings.TELEGRAM_PAYMENTS_PROVIDER_TOKEN = ""

    async def scenario(session):
        chat = session.chat(BUYER_ID, "Ann", username="sandbox_ok")
        await chat.send("/buy")
        await chat.tap("⭐ 500 · $8.50")
        await chat.tap("👤 Myself")
        await chat.tap("✅ Yes")
        answer = await chat.tap(LABEL)
        assert answer["text"] == "That payment method is not available right now."

    bot.run(scenario)
    assert not bot.fake.calls("sendInvoice")


def test_a_refused_send_invoice_tells_the_buyer(bot, telegram_payments):
    bot.fake.fail_next("sendInvoice", error_code=400, description="Bad Request: PAYMENT_PROVIDER_INVALID")

    async def scenario(session):
        chat = await _order_with_invoice(session)
        assert chat.screen.startswith("The payment service isn't answering right now.")

    bot.run(scenario)


def test_an_error_while_checking_still_answers_the_pre_checkout(bot, telegram_payments, monkeypatch):
    def broken(**kwargs):
        raise RuntimeError("database down")

    monkeypatch.setattr(services, "buy_checkout_check", broken)

    async def pay(session):
        chat = session.chat(BUYER_ID, "Ann", username="sandbox_ok")
        answer = await _pre_checkout(chat, "tgp-whatever")
        assert answer["ok"] is False and answer["error_message"].startswith("Sorry, something went wrong")

    bot.run(pay, errors_expected=True)
