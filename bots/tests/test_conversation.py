"""Whole conversations through the real Application, the fake Bot API and the sandbox supplier."""

from __future__ import annotations

import asyncio
import threading

import pytest

from bots import services
from bots.models import BuyerNotice, TelegramUser
from orders.models import Order
from orders.models import OrderStatus as S
from orders.tasks import fulfil_order

pytestmark = pytest.mark.django_db(transaction=True)

BUYER_ID = 100000001  # the sandbox supplier knows this ID as @sandbox_ok


def test_buy_500_stars_for_myself_until_delivered(bot, fulfilment_jobs, sandbox_supplier):
    async def scenario(session):
        chat = session.chat(BUYER_ID, "Ann", username="sandbox_ok")
        await chat.send("/buy")
        assert chat.screen == "How many Stars would you like?"
        assert "⭐ 500 · $8.50" in chat.buttons
        await chat.tap("⭐ 500 · $8.50")
        assert chat.screen == "500 Stars for $8.50.\n\nWho should get them?"
        await chat.tap("👤 Myself")
        assert chat.screen.startswith("Topping up @sandbox_ok — is this correct?")
        await chat.tap("✅ Yes")
        assert "How would you like to pay?" in chat.screen
        await chat.tap("🧪 Test payment")
        assert chat.screen.startswith("Order #ORD-")
        await chat.tap("💳 Pay (test mode)")
        assert chat.screen.startswith("Payment received. Sending 500 Stars to @sandbox_ok…")
        return chat

    chat = bot.run(scenario)
    order = Order.objects.get()
    assert (order.channel, order.stars, order.status) == ("bot", 500, S.PAID)
    assert order.buyer_telegram_id == BUYER_ID and order.recipient_input == str(BUYER_ID)
    assert fulfilment_jobs == [order.pk]

    # The real fulfilment job against the sandbox over HTTP; its delivered move enqueues
    # bots.tasks.order_notify, which runs at once (q_sync) and writes through the fake Bot API.
    assert fulfil_order(order.pk) == S.DELIVERED
    assert sandbox_supplier.topup_calls(order.idempotency_key) == 1
    assert chat.screen == (f"✅ 500 Stars sent to @sandbox_ok. Order #{order.reference}"
                           "\n\nThank you! Send /buy to buy more.")
    assert BuyerNotice.objects.get(order=order).outcome == BuyerNotice.Outcome.SENT
    assert TelegramUser.objects.get(telegram_id=BUYER_ID).state == ""


def test_custom_amount_for_someone_else_by_id(bot, fulfilment_jobs):
    async def scenario(session):
        chat = session.chat(200000001, "Ben")
        await chat.send("/buy")
        await chat.tap("Other amount")
        assert chat.screen == ("Send the number of Stars you want, from 50 to 10,000. "
                               "Price: $0.018 per Star.")
        await chat.send("20000")
        assert chat.screen == "Please send a whole number of Stars from 50 to 10,000."
        await chat.send("seven hundred")
        assert chat.screen == "Please send a whole number of Stars from 50 to 10,000."
        await chat.send("777")
        assert chat.screen == "777 Stars for $13.99.\n\nWho should get them?"
        await chat.tap("🎁 Someone else")
        assert chat.screen == "Send the recipient's Telegram @username or numeric user ID."
        await chat.send("555000111")
        assert chat.screen == "Topping up @user555000111 — is this correct?\n\n777 Stars for $13.99."
        assert chat.buttons == ["✅ Yes", "✏️ Change", "✖ Cancel"]
        await chat.tap("✅ Yes")
        await chat.tap("🧪 Test payment")
        await chat.tap("💳 Pay (test mode)")
        assert chat.screen.startswith("Payment received. Sending 777 Stars to @user555000111…")

    bot.run(scenario)
    order = Order.objects.get()
    assert (order.stars, str(order.price), order.recipient_input, order.recipient_user_id) == (
        777, "13.99", "555000111", "555000111")
    assert order.package is None and order.status == S.PAID and order.buyer_telegram_id == 200000001


def test_buy_for_someone_else_by_username(bot, fulfilment_jobs):
    async def scenario(session):
        chat = session.chat(200000002, "Cleo")
        await chat.send("/buy")
        # 1,000 for $16.00: sold at a margin thanks to the supplier's volume price from 1,000.
        await chat.tap("⭐ 1,000 · $16.00")
        await chat.tap("🎁 Someone else")
        await chat.send("@Sandbox_OK")
        assert chat.screen.startswith("Topping up @sandbox_ok — is this correct?")
        await chat.tap("✅ Yes")
        assert chat.screen == ("1,000 Stars for @sandbox_ok.\nTo pay: $16.00\n\n"
                               "How would you like to pay?")
        await chat.tap("🧪 Test payment")
        assert chat.screen.splitlines()[1:3] == ["1,000 Stars for @sandbox_ok.", "To pay: $16.00"]

    bot.run(scenario)
    order = Order.objects.get()
    assert (order.recipient_input, order.recipient_user_id, order.status) == (
        "@Sandbox_OK", "100000001", S.AWAITING_PAYMENT)


