"""Rate limits (reseller/ratelimits.py) and the one recipient lookup every door calls."""

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from django.core.cache import caches
from django.core.cache.backends.db import DatabaseCache
from django.core.management import call_command
from django.db import connection, connections
from django.test import RequestFactory

from orders import services
from orders.exceptions import InvalidRecipient, InvalidRecipientInput, RecipientLookupLimited
from orders.models import OrderStatus as S
from orders.suppliers.base import RecipientInfo
from orders.tests.clusters import database_env
from reseller import ratelimits
from reseller.ratelimits import Limit, Rate, client_ip, limits_hit, rates_parse

ROOT = Path(__file__).resolve().parents[2]
PER_MINUTE = Rate(count=30, seconds=60)


def ip_limit(subject: str = "203.0.113.7", rate: Rate = PER_MINUTE) -> list[Limit]:
    return [Limit(scope="test:ip", subject=subject, rate=rate)]


# --- Rates ----------------------------------------------------------------------------------


def test_rates_parse():
    assert rates_parse("30/minute, 300/hour") == [Rate(30, 60), Rate(300, 3600)]
    assert rates_parse("10/5minutes,1/day") == [Rate(10, 300), Rate(1, 86400)]
    assert rates_parse("") == rates_parse(" , ") == []
    for bad in ("30", "30/fortnight", "x/minute", "30/0minutes"):
        with pytest.raises(ValueError):
            rates_parse(bad)


# --- Counting -------------------------------------------------------------------------------


def test_the_31st_hit_in_a_minute_is_refused_and_later_ones_too():
    start = 1_000_000.0
    allowed = [limits_hit(ip_limit(), now=start + i) for i in range(31)]
    assert allowed == [True] * 30 + [False]
    assert not limits_hit(ip_limit(), now=start + 40)


def test_any_rolling_window_holds_at_most_the_limit():
    """Fixed windows would allow 30 at 0:59 and 30 more at 1:00; the buckets do not."""
    start = 1_000_000.0 - 1_000_000.0 % 60 + 59  # the last second of a minute
    assert all(limits_hit(ip_limit(), now=start) for _ in range(30))
    assert not limits_hit(ip_limit(), now=start + 2)
    assert not limits_hit(ip_limit(), now=start + 55)
    # Once the hits (refused ones included) are more than a window and a bucket old: free again.
    assert limits_hit(ip_limit(), now=start + 55 + 71)


def test_subjects_and_rates_count_apart():
    start = 1_000_000.0
    for _ in range(30):
        assert limits_hit(ip_limit("203.0.113.7"), now=start)
    assert not limits_hit(ip_limit("203.0.113.7"), now=start)
    assert limits_hit(ip_limit("203.0.113.8"), now=start)
    hourly = ip_limit(rate=Rate(count=2, seconds=3600))
    assert limits_hit(hourly, now=start) and limits_hit(hourly, now=start + 600)
    assert not limits_hit(hourly, now=start + 1200)


def test_every_limit_of_a_hit_counts_it():
    session = [Limit(scope="test:session", subject="s1", rate=Rate(2, 60))]
    start = 1_000_000.0
    assert limits_hit(ip_limit() + session, now=start)
    assert limits_hit(ip_limit() + session, now=start)
    assert not limits_hit(ip_limit() + session, now=start)  # the session's limit
    # The address counted all three: 27 left for it, through any session.
    assert all(limits_hit(ip_limit(), now=start) for _ in range(27))
    assert not limits_hit(ip_limit(), now=start)


# --- Shared between processes -----------------------------------------------------------------


@pytest.fixture
def database_cache(settings):
    """The cache production uses without Redis: a table in the database."""
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.db.DatabaseCache",
                                   "LOCATION": "django_cache"}}
    # The test database has the table only when the settings chose it (not with REDIS_URL).
    call_command("createcachetable")
    cache = caches["default"]
    assert isinstance(cache, DatabaseCache)
    cache.clear()
    yield cache
    cache.clear()


