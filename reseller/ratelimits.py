"""Rate limits counted in the cache every process shares (Redis, or Django's database cache).

A limit is "at most N hits in any window of S seconds". Each window is cut into BUCKETS
buckets with their own counter; a hit adds one to the current bucket and is allowed while
the buckets covering the last S seconds (one extra bucket, so the count never undershoots)
hold no more than N. Counters are only ever added to, never read-then-written: with Redis
`incr` is atomic, and Django's database cache (whose `incr` is a read then a write that also
resets the expiry) gets a compare-and-swap UPDATE here. Refused hits count too, so a client
that keeps hammering stays refused until it slows down.
"""

from __future__ import annotations

import base64
import ipaddress
# Only to write the database cache's own format (pickle.dumps), never to load anything.
import pickle  # nosec B403
import re
import time
from dataclasses import dataclass

from django.conf import settings
from django.core.cache import caches
from django.core.cache.backends.base import BaseCache
from django.core.cache.backends.db import DatabaseCache
from django.db import connections, router
from django.http import HttpRequest

BUCKETS = 6
_PERIODS = {"second": 1, "minute": 60, "hour": 3600, "day": 86400}
_RATE = re.compile(r"\s*(\d+)\s*/\s*(\d*)\s*(second|minute|hour|day)s?\s*")
# Compare-and-swap retries against the database cache before counting the hit as refused.
_CAS_ATTEMPTS = 20


@dataclass(frozen=True)
class Rate:
    """At most `count` hits in any `seconds`."""

    count: int
    seconds: int


@dataclass(frozen=True)
class Limit:
    """One rate applied to one subject, e.g. 30/minute for the address 203.0.113.7."""

    scope: str
    subject: str
    rate: Rate


def rates_parse(text: str) -> list[Rate]:
    """Parse "30/minute, 300/hour" (also "10/5minutes"); an empty text means no limit."""
    rates = []
    for part in filter(None, (piece.strip() for piece in text.split(","))):
        match = _RATE.fullmatch(part)
        if match is None:
            raise ValueError(f"not a rate: {part!r} (expected e.g. 30/minute)")
        count, multiple, period = int(match[1]), int(match[2] or 1), match[3]
        if multiple < 1:
            raise ValueError(f"not a rate: {part!r}")
        rates.append(Rate(count=count, seconds=multiple * _PERIODS[period]))
    return rates


def limits_for(scope: str, subject: str, rates: str) -> list[Limit]:
    """The limits a setting such as RECIPIENT_LOOKUP_RATE_PER_IP puts on one subject."""
    if not subject:
        return []
    return [Limit(scope=scope, subject=subject, rate=rate) for rate in rates_parse(rates)]


def limits_hit(limits: list[Limit], *, cache: BaseCache | None = None,
               now: float | None = None) -> bool:
    """Count one hit against every limit; False when any of them is exhausted."""
    # caches["default"], not django.core.cache.cache: that is a proxy, and isinstance() on it
    # would never see the DatabaseCache that needs the compare-and-swap.
    cache = cache or caches["default"]
    now = time.time() if now is None else now
    allowed = True
    for limit in limits:
        bucket_seconds = max(1, limit.rate.seconds // BUCKETS)
        current = int(now // bucket_seconds)
        span = -(-limit.rate.seconds // bucket_seconds)  # ceil: buckets that make one window
        base = f"ratelimit:{limit.scope}:{limit.rate.count}/{limit.rate.seconds}:{limit.subject}"
        # Kept a little longer than the buckets that still count them.
        expiry = (span + 2) * bucket_seconds
        count = _incr(cache, f"{base}:{current}", expiry)
        earlier = [f"{base}:{index}" for index in range(current - span, current)]
        count += sum(value for value in cache.get_many(earlier).values() if isinstance(value, int))
        if count > limit.rate.count:
            allowed = False
    return allowed


def counter_add(key: str, *, timeout: int) -> int:
    """Add one to a shared counter (created with `timeout`) and return its new value."""
    return _incr(caches["default"], key, timeout)


def _incr(cache: BaseCache, key: str, timeout: int) -> int:
    """Add one to a counter atomically across processes, creating it with `timeout`."""
    if isinstance(cache, DatabaseCache):
        return _db_incr(cache, key, timeout)
    for _ in range(_CAS_ATTEMPTS):
        cache.add(key, 0, timeout=timeout)
        try:
            return int(cache.incr(key))
        except ValueError:
            continue  # Expired between add() and incr(): start it again.
    raise RuntimeError(f"could not count {key}")


def _db_incr(cache: DatabaseCache, key: str, timeout: int) -> int:
    """Compare-and-swap on the cache row: an UPDATE that only lands if nobody counted first."""
    db = router.db_for_write(cache.cache_model_class)
    connection = connections[db]
    quote = connection.ops.quote_name
    table = quote(cache._table)  # type: ignore[attr-defined]  # set by BaseDatabaseCache
    value, cache_key = quote("value"), quote("cache_key")
    row_key = cache.make_and_validate_key(key)
    for _ in range(_CAS_ATTEMPTS):
        if cache.add(key, 1, timeout=timeout):
            return 1
        current = cache.get(key)
        if not isinstance(current, int):
            continue  # Expired or culled in between: add() again.
        with connection.cursor() as cursor:
            cursor.execute(
                # Only quoted names are formatted in (as DatabaseCache does); values are bound.
                f"UPDATE {table} SET {value} = %s WHERE {cache_key} = %s AND {value} = %s",  # nosec B608
                [_db_value(cache, current + 1), row_key, _db_value(cache, current)],
            )
            if cursor.rowcount == 1:
                return current + 1
    # Lost every race: someone else is counting this key hard, which is what a limit is for.
    return 2**31


def _db_value(cache: DatabaseCache, value: int) -> str:
    """How DatabaseCache stores a value (see its _base_set): base64 of the pickle."""
    return base64.b64encode(pickle.dumps(value, cache.pickle_protocol)).decode("latin1")


def client_ip(request: HttpRequest) -> str:
    """The address to count a web client by, as a string; IPv6 by its /64 network.

    REMOTE_ADDR, unless settings.TRUSTED_PROXY_COUNT says that many proxies of ours add to
    X-Forwarded-For: then the entry the outermost of them added (the right-most untrusted
    hop). Entries to its left are whatever the client sent and are never believed.
    """
    return _address_key(client_address(request))


def client_address(request: HttpRequest) -> str:
    """The client's own address as text (for allowlists), by the same proxy rule as client_ip."""
    address = request.META.get("REMOTE_ADDR") or ""
    proxies = settings.TRUSTED_PROXY_COUNT
    if proxies > 0:
        hops = [hop.strip() for hop in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")]
        hops = [hop for hop in hops if hop]
        if len(hops) >= proxies:
            address = hops[-proxies]
    return address


def _address_key(address: str) -> str:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return "unknown"
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        # One subscriber usually holds a whole /64: counting single addresses would let
        # them rotate through 2^64 of them.
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)