def test_invalid_recipients_keep_the_buyer_at_the_question(bot, sandbox_supplier):
    async def scenario(session):
        chat = session.chat(200000003)
        await chat.send("/buy")
        await chat.tap("⭐ 50 · $1.00")
        await chat.tap("🎁 Someone else")
        await chat.send("@sandbox_invalid")
        assert chat.screen == ("We couldn't find that Telegram account. Check the @username or ID "
                               "and send it again, or /cancel.")
        await chat.send("12ab")
        assert chat.screen.startswith("That is not a Telegram user ID (digits only) or @username")
        await chat.send("x" * 5000)
        assert chat.screen == ("That is too long for a Telegram @username or user ID. "
                               "Send it again, or /cancel.")
        await chat.sticker()
        assert chat.screen == "Please send the @username or user ID as text."
        await chat.photo()
        assert chat.screen == "Please send the @username or user ID as text."
        sandbox_supplier.stop()
        await chat.send("@someone_else")
        assert chat.screen == "Our supplier isn't answering right now, please try again in a minute."
        return chat

    bot.run(scenario)
    assert TelegramUser.objects.get(telegram_id=200000003).state == "typing_recipient"
    assert not Order.objects.exists()


def test_change_recipient_before_and_after_confirming(bot, fulfilment_jobs):
    async def scenario(session):
        chat = session.chat(100000001, username="sandbox_ok")
        await chat.send("/buy")
        await chat.tap("⭐ 250 · $4.50")
        await chat.tap("👤 Myself")
        assert chat.screen.startswith("Topping up @sandbox_ok")
        await chat.tap("✏️ Change")
        assert chat.screen == "250 Stars for $4.50.\n\nWho should get them?"
        await chat.tap("🎁 Someone else")
        await chat.send("300000001")
        assert chat.screen.startswith("Topping up @user300000001")
        await chat.tap("✅ Yes")
        await chat.tap("✏️ Change recipient")
        assert chat.buttons == ["👤 Myself", "🎁 Someone else", "✖ Cancel"]
        await chat.tap("🎁 Someone else")
        await chat.send("300000002")
        await chat.tap("✅ Yes")
        await chat.tap("🧪 Test payment")

    bot.run(scenario)
    assert Order.objects.get().recipient_user_id == "300000002"


def test_cancel_midway_makes_old_buttons_stale(bot, fake_telegram):
    async def scenario(session):
        chat = session.chat(200000004)
        await chat.send("/cancel")
        assert chat.screen == "There is nothing to cancel. Send /buy to buy Stars."
        await chat.send("/buy")
        await chat.tap("⭐ 100 · $2.00")
        await chat.send("/cancel")
        assert chat.screen == "Cancelled, nothing was ordered. Send /buy to start again."
        sent = len(chat.messages)
        answer = await chat.tap("👤 Myself")
        assert answer["text"] == "This button is no longer active."
        assert len(chat.messages) == sent and not fake_telegram.calls("editMessageText")[1:]
        # A placed order is cancelled with the purchase.
        await chat.send("/buy")
        await chat.tap("⭐ 100 · $2.00")
        await chat.tap("🎁 Someone else")
        await chat.send("300000003")
        await chat.tap("✅ Yes")
        await chat.tap("🧪 Test payment")
        pay = next(b["callback_data"] for b in chat.last.buttons if b["text"] == "💳 Pay (test mode)")
        await chat.tap("✖ Cancel order")
        assert chat.screen == ("This order was cancelled. Nothing was charged.\n\n"
                               "Send /buy to start again.")
        assert (await chat.press(pay))["text"] == "This button is no longer active."

    bot.run(scenario)
    order = Order.objects.get()
    assert order.status == S.CANCELLED and not order.payments.exists()


