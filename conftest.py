"""Project-wide pytest set-up: the local fakes of every outside party."""

import pytest

pytest_plugins = ["fakes.fixtures", "fakes.telegram_fixtures"]


@pytest.fixture(autouse=True)
def _lease_heartbeat_off(settings):
    """No lease-renewing thread in in-process tests: it would wait on the test's transaction.

    The real cluster tests (orders/tests/test_cluster.py, test_recovery.py) run workers in
    subprocesses with the heartbeat on; orders/tests/test_leases.py turns it on for its own.
    """
    settings.FULFILMENT_LEASE_HEARTBEAT = False
    # Nor fulfilment threads: a fulfilment task run in-process (Q_SYNC) drives its one order
    # in the test's thread. The cluster tests run FULFILMENT_CONCURRENCY's default.
    settings.FULFILMENT_CONCURRENCY = 1


@pytest.fixture(autouse=True)
def _cache_per_test(settings):
    """Each test its own empty in-memory cache: nothing counted or cached leaks between tests.

    Production shares one cache between processes (Redis or the database, reseller/settings.py);
    tests of that sharing set CACHES themselves.
    """
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache",
                                   "LOCATION": "test"},
                       "local": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache",
                                 "LOCATION": "test-local"}}
    from django.core.cache import cache, caches

    cache.clear()
    caches["local"].clear()
    # The storefront's catalog reading of an earlier test (its rows are rolled back).
    from shop.selectors import catalog_forget

    catalog_forget()


@pytest.fixture(autouse=True)
def _telegram_limits_per_test(settings):
    """Each test its own Telegram send schedule: no chat's 1 message/s carries over between tests."""
    import uuid

    from bots.ratelimiter import memory_schedule

    settings.TELEGRAM_RATE_LIMIT_KEY_PREFIX = f"tg-rate-test-{uuid.uuid4().hex[:12]}"
    memory_schedule.clear()
