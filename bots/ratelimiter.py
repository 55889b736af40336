"""Telegram's flood limits for every process that sends with the bot's token, kept in Redis.

Telegram allows a bot about 30 messages/s overall and about 1 message/s in one chat (20 a
minute in a group), with short bursts tolerated; past that it answers 429 with retry_after.
python-telegram-bot's AIORateLimiter counts inside one process, yet the bot process, every
gunicorn worker serving the webhook and every django-q2 worker sending buyer notices and
operator alerts share one token.

So each request bound to a chat reserves its send time, atomically in one Lua script, on the
overall schedule and on its chat's (GCRA: each limit keeps a theoretical arrival time in
Redis, read with Redis's own clock so the machines' clocks never matter), then sleeps until
that time. A 429 that slips through anyway (another bot using the token, Telegram's limits
moving) pauses every process until Telegram's retry_after has passed, and the request is
sent again.

Without REDIS_URL (the embedded default: SQLite, the ORM broker) the same schedule is kept in
this process's memory, shared by every bot in the process but not with other processes: the
database cache would cost a query per message and has no atomic read-and-update. There a 429
is still waited out and retried, so nothing is lost, only the pause is not shared.

Libraries looked at: AIORateLimiter (aiolimiter) counts in one process; pyrate-limiter and
limits keep Redis buckets that answer "allowed or not" for one key, so a sender would poll,
and a request could pass the chat's limit and then fail the overall one. One short script that
reserves on both at once is less than either adapter would be.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from redis import RedisError
from redis.asyncio import Redis
from telegram._utils.types import JSONDict
from telegram.error import RetryAfter
from telegram.ext import BaseRateLimiter

logger = logging.getLogger(__name__)

# Telegram's published limits (core.telegram.org/bots/faq): about 30 messages a second overall,
# one a second in a chat, 20 a minute in a group.
OVERALL_PER_SECOND = 30
CHAT_INTERVAL_SECONDS = 1.0
GROUP_INTERVAL_SECONDS = 3.0
# Back-to-back sends allowed after a quiet spell: a few for the overall schedule (the rate stays
# 30/s), three in a chat so a screen, its QR code and its invoice are not held a second each.
# Bulk sends (buyer notices) ask for 1: exactly one message a second in a chat.
OVERALL_BURST = 5
CHAT_BURST = 3
GROUP_BURST = 1
# After a 429, wait Telegram's retry_after and try again this many times before giving up.
MAX_RETRIES = 5
# A little more than Telegram asked for, as python-telegram-bot's own limiter does.
RETRY_AFTER_MARGIN_SECONDS = 0.1

_MICROS = 1_000_000

# KEYS[1]: the pause (until when, µs); KEYS[2..]: one key per limit, holding its theoretical
# arrival time (µs). ARGV: per limit its interval and its tolerance (µs). Returns the wait (µs).
# Numbers are written with %.0f: Lua's tostring would round microseconds since 1970.
_RESERVE = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
local at = now
local pause = tonumber(redis.call('GET', KEYS[1]) or '0')
if pause > at then at = pause end
local arrivals = {}
for i = 2, #KEYS do
  local arrival = tonumber(redis.call('GET', KEYS[i]) or '0')
  arrivals[i] = arrival
  local earliest = arrival - tonumber(ARGV[2 * i - 2])
  if earliest > at then at = earliest end
end
for i = 2, #KEYS do
  local arrival = math.max(arrivals[i], at) + tonumber(ARGV[2 * i - 3])
  redis.call('SET', KEYS[i], string.format('%.0f', arrival),
             'PX', math.floor((arrival - now) / 1000) + 1000)
end
return at - now
"""
# KEYS[1]: the pause; ARGV[1]: how long (µs). A shorter pause never cuts a longer one.
_PAUSE = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
local until_ = now + tonumber(ARGV[1])
local pause = tonumber(redis.call('GET', KEYS[1]) or '0')
if until_ > pause then
  redis.call('SET', KEYS[1], string.format('%.0f', until_), 'PX', math.floor(tonumber(ARGV[1]) / 1000) + 1000)
end
return 1
"""


@dataclass(frozen=True)
class Limit:
    """One schedule a request must fit: at most one send per `interval`, `burst` back to back."""

    key: str
    interval: float
    burst: int

    @property
    def tolerance(self) -> float:
        return (self.burst - 1) * self.interval


class Schedule(Protocol):
    """Where send times are reserved: Redis for every process, or this process's memory."""

    async def reserve(self, limits: Sequence[Limit]) -> float:
        """Reserve the earliest send time every limit allows; returns the seconds to wait."""

    async def pause(self, seconds: float) -> None:
        """No send anywhere before `seconds` from now."""

    async def close(self) -> None: ...


class RedisSchedule:
    """The schedule in Redis, one Lua call per request."""

    def __init__(self, redis_url: str, *, pause_key: str) -> None:
        self.redis = Redis.from_url(redis_url)
        self.pause_key = pause_key
        self._reserve = self.redis.register_script(_RESERVE)
        self._pause = self.redis.register_script(_PAUSE)

    async def reserve(self, limits: Sequence[Limit]) -> float:
        args: list[int] = []
        for limit in limits:
            args += [round(limit.interval * _MICROS), round(limit.tolerance * _MICROS)]
        micros = await self._reserve(keys=[self.pause_key, *(limit.key for limit in limits)],
                                     args=args)
        return int(micros) / _MICROS

    async def pause(self, seconds: float) -> None:
        await self._pause(keys=[self.pause_key], args=[round(seconds * _MICROS)])

    async def close(self) -> None:
        await self.redis.aclose()


