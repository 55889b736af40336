"""Same-run reference for the bot: a plain python-telegram-bot app doing one send per update.

Served by the same gunicorn as the shop (BENCH_URLCONF, under /_bench/), fed the same way as
the shop's webhook: the view hands each POSTed update to an Application running on an event
loop in a thread of this worker and waits for its handler, as any WSGI + python-telegram-bot
set-up must. No shop code is called: one handler, no database, PTB's defaults otherwise
(concurrent updates on, no rate limiter), talking to the same Bot API as the shop's bot.
"""

from __future__ import annotations

import asyncio
import json
import os
import threading

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.urls import path
from django.views.decorators.csrf import csrf_exempt
from telegram import Update
from telegram.ext import Application, CommandHandler, ContextTypes

_lock = threading.Lock()
_runtime: tuple[int, Application, asyncio.AbstractEventLoop] | None = None


async def start_callback(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    assert update.effective_chat is not None
    await update.effective_chat.send_message("Hello! Tap Buy to get Stars.")


def _start() -> tuple[int, Application, asyncio.AbstractEventLoop]:
    application = (Application.builder().token(settings.TELEGRAM_BOT_TOKEN)
                   .base_url(settings.TELEGRAM_API_BASE_URL).updater(None)
                   .concurrent_updates(True).build())
    application.add_handler(CommandHandler("start", start_callback))
    loop = asyncio.new_event_loop()
    threading.Thread(target=loop.run_forever, name="reference-bot", daemon=True).start()
    asyncio.run_coroutine_threadsafe(application.initialize(), loop).result(30)
    return os.getpid(), application, loop


def _application() -> tuple[Application, asyncio.AbstractEventLoop]:
    global _runtime
    with _lock:
        if _runtime is None or _runtime[0] != os.getpid():
            _runtime = _start()
        return _runtime[1], _runtime[2]


@csrf_exempt
def bot_webhook(request: HttpRequest) -> HttpResponse:
    application, loop = _application()
    update = Update.de_json(json.loads(request.body), application.bot)
    asyncio.run_coroutine_threadsafe(application.process_update(update), loop).result(25)
    return HttpResponse(status=200)


urlpatterns = [path("bot-webhook", bot_webhook)]