def test_double_taps_place_one_order_and_pay_once(bot, fulfilment_jobs):
    async def scenario(session):
        chat = session.chat(100000001, username="sandbox_ok")
        await chat.send("/buy")
        await chat.tap("⭐ 500 · $8.50")
        await chat.tap("👤 Myself")
        await chat.tap("✅ Yes")
        method = chat.user.tap("🧪 Test payment")
        again = chat.user.callback(method["callback_query"]["data"],
                                   chat.fake.last_bot_message(chat.id))
        await asyncio.gather(session.feed(method), session.feed(again))
        pay = chat.user.tap("💳 Pay (test mode)")
        pay_again = chat.user.callback(pay["callback_query"]["data"], chat.last)
        await asyncio.gather(session.feed(pay), session.feed(pay_again))
        answers = [chat.fake.answered(u["callback_query"]["id"])
                   for u in (method, again, pay, pay_again)]
        assert [a.get("text") for a in answers] == [
            None, "This button is no longer active.", None, "This button is no longer active."]

    bot.run(scenario)
    order = Order.objects.get()
    assert order.status == S.PAID and order.payments.count() == 1
    assert fulfilment_jobs == [order.pk]


def test_forged_and_stale_callback_data_is_answered_and_ignored(bot, fake_telegram):
    async def scenario(session):
        chat = session.chat(200000005)
        await chat.send("/buy")
        flow = chat.last.buttons[0]["callback_data"].split(":")[1]
        sent = len(fake_telegram.calls("sendMessage"))
        edits = len(fake_telegram.calls("editMessageText"))
        stale = "This button is no longer active."
        assert (await chat.press("f:deadbeef:pkg:1"))["text"] == stale
        assert (await chat.press("nonsense"))["text"] == stale
        assert (await chat.press(f"f:{flow}:yes"))["text"] == stale  # not this step's button
        assert (await chat.press(f"f:{flow}:pkg:999999"))["text"] == (
            "That is no longer on sale. Send /buy to choose again.")
        assert (await chat.press("lang:de"))["text"] == stale
        assert len(fake_telegram.calls("sendMessage")) == sent
        assert len(fake_telegram.calls("editMessageText")) == edits
        await chat.tap("⭐ 100 · $2.00")
        await chat.tap("👤 Myself")
        await chat.tap("✅ Yes")
        assert (await chat.press(f"f:{flow}:method:stripe"))["text"] == (
            "That payment method is not available right now.")
        return flow

    bot.run(scenario)
    user = TelegramUser.objects.get(telegram_id=200000005)
    assert user.state == "choosing_payment" and not Order.objects.exists()


def test_non_text_and_overlong_messages_get_a_hint(bot):
    async def scenario(session):
        chat = session.chat(200000006)
        hint = ("I only understand text and buttons. Send /buy to buy Stars, or /help to see "
                "what I can do.")
        await chat.sticker()
        assert chat.screen == hint
        await chat.photo()
        assert chat.screen == hint
        await chat.send("y" * 5000)
        assert chat.screen == "Send /buy to buy Stars, or /help to see what I can do."
        await chat.send("/frobnicate")
        assert chat.screen == "Send /buy to buy Stars, or /help to see what I can do."
        await chat.send("/buy")
        await chat.send("500")
        assert chat.screen == "Please use the buttons above, or /cancel."
        await chat.tap("Other amount")
        await chat.sticker()
        assert chat.screen == "Please send the number of Stars as text, for example 500."
        await chat.send("9" * 5000)
        assert chat.screen == "Please send a whole number of Stars from 50 to 10,000."

    bot.run(scenario)


def test_start_help_and_orders(bot, fulfilment_jobs):
    async def scenario(session):
        chat = session.chat(100000001, "Ann", username="sandbox_ok")
        await chat.send("/start")
        assert chat.screen.startswith("Hi, Ann! ⭐\n\nHere you can buy Telegram Stars")
        assert "⭐ 500 Stars — $8.50" in chat.screen
        assert "Any other amount from 50 to 10,000: $0.018 per Star." in chat.screen
        assert "/orders — Your recent orders" in chat.screen
        assert chat.buttons == ["⭐ Buy Stars"]
        await chat.send("/help")
        assert chat.screen.startswith("How it works:")
        await chat.send("/orders")
        assert chat.screen == "You have no orders yet. Send /buy to buy Stars."
        await chat.tap("⭐ Buy Stars")
        assert chat.screen == "How many Stars would you like?"
        await chat.tap("⭐ 500 · $8.50")
        await chat.tap("👤 Myself")
        await chat.tap("✅ Yes")
        await chat.tap("🧪 Test payment")
        await chat.tap("💳 Pay (test mode)")

    bot.run(scenario)
    order = Order.objects.get()
    fulfil_order(order.pk)

    async def orders(session):
        chat = session.chat(100000001, "Ann", username="sandbox_ok")
        await chat.send("/orders")
        return chat.screen

    assert bot.run(orders) == (f"Your recent orders:\n\n#{order.reference} · 500 Stars → "
                               "@sandbox_ok · $8.50\nDelivered")


