"""Every write about payments: invoices, the inbox of provider events, and applying them.

Every confirmation — webhook, poll result, chain transaction — is first stored in the inbox
(PaymentEvent, unique per provider event) with its raw body, then applied here, once:
matched to its invoice, compared in integer smallest units against the stored quote, and
only then allowed to move the order (through orders.services.order_mark_paid).
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from django.db import IntegrityError, transaction
from django.utils import timezone

from orders.exceptions import (
    ActionNotApplicable,
    OrderStateChanged,
    PaymentMethodUnavailable,
    PaymentMismatch,
    PaymentProviderError,
)
from orders.models import Order, Payment, PaymentEvent, PaymentInvoice
from orders.models import OrderStatus as S
from orders.payments import payment_methods_for, payment_provider_get, payment_quote_minutes
from orders.payments.base import WATCH_AFTER_EXPIRY, NoticeKind, PaymentNotice
from orders.payments.money import from_minor
from orders.services import order_cancel, order_mark_paid, order_note
from orders.transitions import order_transition

logger = logging.getLogger(__name__)

# An invoice this close to expiry is not shown again: the buyer needs time to pay it.
REUSE_MARGIN = timedelta(minutes=1)
# Orders no money has reached yet: money that names one but landed on another order's invoice
# sends it to review. Any other order has its payment; the money is noted on it as extra.
UNPAID_STATUSES = (S.AWAITING_PAYMENT, S.EXPIRED, S.CANCELLED)


def invoice_open(*, order: Order) -> PaymentInvoice:
    """The order's open invoice for its payment method, created at the provider if needed.

    Only ever an invoice of this order, in the provider account configured now. The provider
    call happens outside any transaction.
    """
    now = timezone.now()
    provider = payment_provider_get(order.payment_method)
    # An invoice of another account (the wallet or network changed since) may be one we no
    # longer read: quote again.
    existing = order.invoices.filter(
        provider=order.payment_method, account=provider.account(),
        status=PaymentInvoice.Status.OPEN, expires_at__gt=now + REUSE_MARGIN,
    ).first()
    if existing is not None:
        return existing
    order.refresh_from_db()
    if order.status != S.AWAITING_PAYMENT:
        raise OrderStateChanged(order.reference, expected=S.AWAITING_PAYMENT, actual=order.status)
    if order.payment_method not in dict(payment_methods_for(order.channel)):
        raise PaymentMethodUnavailable("This payment method is no longer available.")
    expires_at = min(order.expires_at, now + timedelta(minutes=payment_quote_minutes(provider.code)))
    quote = provider.create_invoice(order, expires_at=expires_at)
    try:
        with transaction.atomic():
            return PaymentInvoice.objects.create(
                order=order, provider=quote.provider, account=quote.account,
                provider_invoice_id=quote.provider_invoice_id, comment=quote.comment,
                amount_minor=quote.amount_minor, currency=quote.currency, exponent=quote.exponent,
                rate=quote.rate, pay_url=quote.pay_url, expires_at=quote.expires_at, raw=quote.raw,
            )
    except IntegrityError:
        if not quote.provider_invoice_id:
            raise
        holder = PaymentInvoice.objects.select_related("order").get(
            provider=quote.provider, account=quote.account,
            provider_invoice_id=quote.provider_invoice_id)
    if holder.order_id == order.pk:
        # A twin request got the same invoice from the provider (idempotent create) first.
        return holder
    # The provider numbers from where it once was (a fake restarted on a kept database, an
    # app or network changed): that row is another order's invoice, paid or payable. Handing
    # it over would show this buyer that order's invoice, and their money would pay it.
    logger.error(
        "%s gave invoice %s (account %s) for order %s, but that invoice is order %s's: the "
        "provider is numbering again. Not reusing it; check the provider's configuration.",
        quote.provider, quote.provider_invoice_id, quote.account or "-", order.reference,
        holder.order.reference)
    raise PaymentProviderError(
        f"{quote.provider} answered with invoice {quote.provider_invoice_id}, "
        f"which belongs to another order")


def payment_notice_accept(*, notice: PaymentNotice) -> PaymentEvent:
    """Store a verified provider notice in the inbox (once per provider event), then apply it."""
    try:
        with transaction.atomic():
            event = PaymentEvent.objects.create(
                provider=notice.provider, event_key=notice.event_key[:200], kind=notice.kind,
                amount_minor=notice.amount_minor, currency=notice.currency,
                body=notice.body, data=_notice_data(notice),
            )
    except IntegrityError:
        event = PaymentEvent.objects.get(provider=notice.provider, event_key=notice.event_key[:200])
    if event.outcome == PaymentEvent.Outcome.PENDING:
        event = payment_event_apply(event_id=event.pk, notice=notice)
    return event


def payment_event_apply(*, event_id: int, notice: PaymentNotice | None = None) -> PaymentEvent:
    """Apply one inbox event exactly once; a replay or a racing twin changes nothing."""
    event = PaymentEvent.objects.get(pk=event_id)
    if event.outcome != PaymentEvent.Outcome.PENDING:
        return event
    notice = notice or _notice_from_event(event)
    invoice = _invoice_for(notice)
    # Late payments are priced again; that may call the provider (a rate), so do it first,
    # outside the transaction.
    requoted: int | None = None
    if invoice is not None and notice.kind == NoticeKind.PAID and _is_late(invoice, notice):
        requoted = payment_provider_get(invoice.provider).requote_minor(invoice)
    with transaction.atomic():
        claimed = PaymentEvent.objects.filter(
            pk=event.pk, outcome=PaymentEvent.Outcome.PENDING, processed_at__isnull=True
        ).update(processed_at=timezone.now())
        if claimed != 1:
            return PaymentEvent.objects.get(pk=event.pk)
        outcome, detail = _apply(event, notice, invoice, requoted)
        PaymentEvent.objects.filter(pk=event.pk).update(
            outcome=outcome, detail=detail[:255], invoice=invoice,
            order=invoice.order if invoice else None,
        )
    event.refresh_from_db()
    if outcome == PaymentEvent.Outcome.REJECTED:
        logger.warning("payment event %s rejected: %s", event, detail)
    return event


def _apply(event: PaymentEvent, notice: PaymentNotice, invoice: PaymentInvoice | None,
           requoted: int | None) -> tuple[str, str]:
    Outcome = PaymentEvent.Outcome
    if invoice is None:
        return Outcome.IGNORED, "No invoice of ours matches this event"
    order = invoice.order
    if notice.order_reference and notice.order_reference != order.reference:
        return _misdirected(event, notice, invoice)
    if notice.kind == NoticeKind.EXPIRED:
        expired = PaymentInvoice.objects.filter(
            pk=invoice.pk, status=PaymentInvoice.Status.OPEN,
        ).update(status=PaymentInvoice.Status.EXPIRED)
        if not expired:
            # Paid, or closed by us (the buyer switched method): its end says nothing of the order.
            return Outcome.IGNORED, f"Invoice was already {invoice.status}"
        others_open = order.invoices.filter(status=PaymentInvoice.Status.OPEN).exclude(pk=invoice.pk)
        if order.status == S.AWAITING_PAYMENT and not others_open.exists():
            try:
                order_cancel(order=order, actor=f"payment:{invoice.provider}",
                             reason="The payment session expired unpaid")
            except OrderStateChanged:
                pass
        return Outcome.APPLIED, "Invoice expired"
    if notice.kind != NoticeKind.PAID:
        return Outcome.IGNORED, f"{notice.kind} events need no action"
    if notice.amount_minor is None or notice.amount_minor <= 0:
        return Outcome.REJECTED, "Payment event without a positive amount"
    amount = notice.amount_minor
    problem = None
    excess = 0
    covers_now = False
    if notice.currency.upper() != invoice.currency.upper():
        problem = f"Paid in {notice.currency}, quoted in {invoice.currency}"
    else:
        due = invoice.amount_minor if requoted is None else max(requoted, 0)
        if amount < invoice.amount_minor and (requoted is None or amount < due):
            problem = (f"Underpaid: received {from_minor(amount, invoice.currency)} "
                       f"{invoice.currency}, due {from_minor(due, invoice.currency)}")
        else:
            covers_now = requoted is None or amount >= requoted
            if requoted is not None and not covers_now:
                problem = (f"Paid after the quote expired; "
                           f"{from_minor(amount, invoice.currency)} no longer covers "
                           f"{from_minor(requoted, invoice.currency)} {invoice.currency}")
            excess = amount - (invoice.amount_minor if requoted is None else min(due, invoice.amount_minor))
    try:
        order_mark_paid(
            order=order, provider=invoice.provider, provider_reference=event.event_key,
            amount=from_minor(amount, notice.currency or invoice.currency),
            currency=(notice.currency or invoice.currency).upper(),
            actor=f"payment:{invoice.provider}", raw=event.data, invoice=invoice, event=event,
            excess_minor=excess if not problem else 0, problem=problem,
            covers_current_price=covers_now,
        )
    except PaymentMismatch as exc:
        return Outcome.REJECTED, str(exc)
    PaymentInvoice.objects.filter(pk=invoice.pk).update(status=PaymentInvoice.Status.PAID)
    order.refresh_from_db()
    outcome = Outcome.REVIEW if order.status == S.REVIEW else Outcome.APPLIED
    return outcome, problem or f"Order {order.status}"


def _misdirected(event: PaymentEvent, notice: PaymentNotice,
                 invoice: PaymentInvoice) -> tuple[str, str]:
    """A notice naming another order than its invoice's: nobody is paid, an operator decides.

    The id (or comment) and the reference the provider echoes disagree, so either may be the
    wrong one; the order the reference names, if it exists and has no money yet, goes to review.
    """
    order = invoice.order
    named = Order.objects.filter(reference=notice.order_reference).first()
    ident = invoice.provider_invoice_id or invoice.comment
    mismatch = {
        "notice_order_reference": notice.order_reference,
        "invoice_order_reference": order.reference,
        "invoice": ident, "account": invoice.account, "payment_event_id": event.pk,
    }
    PaymentEvent.objects.filter(pk=event.pk).update(data={**(event.data or {}), "mismatch": mismatch})
    logger.error("%s event %s names order %s, but its invoice %s (account %s) is order %s's: "
                 "sent to review, no order marked paid", notice.provider, event.event_key,
                 notice.order_reference, ident, invoice.account or "-", order.reference)
    detail = (f"Event names order {notice.order_reference}, invoice {ident} is "
              f"{order.reference}'s: review")
    if named is None or notice.kind != NoticeKind.PAID:
        return PaymentEvent.Outcome.REVIEW, detail
    actor = f"payment:{invoice.provider}"
    reason = (f"Money naming this order arrived on {order.reference}'s {invoice.provider} invoice "
              f"{ident}: check it and apply it by hand")
    data = {**mismatch, "amount_minor": notice.amount_minor, "currency": notice.currency}
    if named.status in UNPAID_STATUSES:
        try:
            order_transition(order=named, to_status=S.REVIEW, actor=actor, reason=reason,
                             data=data, expected_status=named.status)
            return PaymentEvent.Outcome.REVIEW, detail
        except OrderStateChanged:
            named.refresh_from_db()
    order_note(order=named, actor=actor, reason=reason, data=data)
    return PaymentEvent.Outcome.REVIEW, detail


def _is_late(invoice: PaymentInvoice, notice: PaymentNotice) -> bool:
    occurred = notice.occurred_at or timezone.now()
    return occurred > invoice.expires_at or invoice.order.status == S.EXPIRED


def _invoice_for(notice: PaymentNotice) -> PaymentInvoice | None:
    invoices = PaymentInvoice.objects.select_related("order").filter(provider=notice.provider)
    if notice.invoice_id:
        invoices = invoices.filter(provider_invoice_id=notice.invoice_id)
    elif notice.comment:
        invoices = invoices.filter(comment=notice.comment)
    else:
        return None
    # An id is unique only within a provider account. Rows stored before invoices carried an
    # account have "" (migration 0005 fills what it can): they match only when no row of the
    # notice's account does. A notice that names no account (Telegram's UUID payloads, an event
    # stored before accounts) matches by id alone. _apply still checks the order reference.
    if not notice.account:
        return invoices.filter(account="").first() or invoices.first()
    return (invoices.filter(account=notice.account).first()
            or invoices.filter(account="").first())


def _notice_data(notice: PaymentNotice) -> dict:
    return {
        **notice.data,
        "_notice": {
            "account": notice.account, "invoice_id": notice.invoice_id, "comment": notice.comment,
            "order_reference": notice.order_reference,
            "occurred_at": notice.occurred_at.isoformat() if notice.occurred_at else None,
        },
    }


def _notice_from_event(event: PaymentEvent) -> PaymentNotice:
    """Rebuild the notice of a stored event, to apply it again after a crash."""
    meta = (event.data or {}).get("_notice", {})
    occurred = meta.get("occurred_at")
    return PaymentNotice(
        provider=event.provider, event_key=event.event_key, kind=event.kind,
        account=meta.get("account") or "", invoice_id=meta.get("invoice_id") or "",
        comment=meta.get("comment") or "",
        order_reference=meta.get("order_reference") or "",
        amount_minor=event.amount_minor, currency=event.currency,
        occurred_at=datetime.fromisoformat(occurred) if occurred else None,
        data=event.data, body=event.body,
    )


def payments_poll() -> dict[str, int]:
    """Ask each enabled provider about watched invoices and re-apply inbox events left pending.

    Watched: open ones, and ones we closed (the buyer switched method) whose buyer may still
    pay, until WATCH_AFTER_EXPIRY past their quote: late payments must still be found.
    """
    from django.conf import settings

    now = timezone.now()
    accepted = 0
    for code, conf in settings.PAYMENT_METHODS.items():
        if not conf.get("enabled"):
            continue
        provider = payment_provider_get(code)
        invoices = list(PaymentInvoice.objects.select_related("order").filter(
            provider=code,
            status__in=(PaymentInvoice.Status.OPEN, PaymentInvoice.Status.CANCELLED),
            expires_at__gt=now - WATCH_AFTER_EXPIRY))
        try:
            notices = provider.poll(invoices)
        except PaymentProviderError as exc:
            # One provider down must not stop the others; the next run tries again.
            logger.error("polling %s failed: %s", code, exc)
            continue
        for notice in notices:
            payment_notice_accept(notice=notice)
            accepted += 1
    stale = PaymentEvent.objects.filter(outcome=PaymentEvent.Outcome.PENDING,
                                        received_at__lt=now - timedelta(minutes=1))
    retried = 0
    for event_id in stale.values_list("pk", flat=True)[:200]:
        payment_event_apply(event_id=event_id)
        retried += 1
    return {"accepted": accepted, "retried": retried}


def payment_method_change(*, order: Order, payment_method: str, actor: str) -> Order:
    """Switch an unpaid order to another method enabled for its channel; its open invoices close.

    A closed invoice is still found by its id or comment when a payment to it arrives late
    (payment_event_apply looks invoices up whatever their status), so that money is applied,
    never lost. The next invoice_open quotes the new method. A method that would take the
    order under its product's minimum margin (shop.pricing's guard) raises MarginTooLow.
    """
    # Imported here to keep this addition to the end of the module.
    from orders.payments import payment_fee_percent
    from orders.services import order_note
    from shop.money import percent_of
    from shop.pricing import order_method_check

    if payment_method not in dict(payment_methods_for(order.channel)):
        raise PaymentMethodUnavailable("That payment method is not available here.")
    if payment_method != order.payment_method:
        order_method_check(order=order, payment_method=payment_method)
    with transaction.atomic():
        current = Order.objects.select_for_update().only("status", "payment_method").get(pk=order.pk)
        if current.status != S.AWAITING_PAYMENT:
            raise OrderStateChanged(order.reference, expected=S.AWAITING_PAYMENT,
                                    actual=current.status)
        if current.payment_method == payment_method:
            order.refresh_from_db()
            return order
        fee = percent_of(order.price, payment_fee_percent(payment_method))
        # Conditional on the status too (select_for_update is a no-op on SQLite): a payment or
        # expiry that won the race is never undone.
        updated = Order.objects.filter(pk=order.pk, status=S.AWAITING_PAYMENT).update(
            payment_method=payment_method, payment_fee=fee, updated_at=timezone.now())
        if updated != 1:
            raise OrderStateChanged(order.reference, expected=S.AWAITING_PAYMENT, actual=None)
        closed = list(order.invoices.filter(status=PaymentInvoice.Status.OPEN)
                      .values_list("pk", flat=True))
        PaymentInvoice.objects.filter(pk__in=closed).update(status=PaymentInvoice.Status.CANCELLED)
        order.refresh_from_db()
        order_note(order=order, actor=actor,
                   reason=f"Payment method changed from {current.payment_method} to {payment_method}",
                   data={"from": current.payment_method, "to": payment_method,
                         "invoices_closed": closed})
    return order


# --- An overpayment's excess ------------------------------------------------------------


def payment_excess_owed(payment: Payment) -> bool:
    """Whether part of this payment (its excess) is still owed back to the buyer."""
    return (payment.status == Payment.Status.CONFIRMED and payment.excess_minor > 0
            and payment.excess_refunded_at is None)


def payment_excess_refund_how(payment: Payment) -> str:
    """How an operator returns this payment's excess.

    Every provider's refund() here returns a whole payment and takes no amount, so none can
    send back only the excess: it goes back by hand, and the operator records the transfer.
    """
    excess = from_minor(payment.excess_minor, payment.currency)
    return (f"{payment.provider} cannot refund part of a payment through the shop: send "
            f"{excess} {payment.currency} back to the buyer by hand (for payment "
            f"{payment.provider_reference}), then record the transfer's reference here.")


def payment_excess_mark_refunded(*, payment: Payment, actor: str, reason: str,
                                 refund_reference: str) -> Payment:
    """Record that an operator sent an overpayment's excess back outside the shop.

    A conditional update: of two operators (or a full refund racing this) only one wins; the
    other gets ActionNotApplicable and nothing is recorded twice.
    """
    refund_reference = refund_reference.strip()
    if not refund_reference:
        raise ActionNotApplicable("A refund reference is required.")
    now = timezone.now()
    with transaction.atomic():
        updated = Payment.objects.filter(
            pk=payment.pk, status=Payment.Status.CONFIRMED, excess_minor__gt=0,
            excess_refunded_at__isnull=True,
        ).update(excess_refund_reference=refund_reference[:200], excess_refunded_at=now)
        if updated != 1:
            raise ActionNotApplicable(
                f"Payment {payment} owes no excess any more: it was refunded meanwhile.")
        order_note(order=payment.order, actor=actor, reason=reason, data={
            "excess_refund_reference": refund_reference, "payment_id": payment.pk,
            "excess_minor": payment.excess_minor, "currency": payment.currency,
        })
    payment.refresh_from_db()
    return payment
