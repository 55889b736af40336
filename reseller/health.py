"""`/healthz` for a load balancer: does this web process reach the database and the queue broker?

No authentication and nothing secret in the answer: which of the two failed, never why (the
reason goes to the log). Served twice over: as a Django view (reseller/urls.py) and, in front
of Django in reseller/wsgi.py, before ALLOWED_HOSTS is checked, so a load balancer may probe a
web process by its IP address. The answer builds no URL from the Host header, which is what
host validation protects.
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Callable, Iterable
from typing import Any

import redis
from django.core import signals
from django.db import DatabaseError, connections
from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed
from django_q.brokers import Broker, get_broker
from django_q.conf import Conf

logger = logging.getLogger(__name__)

HEALTHZ_PATH = "/healthz"
# A load balancer probes every few seconds; a check that hangs is a failed check.
BROKER_TIMEOUT_SECONDS = 2.0


@functools.cache
def _broker() -> Broker:
    """One broker (and so one Redis connection pool) per process, with short socket timeouts."""
    broker = get_broker()
    pool = getattr(broker.connection, "connection_pool", None)
    if pool is not None:  # Redis: django-q2 opens it without timeouts
        pool.connection_kwargs.update(socket_connect_timeout=BROKER_TIMEOUT_SECONDS,
                                      socket_timeout=BROKER_TIMEOUT_SECONDS)
    return broker


def _database_ok() -> bool:
    try:
        with connections["default"].cursor() as cursor:
            cursor.execute("SELECT 1")
    except DatabaseError as exc:
        # A warning, no traceback: the load balancer asks every few seconds during an outage.
        logger.warning("healthz: the database does not answer: %s", exc)
        return False
    return True


def _broker_ok() -> bool:
    try:
        if Conf.ORM:
            # The ORM broker's ping() answers True without asking anything: read its table.
            from django_q.models import OrmQ

            OrmQ.objects.using(Conf.ORM).exists()
        elif not _broker().ping():
            logger.warning("healthz: the queue broker does not answer its ping")
            return False
    except (DatabaseError, redis.RedisError, OSError) as exc:
        logger.warning("healthz: the queue broker does not answer: %s", exc)
        return False
    return True


def health_check() -> tuple[int, dict[str, str]]:
    """HTTP status and the body: 200 when the database and the broker both answer, else 503."""
    checks = {"database": _database_ok(), "broker": _broker_ok()}
    body = {name: "ok" if ok else "failed" for name, ok in checks.items()}
    return (200 if all(checks.values()) else 503), body


def _json(body: dict[str, str]) -> bytes:
    return json.dumps(body).encode()


def healthz(request: HttpRequest) -> HttpResponse:
    """The check as a Django view (the test client, runserver without reseller.wsgi)."""
    if request.method not in ("GET", "HEAD"):
        return HttpResponseNotAllowed(["GET", "HEAD"])
    status, body = health_check()
    response = HttpResponse(_json(body), status=status, content_type="application/json")
    response["Cache-Control"] = "no-store"
    return response


class HealthzFirst:
    """WSGI middleware: answer GET/HEAD /healthz itself, anything else goes to Django."""

    def __init__(self, application: Callable[..., Iterable[bytes]]) -> None:
        self.application = application

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if (environ.get("PATH_INFO") != HEALTHZ_PATH
                or environ.get("REQUEST_METHOD") not in ("GET", "HEAD")):
            return self.application(environ, start_response)
        # As Django's handler does: database connections are opened and closed per request.
        signals.request_started.send(sender=self.__class__, environ=environ)
        try:
            status, body = health_check()
        finally:
            signals.request_finished.send(sender=self.__class__)
        content = _json(body)
        start_response("200 OK" if status == 200 else "503 Service Unavailable", [
            ("Content-Type", "application/json"),
            ("Content-Length", str(len(content))),
            ("Cache-Control", "no-store"),
        ])
        return [] if environ["REQUEST_METHOD"] == "HEAD" else [content]
