"""Building the bot: one python-telegram-bot Application with our handlers, processor and limits."""

from __future__ import annotations

import logging

from django.conf import settings
from django.utils import translation
from telegram import Bot, BotCommand, Update
from telegram.ext import Application

from bots.database import database_threads_stop
from bots.handlers import handlers_register
from bots.messages import COMMANDS
from bots.processor import DEFAULT_MAX_RUNNING, PerUserUpdateProcessor
from bots.ratelimiter import CHAT_BURST, SharedRateLimiter
from bots.services import LANGUAGES

# The update types the handlers use; setWebhook and getUpdates ask Telegram for these only.
ALLOWED_UPDATES = [Update.MESSAGE, Update.CALLBACK_QUERY, Update.MY_CHAT_MEMBER,
                   Update.PRE_CHECKOUT_QUERY]
# Enough HTTP connections for every running handler to talk to Telegram at once.
CONNECTION_POOL_SIZE = DEFAULT_MAX_RUNNING + 8

# httpx logs each request's URL at INFO, and a Bot API URL contains the bot token.
logging.getLogger("httpx").setLevel(logging.WARNING)


def rate_limiter_build(*, token: str | None = None, chat_burst: int = CHAT_BURST) -> SharedRateLimiter:
    """Telegram's limits (30 messages/s overall, 1/s per chat) counted for every process of this bot.

    In Redis when REDIS_URL is set, else in this process only (bots/ratelimiter.py).
    `chat_burst`: messages allowed back to back in one chat before 1/s applies.
    """
    bot_id = (token or settings.TELEGRAM_BOT_TOKEN).split(":", 1)[0]
    return SharedRateLimiter(redis_url=settings.REDIS_URL, chat_burst=chat_burst,
                             prefix=f"{settings.TELEGRAM_RATE_LIMIT_KEY_PREFIX}:{bot_id}")


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
        builder.rate_limiter(rate_limiter_build(token=token))
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
