"""django-q2 tasks of the partner API: thin wrappers that reload rows by id."""

from partners import services, webhooks


def order_status_changed(order_id: int, status: str) -> int | None:
    """Announce an API order's new status to its partner's webhook (ORDER_STATUS_TASKS)."""
    delivery = webhooks.order_status_announce(order_id=order_id)
    return delivery.pk if delivery else None


def webhook_deliver(delivery_id: int) -> str:
    """POST one webhook delivery once; failures are retried by webhooks_due."""
    return webhooks.webhook_deliver(delivery_id=delivery_id).status


def webhooks_due() -> int:
    """Enqueue webhook retries that are due (every minute)."""
    return len(webhooks.webhooks_due())


def idempotency_keys_purge() -> int:
    """Forget Idempotency-Keys past their retention (hourly)."""
    return services.idempotency_keys_purge()
