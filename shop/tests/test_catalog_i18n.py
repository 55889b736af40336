"""Catalog texts in Russian: per-language fields, English where a translation is empty, the admin."""

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import translation

from shop.demo import demo_catalog_load
from shop.models import Package, Product
from shop.tests.conftest import Buyer, page

RU_HEADERS = {"HTTP_ACCEPT_LANGUAGE": "ru-RU,ru;q=0.9"}
RUSSIAN_DESCRIPTION = "Звёздами Telegram платят за цифровые товары"
ENGLISH_DESCRIPTION = "Telegram Stars pay for digital goods in bots and mini apps"


@pytest.fixture
def ru_buyer(db) -> Buyer:
    return Buyer(Client(**RU_HEADERS))


def test_localized_picks_the_active_language_and_falls_back_to_english(standard):
    with translation.override("ru"):
        assert standard.localized("name") == "Стандарт"
        assert standard.product.localized("name") == "Звёзды Telegram"
        standard.name_ru = ""
        assert standard.localized("name") == "Standard"
    with translation.override("en"):
        assert standard.product.localized("name") == "Telegram Stars"
        assert standard.product.localized("description").startswith(ENGLISH_DESCRIPTION)


def test_each_language_reads_its_own_catalog_texts(client, catalog):
    russian = page(Client(**RU_HEADERS).get(reverse("shop:catalog")))
    english = page(client.get(reverse("shop:catalog")))

    assert "<h1>Купить Звёзды Telegram</h1>" in russian
    assert RUSSIAN_DESCRIPTION in russian
    assert '<span class="package-name">Стандарт</span>' in russian
    assert '<span class="package-name">Стартовый</span>' in russian
    assert '<span class="package-name">Standard</span>' not in russian
    assert ENGLISH_DESCRIPTION not in russian
    assert "<h1>Buy Telegram Stars</h1>" in english
    assert ENGLISH_DESCRIPTION in english
    assert '<span class="package-name">Standard</span>' in english
    assert "Стандарт" not in english and RUSSIAN_DESCRIPTION not in english


def test_an_empty_russian_text_shows_the_english_one(catalog):
    Product.objects.filter(pk=catalog.pk).update(name_ru="", description_ru="")
    Package.objects.filter(product=catalog, name="Standard").update(name_ru="")

    html = page(Client(**RU_HEADERS).get(reverse("shop:catalog")))

    assert "<h1>Купить Telegram Stars</h1>" in html
    assert ENGLISH_DESCRIPTION in html
    assert '<span class="package-name">Standard</span>' in html
    assert '<span class="package-name">Малый</span>' in html


def test_summary_on_the_recipient_and_confirm_pages_names_the_package_in_russian(
        ru_buyer, standard, supplier):
    ru_buyer.choose_package(standard)
    recipient_page = page(ru_buyer.client.get(reverse("shop:recipient")))
    ru_buyer.enter_recipient("@sandbox_ok")
    confirm_page = page(ru_buyer.confirm_page())

    assert "<dt>Пакет</dt><dd>Стандарт</dd>" in recipient_page
    assert "<dt>Пакет</dt><dd>Стандарт</dd>" in confirm_page
    # The order keeps the English name it was sold under, for staff and reports.
    order = ru_buyer.place(standard)
    assert order.package_name == "Standard"


def test_demo_setup_fills_russian_texts_but_keeps_an_operators_own(catalog):
    Product.objects.filter(pk=catalog.pk).update(name_ru="Телеграм-звёзды")
    Package.objects.filter(product=catalog, name="Standard").update(name_ru="Обычный")
    Package.objects.filter(product=catalog, name="Small").update(name_ru="")

    product = demo_catalog_load()

    assert product.name_ru == "Телеграм-звёзды"
    assert product.description_ru.startswith(RUSSIAN_DESCRIPTION)
    names = dict(product.packages.values_list("name", "name_ru"))
    assert names["Standard"] == "Обычный"
    assert names["Small"] == "Малый"


def test_admin_edits_russian_texts_beside_the_english_ones(admin_client, catalog):
    product_page = page(admin_client.get(reverse("admin:shop_product_change", args=[catalog.pk])))
    package_list = page(admin_client.get(reverse("admin:shop_package_changelist")))

    assert 'name="name_ru"' in product_page and 'name="description_ru"' in product_page
    assert product_page.index('name="name"') < product_page.index('name="name_ru"')
    # The packages inline: a Russian name on every row.
    assert 'name="packages-0-name_ru"' in product_page
    assert "Стандарт" in product_page
    assert "Name (Russian)" in package_list and "Стандарт" in package_list

