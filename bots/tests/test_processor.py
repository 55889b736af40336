"""PerUserUpdateProcessor: one user's updates in order, different users side by side, a global cap."""

from __future__ import annotations

import asyncio

import pytest
from telegram import Update

from bots.application import application_build
from bots.processor import PerUserUpdateProcessor


def _update(update_id: int, user_id: int) -> Update:
    user = {"id": user_id, "is_bot": False, "first_name": "U"}
    return Update.de_json({"update_id": update_id, "message": {
        "message_id": update_id, "date": 0, "from": user,
        "chat": {"id": user_id, "type": "private", "first_name": "U"}, "text": "hi",
    }}, None)


class Log:
    """Records when each piece of work starts and ends, and the most running at once."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str]] = []
        self.running = 0
        self.most = 0

    async def work(self, name: str, seconds: float = 0.0) -> None:
        self.events.append(("start", name))
        self.running += 1
        self.most = max(self.most, self.running)
        await asyncio.sleep(seconds)
        self.running -= 1
        self.events.append(("end", name))

    def at(self, kind: str, name: str) -> int:
        return self.events.index((kind, name))


def test_one_users_updates_run_in_order_while_others_go_ahead():
    async def scenario() -> Log:
        log = Log()
        async with PerUserUpdateProcessor(max_running=8) as processor:
            await asyncio.gather(
                processor.process_update(_update(1, 1), log.work("a1", 0.1)),
                processor.process_update(_update(2, 1), log.work("a2")),
                processor.process_update(_update(3, 2), log.work("b1", 0.02)),
                processor.process_update(_update(4, 1), log.work("a3")),
                processor.process_update(_update(5, 2), log.work("b2")),
            )
            assert not processor._locks  # nothing kept for users with nothing pending
        return log

    log = asyncio.run(scenario())
    assert log.at("end", "a1") < log.at("start", "a2") < log.at("end", "a2") < log.at("start", "a3")
    assert log.at("end", "b1") < log.at("start", "b2")
    assert log.at("end", "b2") < log.at("end", "a1")  # user 2 never waited for user 1


def test_running_handlers_are_capped_without_one_users_backlog_starving_others():
    async def scenario() -> Log:
        log = Log()
        async with PerUserUpdateProcessor(max_running=2) as processor:
            backlog = [processor.process_update(_update(n, 1), log.work(f"a{n}", 0.02))
                       for n in range(1, 7)]
            others = [processor.process_update(_update(10 + n, 10 + n), log.work(f"u{n}", 0.02))
                      for n in range(1, 4)]
            await asyncio.gather(*backlog, *others)
        return log

    log = asyncio.run(scenario())
    assert log.most == 2
    # Queued behind their own lock, user 1's backlog holds at most one running slot.
    assert max(log.at("end", f"u{n}") for n in range(1, 4)) < log.at("end", "a4")


def test_the_bot_processes_updates_concurrently():
    application = application_build(token="123:abc")
    assert isinstance(application.update_processor, PerUserUpdateProcessor)
    assert application.concurrent_updates > 1


def test_running_cap_must_be_positive():
    with pytest.raises(ValueError):
        PerUserUpdateProcessor(max_running=0)
