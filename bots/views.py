"""Webhook mode: Telegram POSTs each update here; the process's bot runtime handles it."""

from __future__ import annotations

import json
import logging

from django.conf import settings
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseNotAllowed
from django.utils.crypto import constant_time_compare
from django.views.decorators.csrf import csrf_exempt
from telegram import Update

from bots.runtime import BotUnavailable, webhook_runtime

logger = logging.getLogger(__name__)

SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
# How long the request waits for the handlers; below the usual 30 s worker timeout. An update
# still running after that finishes in the background and Telegram gets its 200 anyway:
# a non-2xx answer would make Telegram send the same update again.
PROCESS_TIMEOUT = 25.0


def _webhook_enabled() -> bool:
    return bool(settings.TELEGRAM_BOT_TOKEN and settings.TELEGRAM_WEBHOOK_PATH
                and settings.TELEGRAM_WEBHOOK_SECRET)


@csrf_exempt
def webhook(request: HttpRequest, path_secret: str) -> HttpResponse:
    """Check the path and Telegram's secret header, then hand the update to the bot.

    404 for a wrong path (or webhook mode off), 403 without the right secret, 400 for a body
    that is not an update, 503 while the bot cannot start (Telegram retries later).
    """
    if not _webhook_enabled() or not constant_time_compare(path_secret, settings.TELEGRAM_WEBHOOK_PATH):
        raise Http404("No such page.")
    if request.method != "POST":
        return HttpResponseNotAllowed(["POST"])
    if not constant_time_compare(request.headers.get(SECRET_HEADER, ""), settings.TELEGRAM_WEBHOOK_SECRET):
        logger.warning("webhook request without the right secret token from %s",
                       request.META.get("REMOTE_ADDR"))
        return HttpResponse("Forbidden", status=403, content_type="text/plain")
    try:
        update_data = json.loads(request.body)
    except (ValueError, UnicodeDecodeError):
        return HttpResponse("Body is not JSON", status=400, content_type="text/plain")
    if not isinstance(update_data, dict) or type(update_data.get("update_id")) is not int:
        return HttpResponse("Body is not a Telegram update", status=400, content_type="text/plain")
    try:
        runtime = webhook_runtime()
    except BotUnavailable as exc:
        logger.error("webhook update %s not handled: %s", update_data["update_id"], exc)
        return HttpResponse("Bot unavailable", status=503, content_type="text/plain")
    assert runtime.application is not None
    try:
        update = Update.de_json(update_data, runtime.application.bot)
    except (TypeError, ValueError, KeyError, AttributeError) as exc:
        # Authentic (the secret matched) but unreadable, e.g. a Bot API newer than our library:
        # acknowledge it, or Telegram would redeliver it forever.
        logger.error("webhook update %s dropped, cannot be read: %r", update_data["update_id"], exc)
        return HttpResponse(status=200)
    if not runtime.process(update, timeout=PROCESS_TIMEOUT):
        logger.warning("update %s still running after %s s", update.update_id, PROCESS_TIMEOUT)
    return HttpResponse(status=200)
