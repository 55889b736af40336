"""Logging for every process (web, bot, cluster): secrets redacted, the order in hand on each line.

Installed by LOGGING in reseller/settings.py and by gunicorn.conf.py for gunicorn's own logs.
Nothing here touches settings at import time: settings import this module, and gunicorn's
master process loads it before Django is set up.
"""

from __future__ import annotations

import functools
import logging
import os
import re
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar
from urllib.parse import urlsplit

from pythonjsonlogger.core import RESERVED_ATTRS
from pythonjsonlogger.json import JsonFormatter as BaseJsonFormatter

if TYPE_CHECKING:
    from sentry_sdk.types import Event, Hint

REDACTED = "[redacted]"

# Settings whose values are secrets wherever they appear: a message, its arguments, an
# exception's text (a URL with the bot token in it, a DSN in a connection error).
SECRET_SETTINGS = (
    "SECRET_KEY",
    "SUPPLIER_API_KEY",
    "CRYPTOPAY_TOKEN",
    "STRIPE_SECRET_KEY",
    "STRIPE_WEBHOOK_SECRET",
    "TELEGRAM_BOT_TOKEN",
    "TELEGRAM_WEBHOOK_SECRET",
    # The webhook's path segment is the second secret of the webhook URL (docs/bot.md).
    "TELEGRAM_WEBHOOK_PATH",
    "TELEGRAM_PAYMENTS_PROVIDER_TOKEN",
    "TON_API_KEY",
    "EMAIL_HOST_PASSWORD",
    "SENTRY_DSN",
)
# Settings that are URLs with a password in them.
SECRET_URL_SETTINGS = ("DATABASE_URL", "REDIS_URL", "EMAIL_URL", "SENTRY_DSN")
# Shorter values would redact ordinary words; no real key, token or password is that short.
MIN_SECRET_LENGTH = 6
# A Telegram bot token ("123456789:AA…"), e.g. in a Bot API URL, whichever bot it belongs to.
BOT_TOKEN_RE = re.compile(r"(?<![0-9])[0-9]{5,16}:[A-Za-z0-9_-]{30,}")

# The LogRecord attributes the logging module sets itself; anything else came in `extra`.
_RECORD_ATTRS = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime", "order"}


def _setting_values() -> dict[str, Any]:
    """The secret settings' values: Django's settings once loaded, else the environment.

    gunicorn's master logs before (and without) Django; it sees the same environment.
    """
    from django.conf import settings

    names = SECRET_SETTINGS + SECRET_URL_SETTINGS
    if settings.configured:
        values = {name: getattr(settings, name, "") for name in names}
        values["SECRET_KEY_FALLBACKS"] = getattr(settings, "SECRET_KEY_FALLBACKS", [])
        values["DATABASE_PASSWORDS"] = [db.get("PASSWORD", "") for db in settings.DATABASES.values()]
        return values
    return {name: os.environ.get(name, "") for name in names}


def secret_values() -> list[str]:
    """Every secret to scrub from logs, longest first (so a secret inside another goes too)."""
    found: set[str] = set()
    for name, value in _setting_values().items():
        candidates: Iterable[Any] = value if isinstance(value, list | tuple) else [value]
        for candidate in candidates:
            if not isinstance(candidate, str) or not candidate:
                continue
            if name in SECRET_URL_SETTINGS:
                parts = urlsplit(candidate)
                # A URL's password, and for a DSN its key (the user part) as well.
                candidate_parts = [parts.password or ""]
                if name == "SENTRY_DSN":
                    candidate_parts += [candidate, parts.username or ""]
            else:
                candidate_parts = [candidate]
            found.update(part for part in candidate_parts if len(part) >= MIN_SECRET_LENGTH)
    return sorted(found, key=len, reverse=True)


def redact(text: str, secrets: list[str] | None = None) -> str:
    """The text with every known secret and anything shaped like a bot token replaced."""
    for secret in secret_values() if secrets is None else secrets:
        if secret in text:
            text = text.replace(secret, REDACTED)
    return BOT_TOKEN_RE.sub(REDACTED, text)


