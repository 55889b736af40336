"""The bot and shop.pricing: the margin guard on its keyboards and buttons, and promo codes."""

from __future__ import annotations

from decimal import Decimal

import pytest
from asgiref.sync import sync_to_async

from bots.models import TelegramUser
from orders.models import Order
from orders.services import order_create
from orders.suppliers.base import RecipientInfo
from shop.models import PromoCode, PromoRedemption, Supplier

pytestmark = pytest.mark.django_db(transaction=True)

D = Decimal
CRYPTO = "Crypto (USDT, TON, BTC via Crypto Pay)"


@pytest.fixture
def guarded(settings):
    """The sandbox (0%) and Crypto Pay at the demo's 3%, which sells Standard at −0.01."""
    settings.PAYMENT_METHODS = {
        **settings.PAYMENT_METHODS,
        "sandbox": {**settings.PAYMENT_METHODS["sandbox"], "enabled": True, "fee_percent": D("0")},
        "cryptopay": {"label": CRYPTO, "fee_percent": D("3"), "channels": ["web", "bot"],
                      "enabled": True, "quote_minutes": 15},
    }
    return settings


async def _to_payment(chat, package: str = "⭐ 500 · $8.50") -> str:
    """/buy → a package → myself → yes; returns the purchase's flow token."""
    await chat.send("/buy")
    flow = chat.last.buttons[0]["callback_data"].split(":")[1]
    await chat.tap(package)
    await chat.tap("👤 Myself")
    await chat.tap("✅ Yes")
    return flow


def test_the_keyboard_leaves_out_a_method_under_the_minimum_and_refuses_its_stale_button(bot, guarded):
    async def scenario(session):
        chat = session.chat(300000001, "Ada", username="sandbox_ok")
        flow = await _to_payment(chat)
        assert chat.buttons == ["🧪 Test payment", "🏷 Promo code", "✏️ Change recipient", "✖ Cancel"]
        # A button from before the fee went up, or a forged one.
        answer = await chat.press(f"f:{flow}:method:cryptopay")
        assert answer["text"] == "That payment method is not available for this amount. Choose another one."
        # Small (2.00 − 1.65 − 0.06) still leaves a margin with Crypto Pay.
        await chat.send("/buy")
        await chat.tap("⭐ 100 · $2.00")
        await chat.tap("👤 Myself")
        await chat.tap("✅ Yes")
        assert CRYPTO in chat.buttons

    bot.run(scenario)
    assert not Order.objects.exists()


def test_packages_sold_under_cost_are_not_on_the_keyboard_and_their_buttons_are_refused(bot, guarded, catalog):
    # Without its volume prices the supplier's 0.0165 a Star puts Large (16.00 for 16.50) under cost.
    Supplier.objects.get(code="sandbox").volume_prices.all().delete()
    large = catalog.packages.get(name="Large")

    async def scenario(session):
        chat = session.chat(300000002, "Bo")
        await chat.send("/buy")
        flow = chat.last.buttons[0]["callback_data"].split(":")[1]
        assert "⭐ 1,000 · $16.00" not in chat.buttons and "⭐ 500 · $8.50" in chat.buttons
        answer = await chat.press(f"f:{flow}:pkg:{large.pk}")
        assert answer["text"] == "That is no longer on sale. Send /buy to choose again."

    bot.run(scenario)
    assert TelegramUser.objects.get(telegram_id=300000002).state == "choosing_amount"


def test_no_method_left_for_the_amount_says_so(bot, guarded):
    async def scenario(session):
        chat = session.chat(300000003, "Cy", username="sandbox_ok")
        await chat.send("/buy")
        await chat.tap("⭐ 500 · $8.50")
        await chat.tap("👤 Myself")
        # The sandbox is switched off while the buyer looks at the confirmation.
        guarded.PAYMENT_METHODS = {**guarded.PAYMENT_METHODS,
                                   "sandbox": {**guarded.PAYMENT_METHODS["sandbox"], "enabled": False}}
        await chat.tap("✅ Yes")
        assert chat.screen.endswith("Sorry, this amount can't be paid for right now. Send /buy to "
                                    "choose another amount.")
        assert chat.buttons == ["✏️ Change recipient", "✖ Cancel"]

    bot.run(scenario)


def test_a_promo_code_step_before_paying(bot, guarded):
    PromoCode.objects.create(code="TENCENTS", kind=PromoCode.Kind.FIXED, value=D("0.10"))

    async def scenario(session):
        chat = session.chat(300000004, "Di", username="sandbox_ok")
        await _to_payment(chat)
        await chat.tap("🏷 Promo code")
        assert chat.screen == "Send your promo code."
        await chat.send("nope")
        assert chat.screen.startswith("There is no such promo code. Check it and try again.")
        assert "🏷 Promo code" in chat.buttons
        await chat.tap("🏷 Promo code")
        await chat.send(" tencents ")
        assert "Promo code TENCENTS: −$0.10" in chat.screen and "To pay: $8.40" in chat.screen
        assert chat.buttons[:2] == ["🧪 Test payment · $8.40", "🏷 Remove promo code"]
        await chat.tap("🧪 Test payment · $8.40")

    bot.run(scenario)
    order = Order.objects.get()
    assert order.price == D("8.40")
    redemption = PromoRedemption.objects.get(order=order)
    assert (redemption.code, redemption.discount, redemption.buyer_telegram_id) == (
        "TENCENTS", D("0.10"), 300000004)


def test_a_capped_discount_is_explained(bot, guarded):
    PromoCode.objects.create(code="SAVE10", kind=PromoCode.Kind.PERCENT, value=D("10"))

    async def scenario(session):
        chat = session.chat(300000005, "Ed", username="sandbox_ok")
        await _to_payment(chat)
        await chat.tap("🏷 Promo code")
        await chat.send("SAVE10")
        assert "each button shows its price" in chat.screen
        # 10% would be 7.65; 8.26 is the lowest price that leaves the minimum 0.01 over 8.25.
        assert chat.buttons[0] == "🧪 Test payment · $8.26"
        await chat.tap("🧪 Test payment · $8.26")

    bot.run(scenario)
    assert Order.objects.get().price == D("8.26")


def test_a_code_used_up_meanwhile_is_dropped_and_nothing_is_placed(bot, guarded, catalog):
    PromoCode.objects.create(code="LAST", kind=PromoCode.Kind.FIXED, value=D("0.10"), max_uses=1)

    def someone_else_uses_it() -> None:
        order_create(channel="bot", product=catalog, recipient_input="@sandbox_ok",
                     recipient=RecipientInfo(user_id="100000001", username="@sandbox_ok"),
                     payment_method="sandbox", quantity=500, promo_code="LAST",
                     buyer_telegram_id=1)

    async def scenario(session):
        chat = session.chat(300000006, "Flo", username="sandbox_ok")
        await _to_payment(chat)
        await chat.tap("🏷 Promo code")
        await chat.send("LAST")
        await sync_to_async(someone_else_uses_it)()
        await chat.tap("🧪 Test payment · $8.40")
        assert chat.screen.startswith("This promo code has been used up.")
        assert "The code was removed" in chat.screen

    bot.run(scenario)
    assert Order.objects.filter(buyer_telegram_id=300000006).count() == 0
    user = TelegramUser.objects.get(telegram_id=300000006)
    assert user.state == "choosing_payment" and "promo_code" not in user.draft
