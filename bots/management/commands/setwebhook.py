"""Register (or remove) the bot's webhook with Telegram, and its command menu."""

import asyncio

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.urls import reverse
from telegram import Bot
from telegram.error import TelegramError

from bots.application import ALLOWED_UPDATES, bot_commands_set


def webhook_url() -> str:
    """TELEGRAM_WEBHOOK_URL as given if it already ends in the webhook path, else base + path."""
    path = reverse("bots:webhook", kwargs={"path_secret": settings.TELEGRAM_WEBHOOK_PATH})
    base = settings.TELEGRAM_WEBHOOK_URL.rstrip("/")
    return base if base.endswith(path.rstrip("/")) else base + path


class Command(BaseCommand):
    help = ("Point Telegram at this site's webhook: setWebhook with TELEGRAM_WEBHOOK_URL + "
            "/bot/webhook/<TELEGRAM_WEBHOOK_PATH> and the secret token TELEGRAM_WEBHOOK_SECRET. "
            "--delete goes back to polling.")

    def add_arguments(self, parser) -> None:
        parser.add_argument("--delete", action="store_true", help="Remove the webhook instead.")
        parser.add_argument("--drop-pending-updates", action="store_true",
                            help="Ignore updates Telegram is still holding.")

    def handle(self, *args, **options) -> None:
        if not settings.TELEGRAM_BOT_TOKEN:
            raise CommandError("Set TELEGRAM_BOT_TOKEN first.")
        if not options["delete"]:
            missing = [name for name in ("TELEGRAM_WEBHOOK_URL", "TELEGRAM_WEBHOOK_PATH",
                                         "TELEGRAM_WEBHOOK_SECRET") if not getattr(settings, name)]
            if missing:
                raise CommandError(f"Set {', '.join(missing)} first.")
        try:
            message = asyncio.run(self._apply(delete=options["delete"],
                                              drop=options["drop_pending_updates"]))
        except TelegramError as exc:
            raise CommandError(f"Telegram refused: {exc}") from exc
        self.stdout.write(message)

    async def _apply(self, *, delete: bool, drop: bool) -> str:
        bot = Bot(token=settings.TELEGRAM_BOT_TOKEN, base_url=settings.TELEGRAM_API_BASE_URL,
                  base_file_url=settings.TELEGRAM_API_FILE_URL)
        async with bot:
            if delete:
                await bot.delete_webhook(drop_pending_updates=drop)
                return "Webhook removed: run `manage.py runbot` to poll."
            url = webhook_url()
            await bot.set_webhook(url=url, secret_token=settings.TELEGRAM_WEBHOOK_SECRET,
                                  allowed_updates=ALLOWED_UPDATES, drop_pending_updates=drop)
            await bot_commands_set(bot)
            # The path carries a secret: show where, not the whole URL.
            return f"Webhook set for @{bot.username} at {url.split('/bot/webhook/')[0]}/bot/webhook/…"
