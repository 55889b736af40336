"""How fast the shop may call each supplier: a rate shared by every process, and its pauses.

A supplier allows so many requests per second (SUPPLIER_RATE_LIMITS, or SUPPLIER_RATE_PER_SECOND
for the configured supplier); fulfilment keeps many calls in flight at once (orders.services
fulfil_concurrently), so every call first takes a slot here. Slots are counted in the shared
cache (Redis in production, the database cache on the embedded default): time is cut into
short windows and each window allows its share of the rate, so two clusters on two machines
together stay within it. When the supplier answers 429 anyway, its Retry-After pauses every
caller of that supplier, not only the one that was refused.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass

from django.conf import settings
from django.core.cache import caches

from reseller.ratelimits import counter_add

# The shortest window a rate is counted in (ms): shorter ones spread the calls more evenly.
MIN_WINDOW_MS = 100
# The longest pause a Retry-After may impose (a supplier asking for an hour is asking for
# an operator, and the orders' own backoff covers that).
MAX_PAUSE_SECONDS = 300.0


@dataclass(frozen=True)
class SupplierRate:
    """At most `per_second` calls per second to one supplier; 0 means no limit."""

    code: str
    per_second: float

    def window(self) -> tuple[int, int]:
        """The counting window (whole ms) and how many calls each may carry (at least one)."""
        ms = max(MIN_WINDOW_MS, math.ceil(1000 / self.per_second))
        return ms, max(1, math.floor(self.per_second * ms / 1000 + 1e-9))


def supplier_rate(code: str) -> SupplierRate:
    """The configured rate for a supplier code."""
    limits = settings.SUPPLIER_RATE_LIMITS
    if code in limits:
        return SupplierRate(code, float(limits[code]))
    if code == settings.SUPPLIER_CODE:
        return SupplierRate(code, float(settings.SUPPLIER_RATE_PER_SECOND))
    return SupplierRate(code, 0.0)


def _pause_key(code: str) -> str:
    return f"supplier-pause:{code}"


def supplier_pause(code: str, seconds: float) -> None:
    """The supplier said "retry after `seconds`": every caller waits that long."""
    seconds = min(max(seconds, 0.0), MAX_PAUSE_SECONDS)
    if seconds <= 0:
        return
    until = time.time() + seconds
    cache = caches["default"]
    current = cache.get(_pause_key(code))
    if not isinstance(current, float) or current < until:
        cache.set(_pause_key(code), until, timeout=math.ceil(seconds) + 1)


def supplier_slot_wait(code: str, *, sleep: Callable[[float], None] = time.sleep,
                       now: Callable[[], float] = time.time) -> float:
    """Block until this process may call supplier `code`; returns the seconds waited."""
    rate = supplier_rate(code)
    cache = caches["default"]
    waited = 0.0
    while True:
        paused_until = cache.get(_pause_key(code))
        if isinstance(paused_until, float) and paused_until > now():
            pause = paused_until - now() + random.uniform(0, 0.05)  # nosec B311 (jitter)
            sleep(pause)
            waited += pause
            continue
        if rate.per_second <= 0:
            return waited
        window_ms, allowed = rate.window()
        moment_ms = int(now() * 1000)
        index = moment_ms // window_ms
        taken = counter_add(f"supplier-rate:{code}:{window_ms}:{index}",
                            timeout=window_ms // 1000 + 2)
        if taken <= allowed:
            return waited
        # This window is full: try at the start of the next one, spread a little.
        pause = ((index + 1) * window_ms - moment_ms) / 1000 \
            + random.uniform(0, window_ms / 4000)  # nosec B311
        sleep(pause)
        waited += pause
