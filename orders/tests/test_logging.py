"""Logs through the configured handlers: secrets never written, the order in hand on each line.

These read what the root logger's real handler writes (its stream swapped for a buffer):
caplog sits beside the handlers and would see records before their filters run.
"""

from __future__ import annotations

import io
import json
import logging
import os
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator

import pytest
from django.conf import settings
from django.http import HttpResponse
from django.test import RequestFactory
from django.utils import timezone

from orders import tasks
from orders.models import OrderStatus as S
from reseller.logging import (
    JsonFormatter,
    OrderLogContextMiddleware,
    current_order,
    order_log_context,
    sentry_before_send,
)

PLANTED = "planted-S3CRET-" + uuid.uuid4().hex
BOT_TOKEN = "987654321:AAFplantedBotToken_abcdefghijklmnopqrstu"
logger = logging.getLogger("orders.tests.logging")


def _console() -> logging.Handler:
    handlers = [handler for handler in logging.getLogger().handlers if handler.name == "console"]
    assert handlers, "LOGGING installs the 'console' handler on the root logger"
    return handlers[0]


@pytest.fixture
def console_output() -> Iterator[io.StringIO]:
    """What the configured console handler writes, filters and all."""
    handler = _console()
    buffer = io.StringIO()
    old_stream = handler.setStream(buffer)
    try:
        yield buffer
    finally:
        handler.setStream(old_stream)


@pytest.fixture
def json_console(console_output) -> Iterator[io.StringIO]:
    """The console handler formatting as production's LOGGING does."""
    handler = _console()
    old_formatter = handler.formatter
    handler.setFormatter(JsonFormatter())
    try:
        yield console_output
    finally:
        handler.setFormatter(old_formatter)


@pytest.fixture
def planted_secrets(settings):
    settings.SECRET_KEY = f"{PLANTED}-key"
    settings.STRIPE_SECRET_KEY = f"sk_live_{PLANTED}"
    settings.SUPPLIER_API_KEY = f"supplier-{PLANTED}"
    settings.TELEGRAM_WEBHOOK_PATH = f"path-{PLANTED}"
    settings.SENTRY_DSN = f"https://{PLANTED}dsn@o1.ingest.example/2"


def test_secrets_never_reach_the_log_output(planted_secrets, console_output):
    logger.warning("calling the supplier with key %s", settings.SUPPLIER_API_KEY)
    logger.warning(f"stripe key {settings.STRIPE_SECRET_KEY} in the message itself")
    logger.warning("webhook hit", extra={"path": f"/bot/webhook/{settings.TELEGRAM_WEBHOOK_PATH}"})
    logger.warning("Bot API call failed: https://api.telegram.org/bot%s/getMe", BOT_TOKEN)
    logger.warning("sentry at %r", {"dsn": settings.SENTRY_DSN})
    try:
        raise RuntimeError(f"signing with {settings.SECRET_KEY} failed")
    except RuntimeError:
        logger.exception("job failed")
    logger.warning("where am I", stack_info=True)
    logger.warning("a malformed call %s %s", settings.SECRET_KEY)  # must not raise either


    output = console_output.getvalue()
    assert PLANTED not in output
    assert BOT_TOKEN not in output and "AAFplantedBotToken" not in output
    # Only the secrets went: the lines, and the traceback, are still there to read.
    assert "calling the supplier with key [redacted]" in output
    assert "Bot API call failed: https://api.telegram.org/bot[redacted]/getMe" in output
    assert "RuntimeError: signing with [redacted] failed" in output
    assert "job failed" in output and "Traceback" in output
    assert "a malformed call %s %s ('[redacted]',)" in output


