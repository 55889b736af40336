"""Messages sent outside an update (buyer notices, operator alerts): one bot kept per process.

Tasks run in plain threads, one after another. Building a bot for each message cost two TLS
contexts (reading the CA bundle, about 0.1 s each), a getMe and a new connection to Telegram
every time. Here a daemon thread per process runs one event loop holding a bot built and
initialized once per configuration (token, API address, rate limits), so its connections to
Telegram and to Redis are kept from one message to the next.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Callable, Coroutine
from concurrent.futures import Future
from typing import Any, TypeVar

from django.conf import settings
from telegram.ext import ExtBot

from bots.application import rate_limiter_build

T = TypeVar("T")

# Notices come in bulk (a flash sale's deliveries): one a second in a chat, no burst.
NOTICE_CHAT_BURST = 1


def _configuration() -> tuple[str, ...]:
    return (settings.TELEGRAM_BOT_TOKEN, settings.TELEGRAM_API_BASE_URL,
            settings.TELEGRAM_API_FILE_URL, settings.REDIS_URL,
            settings.TELEGRAM_RATE_LIMIT_KEY_PREFIX)


class OutgoingBot:
    """An event loop in a daemon thread and the bot it keeps; started again in a forked child."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pid: int | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        # Touched on the loop only: the bot being built or built, for one configuration.
        self._bot: tuple[tuple[str, ...], asyncio.Future[ExtBot]] | None = None

    def run(self, call: Callable[[ExtBot], Coroutine[Any, Any, T]]) -> T:
        """Run `call(bot)` on the kept bot and wait for its result (or its exception)."""
        configuration = _configuration()
        future: Future[T] = asyncio.run_coroutine_threadsafe(
            self._run(configuration, call), self._running_loop())
        return future.result()

    def _running_loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if (self._pid != os.getpid() or self._loop is None or self._thread is None
                    or not self._thread.is_alive()):
                # A forked child (a django-q2 worker) inherits the parent's objects, not its threads.
                self._loop = asyncio.new_event_loop()
                self._thread = threading.Thread(target=self._loop.run_forever, daemon=True,
                                                name="telegram-outgoing")
                self._thread.start()
                self._pid, self._bot = os.getpid(), None
            return self._loop

    async def _run(self, configuration: tuple[str, ...],
                   call: Callable[[ExtBot], Coroutine[Any, Any, T]]) -> T:
        return await call(await self._kept_bot(configuration))

    async def _kept_bot(self, configuration: tuple[str, ...]) -> ExtBot:
        if self._bot is not None and self._bot[0] != configuration:
            # Settings changed (tests do): the old bot closes its connections in the background.
            old = self._bot[1]
            self._bot = None
            if old.done() and old.exception() is None:
                asyncio.ensure_future(old.result().shutdown())
        if self._bot is None:
            self._bot = (configuration, asyncio.ensure_future(self._build(configuration)))
        built = self._bot[1]
        try:
            return await asyncio.shield(built)
        except Exception:
            # getMe failed (Telegram unreachable): the next message builds a new bot.
            if self._bot is not None and self._bot[1] is built:
                self._bot = None
            raise

    @staticmethod
    async def _build(configuration: tuple[str, ...]) -> ExtBot:
        token, base_url, base_file_url, _redis_url, _prefix = configuration
        bot: ExtBot = ExtBot(token=token, base_url=base_url, base_file_url=base_file_url,
                             rate_limiter=rate_limiter_build(token=token,
                                                             chat_burst=NOTICE_CHAT_BURST))
        try:
            await bot.initialize()
        except BaseException:
            await bot.shutdown()
            raise
        return bot


outgoing_bot = OutgoingBot()
