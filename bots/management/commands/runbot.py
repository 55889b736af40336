"""Run the Telegram bot with long polling, until interrupted."""

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from bots.application import ALLOWED_UPDATES, application_build


class Command(BaseCommand):
    help = ("Run the Telegram bot with long polling (TELEGRAM_BOT_TOKEN). Starting removes a "
            "webhook, if one is set: Telegram delivers updates one way at a time.")

    def add_arguments(self, parser) -> None:
        parser.add_argument("--drop-pending-updates", action="store_true",
                            help="Ignore updates that arrived while the bot was down.")

    def handle(self, *args, **options) -> None:
        if not settings.TELEGRAM_BOT_TOKEN:
            raise CommandError("Set TELEGRAM_BOT_TOKEN (from @BotFather) in .env or the environment.")
        application = application_build(polling=True)
        self.stdout.write(f"Telegram bot: long polling {settings.TELEGRAM_API_BASE_URL}… (Ctrl-C stops)")
        application.run_polling(
            allowed_updates=ALLOWED_UPDATES,
            drop_pending_updates=options["drop_pending_updates"],
        )
