"""The bot's database threads: steps run side by side, each thread keeps its connection."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from django.db import connection, connections

from bots import database
from bots.database import DatabaseThreads
from bots.handlers import db
from bots.models import TelegramUser

pytestmark = pytest.mark.usefixtures("transactional_db")


@pytest.fixture
def threads() -> Iterator[DatabaseThreads]:
    executor = DatabaseThreads(size=1)
    yield executor
    executor.shutdown()


def _wrapper_and_raw() -> tuple[Any, Any]:
    """This thread's connection wrapper and the DB-API connection under it, after a query."""
    TelegramUser.objects.exists()
    wrapper = connections["default"]
    return wrapper, wrapper.connection


def test_steps_run_side_by_side() -> None:
    executor = DatabaseThreads(size=3)
    barrier = threading.Barrier(3, timeout=10)

    def step() -> str:
        TelegramUser.objects.exists()
        barrier.wait()  # passes only if three steps are running at once
        return threading.current_thread().name

    try:
        names = {future.result(15) for future in [executor.submit(step) for _ in range(3)]}
    finally:
        executor.shutdown()
    assert len(names) == 3


@pytest.fixture
def site_closes_per_request(monkeypatch) -> None:
    """DATABASE_CONN_MAX_AGE=0: the site closes its connection after every request."""
    monkeypatch.setitem(connections["default"].settings_dict, "CONN_MAX_AGE", 0)


@pytest.mark.usefixtures("site_closes_per_request")
def test_a_thread_keeps_its_connection_between_steps(threads: DatabaseThreads, settings) -> None:
    wrapper, first = threads.submit(_wrapper_and_raw).result(10)
    _wrapper, second = threads.submit(_wrapper_and_raw).result(10)
    assert first is not None and second is first
    threads.shutdown()
    assert wrapper.connection is None  # closed when the thread ended


@pytest.mark.usefixtures("site_closes_per_request")
def test_an_old_connection_is_replaced(threads: DatabaseThreads, monkeypatch) -> None:
    monkeypatch.setattr(database, "CONNECTION_MAX_AGE", 0.0)
    _wrapper, first = threads.submit(_wrapper_and_raw).result(10)
    _wrapper, second = threads.submit(_wrapper_and_raw).result(10)
    assert second is not first


def test_a_step_that_leaves_a_transaction_open_loses_its_connection(threads: DatabaseThreads) -> None:
    def leave_open() -> Any:
        connection.set_autocommit(False)
        TelegramUser.objects.exists()
        return connections["default"]

    wrapper = threads.submit(leave_open).result(10)
    assert wrapper.connection is None
    _wrapper, raw = threads.submit(_wrapper_and_raw).result(10)
    assert raw is not None and _wrapper.get_autocommit()


def test_a_broken_connection_is_dropped_after_the_step(threads: DatabaseThreads, monkeypatch) -> None:
    broken: list[Any] = []

    def fail() -> None:
        TelegramUser.objects.exists()
        wrapper = connections["default"]
        broken.append(wrapper.connection)
        wrapper.errors_occurred = True  # as a database error outside atomic() leaves it
        monkeypatch.setattr(wrapper, "is_usable", lambda: False)
        raise RuntimeError("the server went away")

    with pytest.raises(RuntimeError, match="went away"):
        threads.submit(fail).result(10)
    monkeypatch.undo()
    wrapper, raw = threads.submit(_wrapper_and_raw).result(10)
    assert raw is not None and raw is not broken[0] and not wrapper.errors_occurred


def test_an_idle_connection_is_checked_before_the_next_step(threads: DatabaseThreads, monkeypatch) -> None:
    wrapper, first = threads.submit(_wrapper_and_raw).result(10)
    checks: list[bool] = []

    def dropped_by_server() -> bool:
        checks.append(True)
        return False

    monkeypatch.setattr(wrapper, "is_usable", dropped_by_server)
    _wrapper, busy = threads.submit(_wrapper_and_raw).result(10)
    assert busy is first and not checks  # used a moment ago: no check
    monkeypatch.setattr(database, "HEALTH_CHECK_AFTER", 0.0)
    _wrapper, second = threads.submit(_wrapper_and_raw).result(10)
    assert checks and second is not first


def test_stopping_closes_the_threads_and_the_next_step_starts_new_ones() -> None:
    async def step() -> Any:
        return await db(_wrapper_and_raw)

    wrapper, raw = asyncio.run(step())
    assert raw is not None
    database.database_threads_stop()
    assert wrapper.connection is None
    _wrapper, again = asyncio.run(step())
    assert again is not None and again is not raw


def test_submit_after_shutdown_is_refused() -> None:
    executor = DatabaseThreads(size=1)
    executor.shutdown()
    with pytest.raises(RuntimeError):
        executor.submit(lambda: None)


def test_no_check_before_each_step_under_conn_health_checks(threads: DatabaseThreads, monkeypatch) -> None:
    wrapper, first = threads.submit(_wrapper_and_raw).result(10)
    monkeypatch.setattr(wrapper, "health_check_enabled", True)  # as CONN_HEALTH_CHECKS sets it
    checks: list[bool] = []

    def usable() -> bool:
        checks.append(True)
        return True

    monkeypatch.setattr(wrapper, "is_usable", usable)
    for _ in range(3):
        _wrapper, raw = threads.submit(_wrapper_and_raw).result(10)
        assert raw is first
    assert not checks
