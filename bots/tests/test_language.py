"""English and Russian: chosen from the Telegram app's language, overridden with /language."""

from __future__ import annotations

import pytest

from bots.models import TelegramUser
from bots.services import language_for
from orders.models import Order
from orders.tasks import fulfil_order

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.mark.parametrize(("choice", "language_code", "expected"), [
    ("", "ru", "ru"), ("", "ru-RU", "ru"), ("", "RU", "ru"), ("", "en", "en"), ("", "uk", "en"),
    ("", "", "en"), ("en", "ru", "en"), ("ru", "en", "ru"), ("de", "ru", "ru"),
])
def test_language_for(choice, language_code, expected):
    assert language_for(choice=choice, language_code=language_code) == expected


def test_a_russian_telegram_app_gets_russian_all_the_way(bot, fulfilment_jobs):
    async def scenario(session):
        chat = session.chat(100000001, "Маша", username="sandbox_ok", language_code="ru")
        await chat.send("/start")
        assert chat.screen.startswith("Привет, Маша! ⭐\n\nЗдесь можно купить Telegram Stars")
        assert "Цены:" in chat.screen and chat.buttons == ["⭐ Купить звёзды"]
        await chat.send("/buy")
        assert chat.screen == "Сколько звёзд вы хотите?"
        assert "Другое количество" in chat.buttons and "✖ Отмена" in chat.buttons
        await chat.tap("⭐ 500 · 8,50 $")
        assert chat.screen == "500 звёзд за 8,50 $.\n\nКому их отправить?"
        await chat.tap("👤 Себе")
        assert chat.screen == "Пополняем @sandbox_ok — всё верно?\n\n500 звёзд за 8,50 $."
        await chat.tap("✅ Да")
        assert chat.screen.endswith("Как вы хотите оплатить?")
        await chat.tap("🧪 Тестовая оплата")
        assert chat.screen.startswith("Заказ #ORD-")
        await chat.tap("💳 Оплатить (тест)")
        assert not chat.screen.startswith("Payment received")  # orders.display, in Russian
        assert chat.screen.endswith("Мы напишем вам здесь, когда они придут.")
        answer = await chat.press("f:deadbeef:yes")
        assert answer["text"] == "Эта кнопка больше не действует."
        await chat.sticker()
        assert chat.screen.startswith("Я понимаю только текст и кнопки.")
        return chat

    chat = bot.run(scenario)
    fulfil_order(Order.objects.get().pk)
    assert chat.screen.startswith("✅ 500 звёзд")
    assert chat.screen.endswith("Спасибо! Отправьте /buy, чтобы купить ещё.")


def test_language_command_overrides_the_app_language_until_reset(bot, fulfilment_jobs):
    async def scenario(session):
        chat = session.chat(100000001, "Маша", username="sandbox_ok", language_code="ru")
        await chat.send("/language")
        assert chat.screen == "Выберите язык:"
        assert chat.buttons == ["English", "Русский", "Язык приложения Telegram"]
        await chat.tap("English")
        assert chat.screen == "Done: I'll answer in this language."
        await chat.send("/buy")
        assert chat.screen == "How many Stars would you like?"
        await chat.tap("⭐ 500 · $8.50")
        await chat.tap("👤 Myself")
        await chat.tap("✅ Yes")
        await chat.tap("🧪 Test payment")
        await chat.tap("💳 Pay (test mode)")
        return chat

    chat = bot.run(scenario)
    assert TelegramUser.objects.get(telegram_id=100000001).language == "en"
    fulfil_order(Order.objects.get().pk)
    assert chat.screen.endswith("Thank you! Send /buy to buy more.")  # the notice follows the choice

    async def back_to_automatic(session):
        chat = session.chat(100000001, "Маша", username="sandbox_ok", language_code="ru")
        await chat.send("/language")
        assert chat.buttons == ["English", "Русский", "Telegram app's language"]
        await chat.tap("Telegram app's language")
        assert chat.screen == "Готово: буду отвечать на языке вашего приложения Telegram."
        await chat.send("/help")
        assert chat.screen.startswith("Как это работает:")

    bot.run(back_to_automatic)
    assert TelegramUser.objects.get(telegram_id=100000001).language == ""


def test_an_english_app_can_choose_russian(bot):
    async def scenario(session):
        chat = session.chat(800000001, "John", language_code="en")
        await chat.send("/language")
        await chat.tap("Русский")
        assert chat.screen == "Готово: буду отвечать на этом языке."
        await chat.send("/orders")
        assert chat.screen == "У вас пока нет заказов. Отправьте /buy, чтобы купить звёзды."
        await chat.send("/cancel")
        assert chat.screen == "Отменять нечего. Отправьте /buy, чтобы купить звёзды."

    bot.run(scenario)


def test_the_error_message_follows_the_app_language(bot, monkeypatch):
    def broken(**kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr("bots.services.buyer_orders", broken)

    async def scenario(session):
        chat = session.chat(800000002, "Пётр", language_code="ru")
        await chat.send("/orders")
        return chat.screen

    assert bot.run(scenario, errors_expected=True).startswith("Извините, у нас что-то пошло не так.")