def test_failed_delivery_tells_the_buyer_about_the_refund(bot, fulfilment_jobs, sandbox_supplier):
    async def scenario(session):
        chat = session.chat(200000007)
        await chat.send("/buy")
        await chat.tap("⭐ 50 · $1.00")
        await chat.tap("🎁 Someone else")
        await chat.send("@sandbox_fail")
        await chat.tap("✅ Yes")
        await chat.tap("🧪 Test payment")
        await chat.tap("💳 Pay (test mode)")
        return chat

    chat = bot.run(scenario)
    order = Order.objects.get()
    assert fulfil_order(order.pk) == S.REFUND_PENDING  # the refund job runs at once (q_sync)
    order.refresh_from_db()
    assert order.status == S.REFUNDED
    notices = [message.text for message in chat.messages[-2:]]
    assert notices == [
        "We couldn't send the 50 Stars to @sandbox_fail, so nothing was delivered. "
        "Your payment is being refunded.",
        "We couldn't send the 50 Stars to @sandbox_fail, so nothing was delivered. "
        "Your payment has been refunded.",
    ]
    assert sorted(BuyerNotice.objects.values_list("status", "outcome")) == [
        (S.REFUND_PENDING, "sent"), (S.REFUNDED, "sent")]


def test_an_unexpected_error_is_logged_and_the_buyer_told(bot, monkeypatch, caplog):
    def broken(**kwargs):
        raise RuntimeError("database on fire")

    monkeypatch.setattr("bots.services.buyer_orders", broken)

    async def scenario(session):
        chat = session.chat(200000008)
        await chat.send("/orders")
        return chat.screen

    assert bot.run(scenario, errors_expected=True) == (
        "Sorry, something went wrong on our side. Please try again in a moment, or send "
        "/cancel to start over.")
    assert [type(error) for error in bot.errors] == [RuntimeError]
    assert "database on fire" in caplog.text


def test_two_buyers_at_once_a_slow_supplier_stalls_only_its_own_buyer(bot, fulfilment_jobs,
                                                                       monkeypatch):
    slow_id, fast_id = 400000001, 400000002
    release = threading.Event()
    lookup = services.recipient_lookup

    def gated_lookup(*, raw: str, limits):
        if raw == str(slow_id):
            assert release.wait(10), "the slow check was never released"
        return lookup(raw=raw, limits=limits)

    monkeypatch.setattr(services, "recipient_lookup", gated_lookup)

    async def scenario(session):
        slow, fast = session.chat(slow_id, "Slow"), session.chat(fast_id, "Fast")
        await asyncio.gather(slow.send("/buy"), fast.send("/buy"))
        await asyncio.gather(slow.tap("⭐ 500 · $8.50"), fast.tap("⭐ 100 · $2.00"))
        slow_check = asyncio.create_task(slow.tap("👤 Myself"))
        await asyncio.sleep(0.1)
        # The slow buyer's next update waits for their check; the fast buyer buys meanwhile.
        slow_orders = asyncio.create_task(slow.send("/orders"))
        await fast.tap("👤 Myself")
        await fast.tap("✅ Yes")
        await fast.tap("🧪 Test payment")
        await fast.tap("💳 Pay (test mode)")
        assert fast.screen.startswith("Payment received. Sending 100 Stars to @user400000002…")
        assert not slow_check.done() and not slow_orders.done()
        release.set()
        await asyncio.gather(slow_check, slow_orders)
        confirm, orders = slow.messages[-2:]
        assert confirm.text.startswith("Topping up @user400000001 — is this correct?")
        assert orders.text == "You have no orders yet. Send /buy to buy Stars."
        await slow.tap("✅ Yes")
        await slow.tap("🧪 Test payment")
        await slow.tap("💳 Pay (test mode)")
        # The purchase went on in the message above /orders' answer, edited step by step.
        assert slow.messages[-2].text.startswith(
            "Payment received. Sending 500 Stars to @user400000001…")

    bot.run(scenario)
    orders = {order.buyer_telegram_id: order for order in Order.objects.all()}
    assert {buyer: (order.stars, order.recipient_user_id, order.status)
            for buyer, order in orders.items()} == {
        slow_id: (500, str(slow_id), S.PAID), fast_id: (100, str(fast_id), S.PAID)}
    for order in orders.values():
        assert fulfil_order(order.pk) == S.DELIVERED
    assert TelegramUser.objects.filter(state="").count() == 2
