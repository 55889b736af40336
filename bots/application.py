"""Building the bot: one python-telegram-bot Application with our handlers, processor and limits."""

from __future__ import annotations

import logging

from django.conf import settings
from django.utils import translation
from telegram import Bot, BotCommand, Update
from telegram.ext import AIORateLimiter, Application

from bots.database import database_threads_stop
from bots.handlers import handlers_register
from bots.messages import COMMANDS
from bots.processor import DEFAULT_MAX_RUNNING, PerUserUpdateProcessor
from bots.services import LANGUAGES

# The update types the handlers use; setWebhook and getUpdates ask Telegram for these only.
ALLOWED_UPDATES = [Update.MESSAGE, Update.CALLBACK_QUERY, Update.MY_CHAT_MEMBER,
                   Update.PRE_CHECKOUT_QUERY]
# After a 429, wait Telegram's retry_after and try again this many times before giving up.
RATE_LIMIT_RETRIES = 3
# Enough HTTP connections for every running handler to talk to Telegram at once.
CONNECTION_POOL_SIZE = DEFAULT_MAX_RUNNING + 8

# httpx logs each request's URL at INFO, and a Bot API URL contains the bot token.
logging.getLogger("httpx").setLevel(logging.WARNING)


def rate_limiter_build() -> AIORateLimiter:
    """Telegram's limits as python-telegram-bot encodes them: 30 messages/s overall, 20/min per group."""
    return AIORateLimiter(max_retries=RATE_LIMIT_RETRIES)


def application_build(*, token: str | None = None, base_url: str | None = None,
                      base_file_url: str | None = None, polling: bool = False) -> Application:
    """The bot's Application, talking to the Bot API at settings.TELEGRAM_API_BASE_URL.

    polling=True gives it an Updater (manage.py runbot) and registers the command menu on
    start; without it the application only processes updates handed to it (webhook mode).
    """
    builder = (
        Application.builder()
        .token(token or settings.TELEGRAM_BOT_TOKEN)
        .base_url(base_url or settings.TELEGRAM_API_BASE_URL)
        .base_file_url(base_file_url or settings.TELEGRAM_API_FILE_URL)
        .concurrent_updates(PerUserUpdateProcessor())
        .connection_pool_size(CONNECTION_POOL_SIZE)
    )
    if settings.TELEGRAM_RATE_LIMIT:
        builder.rate_limiter(rate_limiter_build())
    if polling:
        builder = builder.post_init(_post_init).post_shutdown(_post_shutdown)
    else:
        builder = builder.updater(None)
    application = builder.build()
    handlers_register(application)
    return application


async def _post_init(application: Application) -> None:
    await bot_commands_set(application.bot)


async def _post_shutdown(application: Application) -> None:
    database_threads_stop()


async def bot_commands_set(bot: Bot) -> None:
    """Register the command menu: English for everyone, Russian for Russian Telegram apps."""
    for language in LANGUAGES:
        with translation.override(language):
            commands = [BotCommand(command, str(description)) for command, description in COMMANDS]
        await bot.set_my_commands(commands, language_code=None if language == "en" else language)
