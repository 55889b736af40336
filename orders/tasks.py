"""django-q2 tasks: thin wrappers that reload rows by id and call one service."""

from orders import services
from reseller.logging import order_task


@order_task
def fulfil_order(order_id: int) -> str:
    """Drive one paid order towards delivery, and other due orders alongside it."""
    return services.fulfil_concurrently(order_id=order_id).status


@order_task
def refund_order(order_id: int) -> str:
    """Refund one order in refund_pending."""
    return services.order_refund(order_id=order_id).status


def sweep() -> dict[str, list[int]]:
    """Re-enqueue paid orders nobody is working on; resume held ones."""
    result = services.orders_sweep()
    return {"enqueued": result.enqueued, "resumed": result.resumed, "refunds": result.refunds}


def expire_unpaid() -> int:
    """Expire orders whose payment window passed."""
    return services.orders_expire()


def payments_poll() -> dict[str, int]:
    """Ask providers about open invoices (backstop for webhooks; TON reads the chain)."""
    from orders.payments.services import payments_poll as poll

    return poll()
