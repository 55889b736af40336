"""Pytest fixtures: a fake Telegram Bot API over HTTP on 127.0.0.1 (fakes/telegram.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from fakes.telegram import DEFAULT_TOKEN, FakeTelegram, start_fake_telegram


@pytest.fixture
def fake_telegram() -> Iterator[FakeTelegram]:
    """A fresh fake Bot API on a free port; the bot reaches it with base_url=fake.base_url."""
    fake = start_fake_telegram(token=DEFAULT_TOKEN)
    try:
        yield fake
    finally:
        fake.stop()
