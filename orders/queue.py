"""Enqueueing background jobs; called from transaction.on_commit so a job never sees uncommitted rows."""

from django.conf import settings
from django_q.tasks import async_task


def enqueue_fulfilment(order_id: int) -> None:
    """Ask a worker to drive the order towards delivery."""
    async_task("orders.tasks.fulfil_order", order_id, group="fulfil", task_name=f"fulfil-{order_id}")


def enqueue_refund(order_id: int) -> None:
    """Ask a worker to refund the order's payments."""
    async_task("orders.tasks.refund_order", order_id, group="refund", task_name=f"refund-{order_id}")


def enqueue_buyer_notice(order_id: int, channel: str, status: str) -> None:
    """Tell the buyer about a final move, through the channel they ordered on, if it has a sender."""
    task = settings.ORDER_NOTICE_TASKS.get(channel)
    if task:
        async_task(task, order_id, status, group="notify", task_name=f"notify-{order_id}-{status}")


def enqueue_status_hook(order_id: int, channel: str, status: str) -> None:
    """Tell the channel's door about any status change (ORDER_STATUS_TASKS: partner webhooks)."""
    task = settings.ORDER_STATUS_TASKS.get(channel)
    if task:
        async_task(task, order_id, status, group="status", task_name=f"status-{order_id}-{status}")


def enqueue_buyer_notice_resend(order_id: int, channel: str, status: str, note_id: int) -> None:
    """Send the buyer's notice about `status` again, once for the operator's note `note_id`."""
    task = settings.ORDER_NOTICE_TASKS.get(channel)
    if task:
        async_task(task, order_id, status, resend=note_id, group="notify",
                   task_name=f"notify-{order_id}-{status}-resend-{note_id}")


def enqueue_periodic(func: str) -> None:
    """Run one of the periodic jobs now (the recovery loop does at cluster start)."""
    async_task(func, group="periodic", task_name=f"{func.rsplit('.', 1)[-1]}-now")
