"""Stock test set-up: the sandbox supplier, the fake Bot API as the operators' chat, orders."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from fakes.telegram import FakeTelegram
from orders.tests.conftest import catalog, make_order  # noqa: F401  (fixtures)

OPERATORS_CHAT = -1001234567890


@pytest.fixture
def sandbox_supplier_options() -> dict[str, Any]:
    return {"api_key": "sandbox-key", "hang_seconds": 3.0, "slow_seconds": 0.3,
            "balance": Decimal("1000"), "cost_per_star": Decimal("0.0165")}


@pytest.fixture
def q_sync(monkeypatch: pytest.MonkeyPatch) -> None:
    """Run django-q2 tasks in-process when enqueued (django_q reads Conf.SYNC on each async_task)."""
    from django_q.conf import Conf

    monkeypatch.setattr(Conf, "SYNC", True)


@pytest.fixture
def fulfilment_jobs(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Fulfilment jobs recorded instead of run: the tests look at what was resumed."""
    jobs: list[int] = []
    monkeypatch.setattr("orders.queue.enqueue_fulfilment", jobs.append)
    return jobs


@pytest.fixture
def operators_chat(settings: Any, fake_telegram: FakeTelegram, q_sync: None) -> FakeTelegram:
    """Alerts on: the bot's token and the operators' group chat at the fake Bot API."""
    settings.TELEGRAM_BOT_TOKEN = fake_telegram.token
    settings.TELEGRAM_API_BASE_URL = fake_telegram.base_url
    settings.TELEGRAM_API_FILE_URL = f"{fake_telegram.url}/file/bot"
    settings.OPERATORS_CHAT_ID = str(OPERATORS_CHAT)
    fake_telegram.user(OPERATORS_CHAT, "Operators")  # the bot is a member of the group
    return fake_telegram
