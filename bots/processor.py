"""How the bot schedules updates: different users concurrently, each user's own in order."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable
from typing import Any

from telegram import Update
from telegram.ext import BaseUpdateProcessor

# Updates accepted at once (waiting for their user's earlier updates, or running).
DEFAULT_MAX_PENDING = 4096
# Updates whose handlers actually run at once, across all users.
DEFAULT_MAX_RUNNING = 32


class PerUserUpdateProcessor(BaseUpdateProcessor):
    """Runs different users' updates concurrently and each user's updates one at a time, in order.

    A slow supplier call for one buyer then stalls only that buyer. Two caps: the base
    class's semaphore bounds updates accepted (pending or running); a second semaphore,
    taken only once the user's lock is held, bounds the handlers running. So one user's
    backlog, queued behind their own lock, never occupies running slots other users need.
    asyncio's Lock and Semaphore wake waiters first come first served, which keeps each
    user's updates in arrival order.
    """

    __slots__ = ("_locks", "_max_running", "_running", "_users_waiting")

    def __init__(self, max_running: int = DEFAULT_MAX_RUNNING,
                 max_pending: int = DEFAULT_MAX_PENDING) -> None:
        if max_running < 1:
            raise ValueError("max_running must be a positive integer")
        # The base class's max_concurrent_updates > 1 is what makes Application hand updates
        # over concurrently at all.
        super().__init__(max(max_pending, max_running, 2))
        self._max_running = max_running
        self._running: asyncio.Semaphore | None = None
        self._locks: dict[int, asyncio.Lock] = {}
        self._users_waiting: dict[int, int] = {}

    @property
    def max_running(self) -> int:
        """How many handlers may run at once across all users."""
        return self._max_running

    @staticmethod
    def serial_key(update: object) -> int | None:
        """Updates with the same key run one at a time: the sender, else the chat."""
        if isinstance(update, Update):
            if update.effective_user is not None:
                return update.effective_user.id
            if update.effective_chat is not None:
                return update.effective_chat.id
        return None

    async def initialize(self) -> None:
        """Create the running-handlers semaphore on the loop that will use it."""
        self._running = asyncio.Semaphore(self._max_running)

    async def shutdown(self) -> None:
        """Nothing to free: locks go away with the last update of their user."""

    async def do_process_update(self, update: object, coroutine: Awaitable[Any]) -> None:
        """Wait for the user's earlier updates, then for a running slot, then run the handlers."""
        if self._running is None:
            await self.initialize()
        running = self._running
        assert running is not None
        key = self.serial_key(update)
        if key is None:
            try:
                async with running:
                    await coroutine
            finally:
                _close_unstarted(coroutine)
            return
        lock = self._locks.setdefault(key, asyncio.Lock())
        self._users_waiting[key] = self._users_waiting.get(key, 0) + 1
        try:
            async with lock, running:
                await coroutine
        finally:
            self._users_waiting[key] -= 1
            if not self._users_waiting[key]:
                del self._users_waiting[key]
                del self._locks[key]
            _close_unstarted(coroutine)


def _close_unstarted(coroutine: Awaitable[Any]) -> None:
    """Close a coroutine cancelled while waiting its turn, or Python warns it was never awaited."""
    if inspect.iscoroutine(coroutine) and inspect.getcoroutinestate(coroutine) == inspect.CORO_CREATED:
        coroutine.close()
