"""Storefront writes: the receipt e-mail, and counting order-lookup guesses."""

from __future__ import annotations

from django.conf import settings
from django.core.cache import caches
from django.core.mail import EmailMessage
from django.db import transaction
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import translation
from django.utils.translation import gettext as _

from orders.display import (
    STATUS_LABELS,
    money_display,
    number_display,
    order_status_message,
    recipient_handle,
)
from orders.models import Order, OrderEvent, Payment
from orders.transitions import BUYER_NOTICE_STATUSES
from reseller.ratelimits import counter_add

# The order note that records a receipt, checked before sending: one e-mail per order and status.
RECEIPT_REASON = "Receipt e-mailed"
RECEIPT_ACTOR = "receipt:email"
# Order lookup: this many wrong guesses per client address, and per reference, in the window.
LOOKUP_MAX_FAILURES = 10
LOOKUP_WINDOW_SECONDS = 10 * 60


def order_receipt_send(*, order_id: int, status: str, resend: int | None = None) -> str:
    """E-mail the web buyer a receipt for the order's move to `status`; at most once per status.

    The note is written before the message leaves, so a second run (or a racing one) finds
    it and sends nothing; a send that raises removes it again, so the task's retry can send.
    `resend`, an operator's resend note (orders.services.order_notice_resend), sends it once
    more: at most once per such note.
    """
    if status not in BUYER_NOTICE_STATUSES:
        return "not a receipt status"
    claim = _receipt_claim(order_id=order_id, status=status, resend=resend)
    if claim is None:
        return "skipped"
    order, note = claim
    try:
        _receipt_message(order).send()
    except Exception:
        # Not sent (SMTP refused, unreachable): release the claim and let the task's failure
        # show; the queue's retry sends it. A worker killed mid-send keeps the claim: at most once.
        OrderEvent.objects.filter(pk=note.pk).delete()
        raise
    return "sent"


@transaction.atomic
def _receipt_claim(*, order_id: int, status: str, resend: int | None = None,
                   ) -> tuple[Order, OrderEvent] | None:
    """Claim the receipt for (order, status); None when there is nothing to send.

    Nothing to send: no address, a later notice already covers it (refund_pending once the
    order is refunded, as the bot's notice does), or it was sent already. The row lock (and
    on SQLite the IMMEDIATE transaction) makes two claimers take turns.
    """
    order = (Order.objects.select_for_update().select_related("product")
             .filter(pk=order_id).first())
    if order is None or not order.buyer_email:
        return None
    if order.status != status and order.status in BUYER_NOTICE_STATUSES:
        return None
    sent = order.events.filter(reason=RECEIPT_REASON, data__receipt=status)
    if resend is not None:
        sent = sent.filter(data__resend=resend)
    if sent.exists():
        return None
    note = OrderEvent.objects.create(
        order=order, from_status=order.status, to_status=order.status, actor=RECEIPT_ACTOR,
        reason=RECEIPT_REASON, data={"receipt": status, "to": order.buyer_email,
                                     **({"resend": resend} if resend is not None else {})},
    )
    return order, note


def _receipt_language(order: Order) -> str:
    """The language the buyer ordered in (recorded when the order was placed), else English."""
    placed = order.events.filter(from_status="").order_by("id").first()
    language = (placed.data or {}).get("language", "") if placed else ""
    return language if language in dict(settings.LANGUAGES) else settings.LANGUAGE_CODE


def _receipt_message(order: Order) -> EmailMessage:
    payments = list(order.payments.exclude(provider_reference="").order_by("created_at", "id"))
    with translation.override(_receipt_language(order)):
        label = STATUS_LABELS.get(order.status)
        status_label = str(label) if label is not None else order.get_status_display()
        method = settings.PAYMENT_METHODS.get(order.payment_method, {}).get("label")
        context = {
            "message": order_status_message(order),
            "reference": order.reference,
            "status_label": status_label,
            "stars": number_display(order.stars),
            "handle": recipient_handle(order.recipient_username, order.recipient_user_id),
            "payments": [_payment_lines(payment) for payment in payments],
            "price": money_display(order.price, order.currency),
            "method": _(method) if method else order.payment_method,
            "supplier_order_id": order.supplier_order_id,
            "status_url": settings.SITE_URL.rstrip("/")
            + reverse("shop:order_status", kwargs={"public_id": order.public_id}),
            "find_url": settings.SITE_URL.rstrip("/") + reverse("shop:order_find"),
            "shop_name": settings.SHOP_NAME,
        }
        subject = _("%(shop)s: order %(reference)s — %(status)s") % {
            "shop": settings.SHOP_NAME, "reference": order.reference, "status": status_label,
        }
        body = render_to_string("emails/receipt.txt", context)
    return EmailMessage(subject=subject, body=body, to=[order.buyer_email])


def _payment_lines(payment: Payment) -> dict[str, str]:
    return {
        "amount": money_display(payment.amount, payment.currency),
        "reference": payment.provider_reference,
        "refund_reference": payment.refund_reference,
    }


# --- Order lookup throttle -------------------------------------------------------------------


def _lookup_keys(*, client: str, reference: str) -> list[str]:
    return [f"shop:find:ip:{client}", f"shop:find:ref:{reference}"]


def order_lookup_blocked(*, client: str, reference: str) -> bool:
    """Whether this client, or anyone asking about this reference, is out of guesses for now."""
    counts = caches["default"].get_many(_lookup_keys(client=client, reference=reference))
    return any(count >= LOOKUP_MAX_FAILURES for count in counts.values())


def order_lookup_failure_record(*, client: str, reference: str) -> None:
    """Count a wrong guess against the client and the reference, for LOOKUP_WINDOW_SECONDS.

    A fixed window from the first wrong guess; the counter is the rate limits' own, atomic in
    the cache every process shares (reseller.ratelimits).
    """
    for key in _lookup_keys(client=client, reference=reference):
        counter_add(key, timeout=LOOKUP_WINDOW_SECONDS)
