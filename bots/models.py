"""Who talks to the bot: language choice, where each buyer stands in a purchase, and notices sent."""

from django.db import models


class TelegramUser(models.Model):
    """A Telegram account that has talked to the bot.

    The purchase in progress (state, flow, draft) lives here rather than in the bot process,
    so any web process can answer the next update in webhook mode.
    """

    class Language(models.TextChoices):
        AUTO = "", "From Telegram"
        EN = "en", "English"
        RU = "ru", "Русский"

    telegram_id = models.BigIntegerField(unique=True)
    username = models.CharField(max_length=32, blank=True)
    first_name = models.CharField(max_length=64, blank=True)
    # The IETF tag Telegram sends with each update, from the user's app settings.
    language_code = models.CharField(max_length=35, blank=True)
    # The buyer's /language choice; blank follows language_code.
    language = models.CharField(max_length=8, blank=True, choices=Language.choices)
    # Conversation step (bots.services.STATES), the purchase's token in button data, and what
    # the buyer chose so far: {"package_id" | "quantity", "recipient", "order_id"}.
    state = models.CharField(max_length=30, blank=True)
    flow = models.CharField(max_length=16, blank=True)
    draft = models.JSONField(default=dict, blank=True)
    # Set when Telegram says the user blocked the bot; cleared when they write again.
    blocked_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"@{self.username}" if self.username else str(self.telegram_id)


class BuyerNotice(models.Model):
    """One Telegram message to a buyer about an order's final move; one per order and status."""

    class Outcome(models.TextChoices):
        SENDING = "sending", "Sending"
        SENT = "sent", "Sent"
        BLOCKED = "blocked", "Buyer blocked the bot"
        FAILED = "failed", "Failed"
        SKIPPED = "skipped", "Skipped"

    order = models.ForeignKey("orders.Order", on_delete=models.CASCADE, related_name="bot_notices")
    status = models.CharField(max_length=20, help_text="The order status the notice is about.")
    chat_id = models.BigIntegerField()
    outcome = models.CharField(max_length=20, choices=Outcome.choices, default=Outcome.SENDING)
    message_id = models.BigIntegerField(null=True, blank=True)
    error = models.CharField(max_length=255, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["order", "status"], name="buyer_notice_once"),
        ]

    def __str__(self) -> str:
        return f"{self.order} {self.status}: {self.outcome}"
