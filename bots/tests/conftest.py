"""Bot test set-up: the real Application against the fake Bot API, the sandbox supplier, a chat driver.

Scenarios run in `asyncio.run` inside sync tests; the bot reaches the database only through
its own sync_to_async calls, so tests that drive it use transactional databases.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from decimal import Decimal
from typing import Any, TypeVar

import pytest
from asgiref.sync import sync_to_async
from django.db import connections
from telegram import Update
from telegram.ext import Application, ContextTypes

from bots.application import application_build
from bots.database import database_threads_stop
from bots.runtime import webhook_runtime_stop
from bots.services import catalog_forget
from fakes.telegram import ChatMessage, FakeTelegram, FakeUser
from shop.demo import demo_catalog_load
from shop.models import Product

T = TypeVar("T")


@pytest.fixture
def sandbox_supplier_options() -> dict[str, Any]:
    """Quick outcomes: @sandbox_fail fails 0.3 s after the top-up."""
    return {
        "api_key": "sandbox-key",
        "hang_seconds": 3.0,
        "slow_seconds": 0.3,
        "balance": Decimal("10000"),
        "cost_per_star": Decimal("0.0165"),
    }


@pytest.fixture
def bot_settings(settings, fake_telegram: FakeTelegram, sandbox_supplier) -> FakeTelegram:
    """The bot pointed at the fake Bot API, buyer notices on, the supplier at the sandbox."""
    settings.TELEGRAM_BOT_TOKEN = fake_telegram.token
    settings.TELEGRAM_API_BASE_URL = fake_telegram.base_url
    settings.TELEGRAM_API_FILE_URL = f"{fake_telegram.url}/file/bot"
    settings.ORDER_NOTICE_TASKS = {"bot": "bots.tasks.order_notify"}
    settings.SUPPLIER_CODE = "sandbox"
    settings.SUPPLIER_BASE_URL = sandbox_supplier.url
    settings.SUPPLIER_API_KEY = sandbox_supplier.api_key
    settings.SUPPLIER_TIMEOUT = 2.0
    settings.FULFILMENT_POLL_FIRST_DELAY = 0.1
    settings.FULFILMENT_UNKNOWN_GRACE_SECONDS = 0.5
    return fake_telegram


@pytest.fixture
def catalog(transactional_db) -> Product:
    return demo_catalog_load()


@pytest.fixture
def q_sync(monkeypatch) -> None:
    """Run django-q2 tasks in-process when enqueued (django_q reads Conf.SYNC on each async_task)."""
    from django_q.conf import Conf

    monkeypatch.setattr(Conf, "SYNC", True)


@pytest.fixture
def fulfilment_jobs(monkeypatch, q_sync) -> list[int]:
    """Hold fulfilment jobs for the test to run (the real job, later); other tasks run at once.

    Run inline, the job would deliver inside the Pay tap's handler, before the bot answers it.
    """
    jobs: list[int] = []
    monkeypatch.setattr("orders.queue.enqueue_fulfilment", jobs.append)
    return jobs


@pytest.fixture(autouse=True)
def stop_database_threads() -> Iterator[None]:
    """Close the bot's kept database connections after each test, before its database goes.

    Also the one asgiref's thread-sensitive thread holds when a scenario's own set-up used
    sync_to_async: nothing in the bot closes that one any more.
    """
    yield
    database_threads_stop()
    asyncio.run(sync_to_async(connections.close_all)())


@pytest.fixture(autouse=True)
def fresh_catalog() -> None:
    """Each test's menus show its own catalog, not one an earlier test's bot kept."""
    catalog_forget()


@pytest.fixture
def stop_webhook_runtime() -> Iterator[None]:
    yield
    webhook_runtime_stop()


class Chat:
    """One Telegram user talking to the bot: sends what Telegram would send, reads what they see."""

    def __init__(self, session: Session, user: FakeUser) -> None:
        self.session = session
        self.user = user
        self.fake = session.fake
        self.id = user.id

    async def send(self, text: str) -> None:
        await self.session.feed(self.user.text(text))

    async def sticker(self) -> None:
        await self.session.feed(self.user.sticker())

    async def photo(self) -> None:
        await self.session.feed(self.user.photo(caption="look"))

    async def tap(self, label: str) -> dict[str, Any]:
        """Tap a button by its label; returns how the bot answered the callback query."""
        return await self._press(self.user.tap(label))

    async def press(self, data: str, message: ChatMessage | None = None) -> dict[str, Any]:
        """Send a callback query with any data (a stale or forged button)."""
        return await self._press(self.user.callback(data, message))

    async def _press(self, update: dict[str, Any]) -> dict[str, Any]:
        await self.session.feed(update)
        answer = self.fake.answered(update["callback_query"]["id"])
        assert answer is not None, f"callback query {update['callback_query']['data']!r} not answered"
        return answer

    @property
    def messages(self) -> list[ChatMessage]:
        return self.fake.bot_messages(self.id)

    @property
    def last(self) -> ChatMessage:
        return self.fake.last_bot_message(self.id)

    @property
    def screen(self) -> str:
        """The text of the bot's newest message."""
        return self.last.text or ""

    @property
    def buttons(self) -> list[str]:
        return self.last.button_texts


class Session:
    """A running Application and the chats talking to it."""

    def __init__(self, application: Application, fake: FakeTelegram) -> None:
        self.application = application
        self.fake = fake

    def chat(self, user_id: int, first_name: str = "Ann", *, username: str | None = None,
             language_code: str | None = "en") -> Chat:
        return Chat(self, self.fake.user(user_id, first_name, username=username,
                                         language_code=language_code))

    async def feed(self, update_data: dict[str, Any]) -> None:
        """Hand an update to the application the way its update fetcher does."""
        application = self.application
        update = Update.de_json(update_data, application.bot)
        await application.update_processor.process_update(update, application.process_update(update))


class BotHarness:
    """Runs scenarios against the real Application and fails on errors handlers raised."""

    def __init__(self, fake: FakeTelegram) -> None:
        self.fake = fake
        self.errors: list[BaseException] = []

    async def _record_error(self, update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
        assert context.error is not None
        self.errors.append(context.error)

    def run(self, scenario: Callable[[Session], Awaitable[T]], *, errors_expected: bool = False) -> T:
        async def main() -> T:
            application = application_build()
            application.add_error_handler(self._record_error)
            async with application:
                return await scenario(Session(application, self.fake))

        result = asyncio.run(main())
        if not errors_expected:
            assert not self.errors, f"handlers raised: {self.errors!r}"
        assert not self.fake.unanswered_queries(), "callback queries left unanswered"
        return result


@pytest.fixture
def bot(bot_settings: FakeTelegram, catalog: Product) -> BotHarness:
    return BotHarness(bot_settings)
