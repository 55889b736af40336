"""Webhook mode: one initialized Application per web process, on an event loop in its own thread.

Django views run in ordinary threads; python-telegram-bot needs a running event loop and an
initialized Application. Each web process starts one BotRuntime on its first webhook request
and keeps it, so the bot scales with the web processes. The view hands an update over with
asyncio.run_coroutine_threadsafe and waits for the handlers to finish, up to a timeout.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import contextvars
import logging
import os
import threading
from collections.abc import Callable

from asgiref.sync import async_to_sync
from telegram import Update
from telegram.ext import Application

from bots.application import application_build
from bots.database import database_threads_stop

logger = logging.getLogger(__name__)

START_TIMEOUT = 30.0


class BotUnavailable(Exception):
    """The bot could not start here (Telegram unreachable, token rejected)."""


class BotRuntime:
    """An initialized Application serving updates on an event loop in a background thread.

    The handlers' database steps run on the bot's own database threads (bots.database),
    stopped with the runtime. The loop runs under async_to_sync all the same, so that any
    thread-sensitive call would run on this runtime's own thread, never on the single thread
    asgiref shares process-wide: under ASGI a sync view occupies that thread while it waits
    for the bot, which would deadlock.
    """

    def __init__(self, build: Callable[[], Application] = application_build) -> None:
        self._build = build
        self._ready = threading.Event()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._error: BaseException | None = None
        self._pid = os.getpid()
        self.application: Application | None = None

    @property
    def alive(self) -> bool:
        """Serving in this process (a forked child inherits no threads)."""
        return (self._pid == os.getpid() and self._thread is not None and self._thread.is_alive()
                and self.application is not None)

    def start(self, timeout: float = START_TIMEOUT) -> None:
        """Start the loop thread and initialize the application (getMe); raise BotUnavailable if it fails."""
        self._thread = threading.Thread(target=self._main, name="telegram-bot-runtime", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            raise BotUnavailable(f"the bot did not start within {timeout} s")
        if self._error is not None:
            raise BotUnavailable(f"the bot could not start: {self._error}") from self._error

    def _main(self) -> None:
        async_to_sync(self._serve)()

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        application = self._build()
        try:
            await application.initialize()
        except Exception as exc:  # handed to the starting thread, which raises it
            self._error = exc
            self._ready.set()
            return
        self.application = application
        self._ready.set()
        try:
            await self._stopping.wait()
        finally:
            await application.shutdown()
            database_threads_stop()

    def process(self, update: Update, *, timeout: float) -> bool:
        """Run the handlers for one update; False if they are still running after timeout.

        The update goes through the application's update processor, so per-user ordering
        and the cap on running handlers hold here as in polling mode.
        """
        assert self._loop is not None and self.application is not None
        application = self.application
        coroutine = application.update_processor.process_update(update, application.process_update(update))
        # A fresh context: nothing of the request (its active language, asgiref's state)
        # leaks into the bot's task.
        future = contextvars.Context().run(asyncio.run_coroutine_threadsafe, coroutine, self._loop)
        try:
            future.result(timeout)
        except concurrent.futures.TimeoutError:
            return False
        return True

    def stop(self, timeout: float = 10.0) -> None:
        """Shut the application down and end the thread."""
        if self._loop is not None and self._stopping is not None and not self._loop.is_closed():
            try:
                self._loop.call_soon_threadsafe(self._stopping.set)
            except RuntimeError:
                pass  # the loop already stopped
        if self._thread is not None:
            self._thread.join(timeout)


_runtime: BotRuntime | None = None
_runtime_lock = threading.Lock()


def webhook_runtime() -> BotRuntime:
    """This process's runtime, started on first use; raises BotUnavailable if it cannot start."""
    global _runtime
    with _runtime_lock:
        if _runtime is None or not _runtime.alive:
            runtime = BotRuntime()
            try:
                runtime.start()
            except BotUnavailable:
                runtime.stop()
                raise
            _runtime = runtime
        return _runtime


def webhook_runtime_stop() -> None:
    """Stop this process's runtime, if one runs (process exit, tests)."""
    global _runtime
    with _runtime_lock:
        if _runtime is not None:
            _runtime.stop()
            _runtime = None


atexit.register(webhook_runtime_stop)
