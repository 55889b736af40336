"""`/healthz`: 200 when the database and the queue broker answer, 503 naming what failed."""

from __future__ import annotations

import json
import socket
from wsgiref.util import setup_testing_defaults

import pytest
from django.core import signals
from django.db import OperationalError, close_old_connections
from django.db.backends.utils import CursorWrapper

from reseller import health

pytestmark = pytest.mark.django_db


@pytest.fixture
def redis_broker_down(monkeypatch):
    """django-q2's Redis broker pointed at a port where nothing listens."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setattr(health.Conf, "ORM", None)
    monkeypatch.setattr(health.Conf, "REDIS", f"redis://127.0.0.1:{port}/0")
    health._broker.cache_clear()
    yield
    health._broker.cache_clear()


def _wsgi_get(path: str, host: str) -> tuple[str, dict[str, str], bytes]:
    """A request straight to the WSGI application gunicorn serves (reseller.wsgi)."""
    from reseller.wsgi import application

    environ: dict = {"PATH_INFO": path, "HTTP_HOST": host, "REQUEST_METHOD": "GET"}
    setup_testing_defaults(environ)
    answer: dict = {}

    def start_response(status, headers, exc_info=None):
        answer["status"], answer["headers"] = status, dict(headers)

    # As Django's test client does: the test's transaction must outlive the request.
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    try:
        chunks = application(environ, start_response)
        body = b"".join(chunks)
        getattr(chunks, "close", lambda: None)()
    finally:
        signals.request_started.connect(close_old_connections)
        signals.request_finished.connect(close_old_connections)
    return answer["status"], answer["headers"], body


def test_healthz_answers_ok_when_database_and_broker_answer(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"database": "ok", "broker": "ok"}
    assert response["Cache-Control"] == "no-store"
    assert client.post("/healthz").status_code == 405


def test_healthz_names_the_database_when_it_fails(client, monkeypatch, settings):
    def broken(*args, **kwargs):
        raise OperationalError("connection refused")

    monkeypatch.setattr(CursorWrapper, "execute", broken)
    response = client.get("/healthz")
    assert response.status_code == 503
    # The ORM broker lives in the same database, so it fails with it; Redis does not.
    broker = "ok" if "redis" in settings.Q_CLUSTER else "failed"
    assert response.json() == {"database": "failed", "broker": broker}
    assert b"refused" not in response.content, "the reason goes to the log, not the answer"


def test_healthz_names_the_broker_when_redis_is_down(client, redis_broker_down):
    response = client.get("/healthz")
    assert response.status_code == 503
    assert response.json() == {"database": "ok", "broker": "failed"}


def test_a_load_balancer_may_probe_by_ip_address_and_nothing_else_may(settings):
    settings.ALLOWED_HOSTS = ["shop.example"]
    status, headers, body = _wsgi_get("/healthz", "10.0.0.5")
    assert status == "200 OK" and headers["Content-Type"] == "application/json"
    assert json.loads(body) == {"database": "ok", "broker": "ok"}
    # Every other path still refuses a host not in ALLOWED_HOSTS.
    assert _wsgi_get("/terms/", "10.0.0.5")[0].startswith("400")
    assert _wsgi_get("/healthz/", "10.0.0.5")[0].startswith("400")


def test_healthz_by_ip_reports_a_failed_broker(settings, redis_broker_down):
    settings.ALLOWED_HOSTS = ["shop.example"]
    status, _, body = _wsgi_get("/healthz", "10.0.0.5")
    assert status == "503 Service Unavailable"
    assert json.loads(body) == {"database": "ok", "broker": "failed"}
