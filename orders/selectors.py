"""Order reads that are more than one line of ORM."""

from orders.models import Order


def order_list_for_buyer(*, telegram_id: int, limit: int = 10) -> list[Order]:
    """A Telegram buyer's most recent orders, newest first, with the product loaded for display."""
    return list(
        Order.objects.filter(buyer_telegram_id=telegram_id)
        .select_related("product")
        .order_by("-created_at", "-pk")[:limit]
    )
