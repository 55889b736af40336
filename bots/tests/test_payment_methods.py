"""The payment step lists every method enabled for the bot; a provider's invoice gets a pay link."""

from __future__ import annotations

from decimal import Decimal

import pytest

import orders.payments
from fakes.cryptopay_fixtures import FakeCryptoPay, cryptopay_fake, cryptopay_fake_options  # noqa: F401
from orders.models import Order
from orders.models import OrderStatus as S
from orders.payments.cryptopay import CryptoPayProvider

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def cryptopay(cryptopay_fake: FakeCryptoPay, settings, monkeypatch) -> FakeCryptoPay:
    """Crypto Pay enabled for the bot beside the sandbox, pointed at its fake."""
    monkeypatch.setitem(orders.payments._PROVIDERS, "cryptopay", CryptoPayProvider)
    settings.PAYMENT_METHODS = {
        **settings.PAYMENT_METHODS,
        # 1%, not 3%: at 3% Standard sells under cost and the margin guard leaves Crypto Pay out.
        "cryptopay": {"label": "Crypto (USDT, TON, BTC via Crypto Pay)", "fee_percent": Decimal("1"),
                      "channels": ["web", "bot"], "enabled": True, "quote_minutes": 15},
    }
    settings.CRYPTOPAY_TOKEN = cryptopay_fake.token
    settings.CRYPTOPAY_NETWORK = "testnet"
    settings.CRYPTOPAY_BASE_URL = cryptopay_fake.url
    settings.CRYPTOPAY_TIMEOUT = 5.0
    return cryptopay_fake


def test_a_provider_method_opens_its_invoice_with_a_pay_button(bot, cryptopay):
    async def scenario(session):
        chat = session.chat(900000001, "Ivy")
        await chat.send("/buy")
        await chat.tap("⭐ 500 · $8.50")
        await chat.tap("👤 Myself")
        await chat.tap("✅ Yes")
        assert chat.buttons == ["🧪 Test payment", "Crypto (USDT, TON, BTC via Crypto Pay)",
                                "🏷 Promo code", "✏️ Change recipient", "✖ Cancel"]
        await chat.tap("Crypto (USDT, TON, BTC via Crypto Pay)")
        return chat

    chat = bot.run(scenario)
    order = Order.objects.get()
    [remote] = cryptopay.invoices()
    assert (order.payment_method, order.status) == ("cryptopay", S.AWAITING_PAYMENT)
    assert chat.screen.splitlines()[0] == f"Order #{order.reference}"
    assert "To pay: $8.50" in chat.screen and "Test mode" not in chat.screen
    pay = chat.last.buttons[0]
    assert pay["text"] == "💳 Pay" and pay["url"] == remote["bot_invoice_url"]
    # The fake runs on 127.0.0.1, so the demo's simulate control is offered too.
    assert chat.buttons == ["💳 Pay", "🧪 Simulate payment (demo)", "✖ Cancel order"]


def test_without_methods_the_buyer_is_told(bot, settings):
    settings.PAYMENT_METHODS = {code: {**conf, "enabled": False}
                                for code, conf in settings.PAYMENT_METHODS.items()}

    async def scenario(session):
        chat = session.chat(900000002, "Jo")
        await chat.send("/buy")
        await chat.tap("⭐ 50 · $1.00")
        await chat.tap("👤 Myself")
        await chat.tap("✅ Yes")
        assert chat.screen.endswith("Sorry, payments are not available right now. Please try again later.")
        assert chat.buttons == ["✏️ Change recipient", "✖ Cancel"]

    bot.run(scenario)
