"""The menus' catalog, kept for CATALOG_MAX_AGE: later steps always price from the database."""

from __future__ import annotations

from decimal import Decimal

import pytest
from asgiref.sync import sync_to_async

from bots import services
from shop.models import Package

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def kept(monkeypatch):
    """A catalog kept for the whole test unless it says otherwise."""
    monkeypatch.setattr(services, "CATALOG_MAX_AGE", 3600.0)


def test_a_price_change_reaches_the_menus_once_the_kept_catalog_is_old(bot, catalog, kept, monkeypatch):
    async def scenario(session):
        chat = session.chat(400000001, "Ida", username="sandbox_ok")
        await chat.send("/start")
        assert "⭐ 500 Stars — $8.50 · Standard" in chat.screen
        await sync_to_async(Package.objects.filter(product=catalog, quantity=500).update)(
            price=Decimal("9.00"))
        await chat.send("/start")
        assert "⭐ 500 Stars — $8.50 · Standard" in chat.screen  # the menu is a moment behind
        await chat.send("/buy")
        await chat.tap("⭐ 500 · $8.50")
        assert chat.screen.startswith("500 Stars for $9.00.")  # the step prices it afresh
        monkeypatch.setattr(services, "CATALOG_MAX_AGE", 0.0)
        services.catalog_forget()  # the kept read expires
        await chat.send("/start")
        assert "⭐ 500 Stars — $9.00 · Standard" in chat.screen

    bot.run(scenario)


def test_a_package_taken_off_sale_meanwhile_is_refused_when_tapped(bot, catalog, kept):
    async def scenario(session):
        chat = session.chat(400000002, "Jo", username="sandbox_ok")
        await chat.send("/start")
        await sync_to_async(Package.objects.filter(product=catalog, quantity=500).update)(active=False)
        await chat.send("/buy")
        assert "⭐ 500 · $8.50" in chat.buttons
        answer = await chat.tap("⭐ 500 · $8.50")
        assert answer["text"] == "That is no longer on sale. Send /buy to choose again."

    bot.run(scenario)


def test_nothing_on_sale_is_kept_too_and_said_so(bot, catalog, kept):
    catalog.active = False
    catalog.save(update_fields=["active"])

    async def scenario(session):
        chat = session.chat(400000003, "Kay", username="sandbox_ok")
        await chat.send("/start")
        assert "nothing is on sale right now" in chat.screen
        await chat.send("/buy")
        assert "nothing" in chat.screen.lower()

    bot.run(scenario)


def test_start_for_a_returning_buyer_is_one_query(catalog, kept, django_assert_num_queries):
    account = services.TelegramAccount(telegram_id=400000004, first_name="Lu", language_code="en")
    services.welcome_read(account=account)  # first contact, and the catalog read
    with django_assert_num_queries(1):
        step = services.welcome_read(account=account)
    assert step.catalog is not None and step.catalog.packages


def test_a_returning_buyers_row_is_read_as_the_orm_reads_it(catalog):
    """The precompiled read (services._user_read) gives what a queryset gives, values converted."""
    from django.utils import timezone

    from bots.models import TelegramUser

    assert services._user_read(400000005) is None
    services.buyer_sync(account=services.TelegramAccount(telegram_id=400000005, first_name="Mo",
                                                         language_code="ru"))
    TelegramUser.objects.filter(telegram_id=400000005).update(
        draft={"package_id": 7}, blocked_at=timezone.now(), language="en")

    read = services._user_read(400000005)
    expected = TelegramUser.objects.get(telegram_id=400000005)
    assert read is not None and read.pk == expected.pk
    for field in TelegramUser._meta.concrete_fields:
        assert getattr(read, field.attname) == getattr(expected, field.attname), field.name
    assert read.draft == {"package_id": 7} and read.blocked_at.tzinfo is not None
    # Writing to us again clears the block, through the same read.
    buyer = services.buyer_sync(account=services.TelegramAccount(
        telegram_id=400000005, first_name="Mo", language_code="ru"))
    assert buyer.language == "en" and buyer.draft == {"package_id": 7}
    assert TelegramUser.objects.get(telegram_id=400000005).blocked_at is None
