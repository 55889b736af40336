"""The bot's recipient step under a flood: limited per Telegram user, no supplier call once limited."""

from __future__ import annotations


from bots.models import TelegramUser
from orders.models import Order

LIMITED = "Too many account checks. Please wait a few minutes and try again, or /cancel."


def test_typed_recipients_are_limited_per_telegram_user(bot, sandbox_supplier, validate_calls,
                                                        settings):
    settings.RECIPIENT_LOOKUP_RATE_PER_TELEGRAM_USER = "3/minute"

    async def scenario(session):
        chat, other = session.chat(200000101), session.chat(200000102)
        for buyer in (chat, other):
            await buyer.send("/buy")
            await buyer.tap("⭐ 50 · $1.00")
            await buyer.tap("🎁 Someone else")
        # Every lookup counts: malformed, and answered from the cache of supplier answers too.
        for name in ("@sandbox_invalid", "12ab", "@sandbox_invalid"):
            await chat.send(name)
            assert chat.screen != LIMITED
        # Valid, unknown or malformed: once limited, the same answer and no supplier call.
        for name in ("@sandbox_ok", "@sandbox_invalid", "12ab"):
            await chat.send(name)
            assert chat.screen == LIMITED
        # Another buyer is not limited by this one.
        await other.send("@sandbox_ok")
        assert other.screen.startswith("Topping up @sandbox_ok — is this correct?")

    bot.run(scenario)
    assert validate_calls == ["@sandbox_invalid", "@sandbox_ok"]
    assert TelegramUser.objects.get(telegram_id=200000101).state == "typing_recipient"
    assert not Order.objects.exists()


def test_the_myself_button_counts_too(bot, sandbox_supplier, validate_calls, settings):
    settings.RECIPIENT_LOOKUP_RATE_PER_TELEGRAM_USER = "1/minute"

    async def scenario(session):
        chat = session.chat(200000103, "Limited")
        await chat.send("/buy")
        await chat.tap("⭐ 50 · $1.00")
        await chat.tap("🎁 Someone else")
        await chat.send("@sandbox_invalid")
        await chat.send("/buy")
        await chat.tap("⭐ 50 · $1.00")
        await chat.tap("👤 Myself")
        assert chat.messages[-1].text == LIMITED

    bot.run(scenario)
    assert validate_calls == ["@sandbox_invalid"]


def test_limited_answer_in_russian(bot, sandbox_supplier, settings):
    settings.RECIPIENT_LOOKUP_RATE_PER_TELEGRAM_USER = "0/minute"

    async def scenario(session):
        chat = session.chat(200000104, language_code="ru")
        await chat.send("/buy")
        await chat.tap(chat.buttons[0])
        await chat.tap(chat.buttons[1])
        await chat.send("@sandbox_ok")
        assert chat.screen.startswith("Слишком много проверок аккаунтов.")

    bot.run(scenario)
