from django.contrib import admin

from bots.models import BuyerNotice, TelegramUser


@admin.register(TelegramUser)
class TelegramUserAdmin(admin.ModelAdmin):
    list_display = ["telegram_id", "username", "first_name", "language_code", "language", "state",
                    "blocked_at", "updated_at"]
    list_filter = ["language", "state"]
    search_fields = ["telegram_id", "username", "first_name"]
    readonly_fields = ["telegram_id", "username", "first_name", "language_code", "state", "flow",
                       "draft", "blocked_at", "created_at", "updated_at"]


@admin.register(BuyerNotice)
class BuyerNoticeAdmin(admin.ModelAdmin):
    list_display = ["order", "status", "chat_id", "outcome", "error", "created_at"]
    list_filter = ["outcome", "status"]
    search_fields = ["order__reference", "chat_id"]
    readonly_fields = [f.name for f in BuyerNotice._meta.fields]

    def has_add_permission(self, request) -> bool:
        return False