@pytest.mark.django_db(transaction=True)
def test_database_cache_counts_atomically_from_many_threads(database_cache):
    """Django's own DatabaseCache.incr is a read then a write: racing threads would lose counts."""
    hits_per_thread, threads = 15, 4
    results: list[bool] = []
    lock = threading.Lock()

    def hammer():
        try:
            for _ in range(hits_per_thread):
                # The default cache, as the doors use it (django.core.cache.cache is a proxy).
                allowed = limits_hit(ip_limit(), now=1_000_000.0)
                with lock:
                    results.append(allowed)
        finally:
            connections.close_all()

    workers = [threading.Thread(target=hammer) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
    assert len(results) == hits_per_thread * threads
    assert results.count(True) == 30


@pytest.mark.django_db(transaction=True)
def test_database_cache_counter_keeps_its_expiry(database_cache):
    """Django's DatabaseCache.incr would reset the row's expiry to the default timeout."""
    ratelimits._incr(database_cache, "test:expiry", 3600)
    with connection.cursor() as cursor:
        cursor.execute("SELECT expires FROM django_cache")
        (before,) = cursor.fetchone()
    assert ratelimits._incr(database_cache, "test:expiry", 3600) == 2
    with connection.cursor() as cursor:
        cursor.execute("SELECT expires FROM django_cache")
        (after,) = cursor.fetchone()
    assert before == after
    assert database_cache.get("test:expiry") == 2


COUNTING_PROCESS = """
import django, json, sys, time
django.setup()
from reseller.ratelimits import Limit, Rate, limits_hit
time.sleep(max(0.0, float(sys.argv[1]) - time.time()))  # both start counting together
limit = [Limit(scope="test:ip", subject="203.0.113.7", rate=Rate(30, 60))]
print(json.dumps([limits_hit(limit, now=1_000_000.0) for _ in range(20)]))
"""


def _env(**overrides: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items()
           if key not in ("REDIS_URL", "DATABASE_URL", "DJANGO_ENV")}
    env.update(DJANGO_SETTINGS_MODULE="reseller.settings", **overrides)
    return env


@pytest.mark.django_db(transaction=True)
def test_two_processes_share_one_count(database_cache):
    """Two gunicorn workers, say: each allows what the other has not used, 30 in all."""
    env = _env(**database_env())  # this test database, SQLite or PostgreSQL; no Redis
    start_at = str(time.time() + 4)
    processes = [subprocess.Popen([sys.executable, "-c", COUNTING_PROCESS, start_at], cwd=ROOT, env=env,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for _ in range(2)]
    allowed = []
    for process in processes:
        out, err = process.communicate(timeout=60)
        assert process.returncode == 0, err
        allowed += json.loads(out.strip().splitlines()[-1])
    assert allowed.count(True) == 30
    assert not limits_hit(ip_limit(), cache=database_cache, now=1_000_000.0)


SHOW_CACHES = """
import django, json
django.setup()
from django.conf import settings
print(json.dumps(settings.CACHES["default"]))
"""


@pytest.mark.parametrize(("env", "backend"), [
    ({}, "django.core.cache.backends.db.DatabaseCache"),
    ({"REDIS_URL": "redis://127.0.0.1:6399/0"}, "django.core.cache.backends.redis.RedisCache"),
    ({"DJANGO_ENV": "production", "SECRET_KEY": "x" * 50, "SITE_URL": "https://shop.example",
      "ALLOWED_HOSTS": "shop.example", "DATABASE_URL": "sqlite:////tmp/unused.sqlite3"},
     "django.core.cache.backends.db.DatabaseCache"),
])
def test_settings_pick_a_shared_cache_never_process_memory(env, backend):
    """Per-process memory would let every gunicorn worker count its own 30."""
    shown = subprocess.run([sys.executable, "-c", SHOW_CACHES], cwd=ROOT, env=_env(**env),
                           capture_output=True, text=True, timeout=60)
    assert shown.returncode == 0, shown.stderr
    caches_default = json.loads(shown.stdout.strip().splitlines()[-1])
    assert caches_default["BACKEND"] == backend
    if backend.endswith("DatabaseCache"):
        # Django culls a third of the table past 300 rows by default, counters included.
        assert caches_default["OPTIONS"]["MAX_ENTRIES"] >= 100_000


# --- Client address -------------------------------------------------------------------------


@pytest.mark.parametrize(("proxies", "remote", "forwarded", "expected"), [
    (0, "198.51.100.1", "", "198.51.100.1"),
    (0, "198.51.100.1", "203.0.113.9", "198.51.100.1"),  # nobody vouches for the header
    (1, "127.0.0.1", "203.0.113.9", "203.0.113.9"),
    (1, "127.0.0.1", "6.6.6.6, 203.0.113.9", "203.0.113.9"),  # the client wrote 6.6.6.6
    (2, "10.0.0.2", "6.6.6.6, 203.0.113.9, 10.0.0.1", "203.0.113.9"),
    (2, "10.0.0.2", "203.0.113.9", "10.0.0.2"),  # fewer hops than proxies: not believed
    (1, "127.0.0.1", "not-an-address", "unknown"),
    (0, "2001:db8:1:2:3:4:5:6", "", "2001:db8:1:2::/64"),
    (0, "::ffff:203.0.113.9", "", "203.0.113.9"),
    (0, "", "", "unknown"),
])
def test_client_ip(settings, proxies, remote, forwarded, expected):
    settings.TRUSTED_PROXY_COUNT = proxies
    request = RequestFactory().get("/", REMOTE_ADDR=remote, HTTP_X_FORWARDED_FOR=forwarded)
    assert client_ip(request) == expected


# --- The recipient lookup every door calls ------------------------------------------------------


class CountingSupplier:
    """A supplier client that knows one account and counts /validate-user calls."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def validate_recipient(self, recipient: str) -> RecipientInfo:
        self.calls.append(recipient)
        if recipient.lower() in ("@known_user", "100000001"):
            return RecipientInfo(user_id="100000001", username="@known_user")
        raise InvalidRecipient(f"no {recipient}")


@pytest.fixture
def counting_supplier(monkeypatch):
    client = CountingSupplier()
    monkeypatch.setattr(services, "get_supplier_client", lambda: client)
    return client


def test_lookup_caches_supplier_answers_found_and_not_found(counting_supplier):
    for raw in ("@known_user", "known_user", "@KNOWN_USER", "https://t.me/known_user"):
        assert services.recipient_lookup(raw=raw, limits=[])[1] == RecipientInfo("100000001",
                                                                                "@known_user")
    for _ in range(3):
        with pytest.raises(InvalidRecipient):
            services.recipient_lookup(raw="@nobody_here", limits=[])
    assert counting_supplier.calls == ["@known_user", "@nobody_here"]


def test_lookup_cache_expires(counting_supplier, settings):
    settings.RECIPIENT_CACHE_SECONDS = 0
    settings.RECIPIENT_NOT_FOUND_CACHE_SECONDS = 0
    services.recipient_lookup(raw="@known_user", limits=[])
    services.recipient_lookup(raw="@known_user", limits=[])
    assert len(counting_supplier.calls) == 2


def test_once_limited_every_lookup_gets_the_same_answer(counting_supplier, settings):
    settings.RECIPIENT_LOOKUP_RATE_PER_IP = "3/minute"
    limits = services.recipient_lookup_limits(client_ip="203.0.113.7")
    for raw in ("@someone_1", "@someone_2", "@someone_3"):
        with pytest.raises(InvalidRecipient):
            services.recipient_lookup(raw=raw, limits=limits)
    for raw in ("@known_user", "@someone_4", "not a name!", ""):
        with pytest.raises(RecipientLookupLimited):
            services.recipient_lookup(raw=raw, limits=limits)
    assert len(counting_supplier.calls) == 3
    # Another client is not affected.
    assert services.recipient_lookup(
        raw="@known_user", limits=services.recipient_lookup_limits(client_ip="203.0.113.8"))


def test_invalid_input_counts_but_never_reaches_the_supplier(counting_supplier, settings):
    settings.RECIPIENT_LOOKUP_RATE_PER_TELEGRAM_USER = "2/minute"
    limits = services.recipient_lookup_limits(telegram_id=42)
    for _ in range(2):
        with pytest.raises(InvalidRecipientInput):
            services.recipient_lookup(raw="@@@", limits=limits)
    with pytest.raises(RecipientLookupLimited):
        services.recipient_lookup(raw="@known_user", limits=limits)
    assert counting_supplier.calls == []


def test_lookup_limits_by_what_the_door_knows(settings):
    settings.RECIPIENT_LOOKUP_RATE_PER_IP = "30/minute"
    settings.RECIPIENT_LOOKUP_RATE_PER_SESSION = "10/minute, 100/hour"
    settings.RECIPIENT_LOOKUP_RATE_PER_TELEGRAM_USER = ""
    limits = services.recipient_lookup_limits(client_ip="203.0.113.7", session_key="secret-key",
                                              telegram_id=5)
    assert [(limit.scope, limit.rate) for limit in limits] == [
        ("recipient:ip", Rate(30, 60)), ("recipient:session", Rate(10, 60)),
        ("recipient:session", Rate(100, 3600)),
    ]
    # The session key is a credential: only its keyed hash is used in cache keys.
    assert all("secret-key" not in limit.subject for limit in limits)
    assert services.recipient_lookup_limits() == []


def test_placing_the_top_up_ignores_the_lookup_cache(catalog, supplier, monkeypatch,
                                                     django_capture_on_commit_callbacks):
    """@sandbox_renamed changes owners after its first look-up: the cached answer is stale."""
    monkeypatch.setattr("orders.queue.enqueue_fulfilment", lambda pk: None)
    normalised, info = services.recipient_lookup(raw="@sandbox_renamed", limits=[])
    assert services.recipient_lookup(raw="@sandbox_renamed", limits=[]) == (normalised, info)
    assert info.user_id == "100000009"
    order = services.order_create(
        channel="web", product=catalog, recipient_input=normalised, recipient=info,
        payment_method="sandbox", package_id=catalog.packages.get(quantity=500).pk,
    )
    with django_capture_on_commit_callbacks(execute=True):
        services.order_pay_sandbox(order=order)
    order = services.order_fulfil(order_id=order.pk)
    assert order.status == S.REVIEW and "another account" in order.status_reason
    assert supplier.topup_calls(order.idempotency_key) == 0