class MemorySchedule:
    """The same schedule in this process's memory, shared by its threads and event loops."""

    # Past this many keys, those whose time has passed are dropped (they would allow a send now).
    PRUNE_AT = 10_000

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.lock = threading.Lock()
        self.arrivals: dict[str, float] = {}
        self.paused_until = 0.0

    async def reserve(self, limits: Sequence[Limit]) -> float:
        with self.lock:
            now = self.clock()
            at = max(now, self.paused_until)
            for limit in limits:
                at = max(at, self.arrivals.get(limit.key, 0.0) - limit.tolerance)
            for limit in limits:
                self.arrivals[limit.key] = max(self.arrivals.get(limit.key, 0.0), at) + limit.interval
            if len(self.arrivals) > self.PRUNE_AT:
                self.arrivals = {key: arrival for key, arrival in self.arrivals.items()
                                 if arrival > now}
            return at - now

    async def pause(self, seconds: float) -> None:
        with self.lock:
            self.paused_until = max(self.paused_until, self.clock() + seconds)

    def clear(self) -> None:
        with self.lock:
            self.arrivals.clear()
            self.paused_until = 0.0

    async def close(self) -> None:
        """Nothing to release: the schedule outlives any one bot."""


# One per process, so the bot's Application and the tasks' bots in one process share it.
memory_schedule = MemorySchedule()


class SharedRateLimiter(BaseRateLimiter[int]):
    """python-telegram-bot's rate limiter interface over a shared Schedule.

    Requests naming a chat (sendMessage, editMessageText, sendPhoto, …) fit the overall
    schedule and their chat's; the rest (answerCallbackQuery, getMe, …) wait only for a pause.
    `rate_limit_args`, as for AIORateLimiter, is how many 429s to wait out for one request.
    """

    __slots__ = ("_redis_url", "_schedule", "chat_burst", "max_retries", "prefix")

    def __init__(self, *, redis_url: str = "", prefix: str = "tg-rate", chat_burst: int = CHAT_BURST,
                 max_retries: int = MAX_RETRIES) -> None:
        self._redis_url = redis_url
        self.prefix = prefix
        self.chat_burst = chat_burst
        self.max_retries = max_retries
        self._schedule: Schedule | None = None

    @property
    def schedule(self) -> Schedule:
        if self._schedule is None:
            self._schedule = (RedisSchedule(self._redis_url, pause_key=f"{self.prefix}:pause")
                              if self._redis_url else memory_schedule)
        return self._schedule

    async def initialize(self) -> None:
        """Connect lazily: the first request opens the Redis connection on its own event loop."""

    async def shutdown(self) -> None:
        if self._schedule is not None:
            await self._schedule.close()
            self._schedule = None

    def limits(self, data: dict[str, Any]) -> list[Limit]:
        """The schedules a request with these parameters must fit."""
        chat_id = data.get("chat_id")
        if chat_id is None or data.get("allow_paid_broadcast"):
            # Paid broadcasts have their own, far higher limit (1000/s), which we never reach.
            return []
        overall = Limit(f"{self.prefix}:all", 1 / OVERALL_PER_SECOND, OVERALL_BURST)
        with contextlib.suppress(TypeError, ValueError):
            chat_id = int(chat_id)
        if isinstance(chat_id, int) and chat_id > 0:
            chat = Limit(f"{self.prefix}:chat:{chat_id}", CHAT_INTERVAL_SECONDS, self.chat_burst)
        else:
            # A negative id or an @username: a group or a channel.
            chat = Limit(f"{self.prefix}:chat:{chat_id}", GROUP_INTERVAL_SECONDS, GROUP_BURST)
        return [overall, chat]

    async def process_request(
        self,
        callback: Callable[..., Coroutine[Any, Any, bool | JSONDict | list[JSONDict]]],
        args: Any,
        kwargs: dict[str, Any],
        endpoint: str,
        data: dict[str, Any],
        rate_limit_args: int | None,
    ) -> bool | JSONDict | list[JSONDict]:
        limits = self.limits(data)
        max_retries = self.max_retries if rate_limit_args is None else rate_limit_args
        for attempt in range(max_retries + 1):
            wait = await self._reserve(limits)
            if wait > 0:
                await asyncio.sleep(wait)
            try:
                return await callback(*args, **kwargs)
            except RetryAfter as exc:
                seconds = exc._retry_after.total_seconds() + RETRY_AFTER_MARGIN_SECONDS
                await self._pause(seconds)
                if attempt == max_retries:
                    logger.error("%s: 429 after %d retries, giving up", endpoint, max_retries)
                    raise
                logger.info("%s: 429, every sender pauses %.1f s", endpoint, seconds)
        raise AssertionError("unreachable")

    async def _reserve(self, limits: Sequence[Limit]) -> float:
        try:
            return await self.schedule.reserve(limits)
        except RedisError as exc:
            # Redis down: keep sending within this process's limits rather than not at all.
            logger.warning("rate limits in Redis unavailable (%s); limiting this process only", exc)
            return await memory_schedule.reserve(limits)

    async def _pause(self, seconds: float) -> None:
        try:
            await self.schedule.pause(seconds)
        except RedisError as exc:
            logger.warning("could not share a 429 pause through Redis (%s); pausing this process", exc)
            await memory_schedule.pause(seconds)
