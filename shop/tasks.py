"""django-q2 tasks of the storefront: the web buyer's receipt e-mail.

order_transition enqueues order_receipt on commit of a move to delivered, refund_pending or
refunded of a web order (settings.ORDER_NOTICE_TASKS["web"]); a note on the order makes a
re-run send nothing.
"""

from reseller.logging import order_task
from shop.services import order_receipt_send


@order_task
def order_receipt(order_id: int, status: str, resend: int | None = None) -> str:
    """E-mail the receipt for the order's move to `status` if the buyer gave an address."""
    return order_receipt_send(order_id=order_id, status=status, resend=resend)