def test_secrets_never_reach_the_json_output(planted_secrets, json_console):
    logger.warning("key %s", settings.STRIPE_SECRET_KEY,
                   extra={"note": f"token {settings.SUPPLIER_API_KEY}"})
    try:
        raise ValueError(settings.SECRET_KEY)
    except ValueError:
        logger.exception("failed")
    output = json_console.getvalue()
    assert PLANTED not in output
    lines = [json.loads(line) for line in output.splitlines()]
    assert lines[0]["message"] == "key [redacted]" and lines[0]["note"] == "token [redacted]"
    assert "ValueError: [redacted]" in lines[1]["exc_info"]


def test_sentry_events_are_redacted_too(planted_secrets):
    event = {"message": f"boom {settings.SECRET_KEY}",
             "exception": {"values": [{"value": f"url bot{BOT_TOKEN}/sendMessage"}]},
             "extra": {"args": [settings.STRIPE_SECRET_KEY, 3]}}
    scrubbed = json.dumps(sentry_before_send(event, {}))
    assert PLANTED not in scrubbed and BOT_TOKEN not in scrubbed
    assert "boom [redacted]" in scrubbed


@pytest.mark.django_db
def test_a_task_logs_with_its_order_reference_as_json(make_order, settings, json_console):
    # Nothing listens at the supplier's address: the task logs a warning and leaves the
    # retry to the recovery loop (the budget is shorter than the back-off).
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    settings.SUPPLIER_CODE = "sandbox"
    settings.SUPPLIER_BASE_URL = f"http://127.0.0.1:{closed_port}"
    settings.FULFILMENT_POLL_BUDGET_SECONDS = 0.2
    order = make_order(S.PAID, paid_at=timezone.now(), next_action_at=timezone.now())

    tasks.fulfil_order(order.pk)

    records = [json.loads(line) for line in json_console.getvalue().splitlines()]
    retry = [record for record in records if "retry in" in record["message"]]
    assert retry, records
    assert retry[0]["order"] == order.reference == f"ORD-{order.pk:06d}"
    assert {"time", "level", "logger", "message"} <= retry[0].keys()
    assert current_order() is None, "the context ends with the task"


@pytest.mark.django_db
def test_web_requests_about_an_order_log_its_reference(make_order):
    order = make_order()
    seen: list[str | None] = []

    def view_logging(request):
        middleware.process_view(request, view_logging, (), {"public_id": order.public_id})
        seen.append(current_order())
        return HttpResponse()

    middleware = OrderLogContextMiddleware(view_logging)
    middleware(RequestFactory().get(f"/orders/{order.public_id}/"))
    assert seen == [order.reference]
    assert current_order() is None



def test_order_log_context_nests_and_resets():
    with order_log_context("ORD-000001"):
        with order_log_context("ORD-000002"):
            assert current_order() == "ORD-000002"
        assert current_order() == "ORD-000001"
    assert current_order() is None


def test_production_logs_are_json_with_the_order_and_no_secrets(tmp_path):
    """In production (DJANGO_ENV=production) the configured handler writes one JSON object a line."""
    secret_key = "prod-" + uuid.uuid4().hex * 2
    env = {**os.environ, "DJANGO_ENV": "production", "SECRET_KEY": secret_key,
           "SITE_URL": "https://shop.example", "ALLOWED_HOSTS": "shop.example",
           "DATABASE_URL": f"sqlite:///{tmp_path / 'prod.sqlite3'}", "SENTRY_DSN": "",
           "STATIC_ROOT": str(tmp_path / "static")}
    script = (
        "import django, logging; django.setup()\n"
        "from django.conf import settings\n"
        "from reseller.logging import order_log_context\n"
        "with order_log_context('ORD-000042'):\n"
        "    logging.getLogger('orders.services').warning('signed with %s', settings.SECRET_KEY)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], cwd=settings.BASE_DIR, env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert secret_key not in done.stderr
    lines = [json.loads(line) for line in done.stderr.splitlines() if line.startswith("{")]
    [line] = [line for line in lines if line["logger"] == "orders.services"]
    assert line["order"] == "ORD-000042"
    assert line["message"] == "signed with [redacted]" and line["level"] == "WARNING"
