"""Catalog texts in the bot: package names and the product description in the buyer's language."""

from __future__ import annotations

import pytest

from shop.models import Package, Product

pytestmark = pytest.mark.django_db(transaction=True)

RUSSIAN_DESCRIPTION = "Звёздами Telegram платят за цифровые товары"
ENGLISH_DESCRIPTION = "Telegram Stars pay for digital goods in bots and mini apps"


def _start_screen(bot, language_code: str) -> str:
    async def scenario(session):
        chat = session.chat(100000001, "Маша", username="sandbox_ok", language_code=language_code)
        await chat.send("/start")
        return chat.screen

    return bot.run(scenario)


def test_russian_buyers_read_russian_package_names_and_description(bot):
    screen = _start_screen(bot, "ru")

    assert "⭐ 500 звёзд — 8,50 $ · Стандарт" in screen
    assert "⭐ 5\xa0000 звёзд — 70,00 $ · Ультра" in screen
    assert RUSSIAN_DESCRIPTION in screen
    assert "Standard" not in screen and ENGLISH_DESCRIPTION not in screen


def test_english_buyers_read_the_english_texts(bot):
    screen = _start_screen(bot, "en")

    assert "⭐ 500 Stars — $8.50 · Standard" in screen
    assert ENGLISH_DESCRIPTION in screen
    assert "Стандарт" not in screen and RUSSIAN_DESCRIPTION not in screen


def test_an_empty_russian_text_falls_back_to_english(bot, catalog):
    Package.objects.filter(product=catalog, name="Standard").update(name_ru="")
    Product.objects.filter(pk=catalog.pk).update(description_ru="")

    screen = _start_screen(bot, "ru")

    assert "⭐ 500 звёзд — 8,50 $ · Standard" in screen
    assert "⭐ 1\xa0000 звёзд — 16,00 $ · Большой" in screen
    assert ENGLISH_DESCRIPTION in screen