class RedactSecretsFilter(logging.Filter):
    """Scrub secrets from a record before any formatter sees it: message, arguments, traceback.

    The message is rendered here (msg % args) and the traceback formatted here, so what a
    handler writes is only ever the redacted text.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        secrets = secret_values()
        try:
            message = record.getMessage()
        except (TypeError, ValueError):
            # A malformed call (arguments not matching the format): logging itself never raises
            # into the caller for that, and a filter runs outside its guard, so neither may this.
            message = f"{record.msg} {record.args!r}"
        record.msg = redact(message, secrets)
        record.args = None
        if record.exc_info:
            if not record.exc_text:
                record.exc_text = logging.Formatter().formatException(record.exc_info)
            # Formatters fall back to exc_text; none can format the live exception again.
            record.exc_info = None
        if record.exc_text:
            record.exc_text = redact(record.exc_text, secrets)
        if record.stack_info:
            record.stack_info = redact(record.stack_info, secrets)
        for name, value in list(vars(record).items()):
            if name not in _RECORD_ATTRS and isinstance(value, str):
                setattr(record, name, redact(value, secrets))
        return True


# --- The order in hand -------------------------------------------------------------------------

_current_order: ContextVar[str | None] = ContextVar("order_log_reference", default=None)


@contextmanager
def order_log_context(reference: str) -> Iterator[None]:
    """Every record logged inside (this thread or asyncio task) carries `order=reference`.

    For the bot: `with order_log_context(order.reference): ...` around the work on one order.
    """
    token = _current_order.set(reference)
    try:
        yield
    finally:
        _current_order.reset(token)


def current_order() -> str | None:
    return _current_order.get()


class OrderContextFilter(logging.Filter):
    """Add the order being handled, if any, to the record as `order`."""

    def filter(self, record: logging.LogRecord) -> bool:
        reference = _current_order.get()
        if reference is not None and not hasattr(record, "order"):
            record.order = reference
        return True


def order_label(*, order_id: int | None = None, public_id: Any = None) -> str | None:
    """The order's reference (ORD-…) for logs; its public id or pk while it has none yet."""
    from orders.models import Order

    lookup = {"pk": order_id} if order_id is not None else {"public_id": public_id}
    row = Order.objects.filter(**lookup).values_list("reference", "public_id").first()
    if row is None:
        return str(public_id) if public_id is not None else None
    reference, row_public_id = row
    return reference or str(row_public_id)


P = ParamSpec("P")
R = TypeVar("R")


def order_task(func: Callable[P, R]) -> Callable[P, R]:
    """For a django-q2 task whose first argument is an order id: its log lines carry the order."""

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        order_id = args[0] if args else kwargs.get("order_id")
        label = order_label(order_id=order_id) if isinstance(order_id, int) else None
        if label is None:
            return func(*args, **kwargs)
        with order_log_context(label):
            return func(*args, **kwargs)

    return wrapper


class OrderLogContextMiddleware:
    """Web requests about one order (a `public_id` in the URL) log with that order's reference."""

    def __init__(self, get_response: Callable[[Any], Any]) -> None:
        self.get_response = get_response

    def __call__(self, request: Any) -> Any:
        try:
            return self.get_response(request)
        finally:
            token = getattr(request, "_order_log_token", None)
            if token is not None:
                _current_order.reset(token)

    def process_view(self, request: Any, view_func: Any, view_args: Any, view_kwargs: dict) -> None:
        public_id = view_kwargs.get("public_id")
        if public_id is not None:
            label = order_label(public_id=public_id)
            if label is not None:
                request._order_log_token = _current_order.set(label)


# --- Formatting --------------------------------------------------------------------------------

class JsonFormatter(BaseJsonFormatter):
    """One JSON object per line: time, level, logger, message, order (when there is one), extras."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("rename_fields", {"asctime": "time", "levelname": "level", "name": "logger"})
        # Django's request logs carry the HttpRequest object; its repr holds the full path.
        kwargs.setdefault("reserved_attrs", [*RESERVED_ATTRS, "request"])
        super().__init__("%(asctime)s %(levelname)s %(name)s %(message)s", *args, **kwargs)


def sentry_before_send(event: Event, hint: Hint) -> Event | None:
    """Sentry's before_send: the same redaction over every string of the event."""
    secrets = secret_values()

    def scrub(value: Any) -> Any:
        if isinstance(value, str):
            return redact(value, secrets)
        if isinstance(value, dict):
            return {key: scrub(item) for key, item in value.items()}
        if isinstance(value, list | tuple):
            return [scrub(item) for item in value]
        return value

    return scrub(event)
