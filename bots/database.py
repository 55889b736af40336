"""The bot's database threads: a few long-lived threads, each keeping its own connection.

The handlers' short database steps run here rather than on asgiref's single thread-sensitive
thread, which serialised every buyer's steps in the process and, closing the connection after
each (CONN_MAX_AGE=0), opened a new one per step. Here several steps run at once (PostgreSQL
serves them in parallel; SQLite in WAL mode lets readers overlap a writer), and a thread keeps
its connection from one step to the next, as Django's persistent connections do for requests:

- a connection is dropped after a step that left it unusable (an error other than a data or
  integrity error, and it no longer answers) or outside autocommit, and once it is older than
  CONNECTION_MAX_AGE (or the database's own CONN_MAX_AGE, if that is longer);
- before a step, a connection that sat idle longer than HEALTH_CHECK_AFTER is checked and
  replaced if the server dropped it meanwhile, so that a buyer's update does not fail on it
  (this replaces Django's CONN_HEALTH_CHECKS, which would check before every step).
"""

from __future__ import annotations

import concurrent.futures
import logging
import os
import queue
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from django.db import connections

logger = logging.getLogger(__name__)

R = TypeVar("R")

# Steps running at once per process: the handlers' steps are a few short queries each, so a
# few threads keep the database busy without a connection per running handler.
THREADS = 4
# Seconds a thread keeps its connection, unless the database's CONN_MAX_AGE is longer.
CONNECTION_MAX_AGE = 300.0
# Seconds a connection may sit unused before it is checked (a SELECT 1) ahead of a step.
HEALTH_CHECK_AFTER = 10.0

_Job = tuple[concurrent.futures.Future, Callable[..., Any], tuple[Any, ...], dict[str, Any]]


class DatabaseThreads(concurrent.futures.Executor):
    """An executor of `size` threads that run database steps, each on its own kept connection."""

    def __init__(self, size: int = THREADS) -> None:
        if size < 1:
            raise ValueError("size must be a positive integer")
        self._size = size
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._closed = False

    def submit(self, fn: Callable[..., R], /, *args: Any, **kwargs: Any) -> concurrent.futures.Future[R]:
        future: concurrent.futures.Future[R] = concurrent.futures.Future()
        with self._lock:
            if self._closed:
                raise RuntimeError("cannot schedule new futures after shutdown")
            if not self._threads:
                for number in range(self._size):
                    thread = threading.Thread(target=self._work, name=f"bot-database-{number}",
                                              daemon=True)
                    thread.start()
                    self._threads.append(thread)
            self._jobs.put((future, fn, args, kwargs))
        return future

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Finish the queued steps, then close each thread's connections and end it."""
        with self._lock:
            self._closed = True
            threads = list(self._threads)
        for _thread in threads:
            self._jobs.put(None)
        if wait:
            for thread in threads:
                thread.join()

    def _work(self) -> None:
        state = _ThreadState()
        try:
            while (job := self._jobs.get()) is not None:
                future, fn, args, kwargs = job
                if not future.set_running_or_notify_cancel():
                    continue
                state.before_step()
                try:
                    result = fn(*args, **kwargs)
                except BaseException as exc:
                    state.after_step()
                    future.set_exception(exc)
                else:
                    state.after_step()
                    future.set_result(result)
        finally:
            connections.close_all()


class _ThreadState:
    """One database thread's connections: when each was opened and last used."""

    def __init__(self) -> None:
        self._known: dict[str, object] = {}
        self._last_used = 0.0

    def before_step(self) -> None:
        """Replace a connection that sat idle long enough for the server to have dropped it."""
        if time.monotonic() - self._last_used < HEALTH_CHECK_AFTER:
            return
        for connection in connections.all(initialized_only=True):
            if connection.connection is not None and not connection.is_usable():
                self._close(connection)

    def after_step(self) -> None:
        """Give new connections the bot's lifetime; drop broken, dirty and expired ones."""
        self._last_used = time.monotonic()
        for connection in connections.all(initialized_only=True):
            if connection.connection is None:
                continue
            if self._known.get(connection.alias) is not connection.connection:
                # Opened during this step: Django set close_at from the site's CONN_MAX_AGE
                # (DATABASE_CONN_MAX_AGE); the bot keeps it at least CONNECTION_MAX_AGE.
                self._known[connection.alias] = connection.connection
                max_age = connection.settings_dict["CONN_MAX_AGE"]
                if max_age is not None and max_age < CONNECTION_MAX_AGE:
                    connection.close_at = time.monotonic() + CONNECTION_MAX_AGE
            try:
                connection.close_if_unusable_or_obsolete()
            except Exception:
                # Closing a broken connection can fail too; it is gone either way, and the
                # thread must live on to serve the next step.
                logger.exception("could not close database connection %r", connection.alias)
            # With CONN_HEALTH_CHECKS on, Django would now check the connection (a SELECT 1)
            # before every step, as before every request; before_step checks the idle ones.
            connection.health_check_done = True  # type: ignore[attr-defined]  # not in django-stubs

    @staticmethod
    def _close(connection: Any) -> None:
        try:
            connection.close()
        except Exception:
            logger.exception("could not close database connection %r", connection.alias)


_threads: DatabaseThreads | None = None
_threads_lock = threading.Lock()


def database_threads() -> DatabaseThreads:
    """This process's database threads, started on first use."""
    global _threads
    with _threads_lock:
        if _threads is None:
            _threads = DatabaseThreads()
        return _threads


def database_threads_stop() -> None:
    """End this process's database threads and close their connections; the next step starts new ones."""
    global _threads
    with _threads_lock:
        threads, _threads = _threads, None
    if threads is not None:
        threads.shutdown(wait=True)


def _forget_after_fork() -> None:
    # A forked child inherits the executor but none of its threads.
    global _threads, _threads_lock
    _threads, _threads_lock = None, threading.Lock()


os.register_at_fork(after_in_child=_forget_after_fork)
