"""Demo orders over the last six days, so the dashboard and the problem queues have something to show.

Orders are placed and moved with the real services (`_order_insert`, `order_transition`,
`order_cancel`, `order_note`) and then back-dated with queryset updates, since the services
stamp everything with the current time. No supplier or payment provider is called: the rows
those calls would have left (invoice, payment, supplier attempt) are written as they would
have been, and no fulfilment job is enqueued (the work is already "done"). The loader runs only
on a database without orders, so running the set-up again adds nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from django.db import transaction
from django.utils import timezone

from bots.models import BuyerNotice, TelegramUser
from orders.models import Order, OrderEvent, Payment, PaymentInvoice, SupplierAttempt
from orders.models import OrderStatus as S
from orders.payments.money import exponent_of, to_minor
from orders.selectors import HOLD_REASON_BALANCE
from orders.services import _hold_recheck, _order_insert, order_cancel, order_note
from orders.suppliers.base import RecipientInfo
from orders.transitions import BUYER_NOTICE_STATUSES, order_transition
from shop.models import Product
from shop.selectors import quote_build

DEMO_ACTOR = "demo"
# USD per TON for the demo's TON payments (the invoice's rate, as the TON provider records it).
DEMO_TON_RATE = Decimal("5.00")
RECIPIENTS = {
    "@sandbox_ok": "100000001", "@sandbox_slow": "100000002", "@sandbox_fail": "100000004",
    "@sandbox_timeout": "100000005", "@sandbox_broke": "100000007",
}
# Demo buyers in the bot (their Telegram IDs and usernames), so the console finds them.
BOT_BUYERS = ((7000000001, "demo_buyer_anna"), (7000000002, "demo_buyer_boris"))


@dataclass(frozen=True)
class DemoOrder:
    """One demo order: when it was placed, how, and how it ended."""

    hours_ago: float
    channel: str
    method: str
    package: str
    outcome: str = "delivered"  # see _finish
    recipient: str = "@sandbox_ok"
    delivery_seconds: int = 4
    overpaid_minor: int = 0


D = DemoOrder
DEMO_ORDERS = (
    # Delivered, through every method and both channels, spread over six days.
    D(140, "web", "sandbox", "Standard"), D(137, "bot", "stripe", "Large", delivery_seconds=6),
    D(131, "web", "ton", "Medium"), D(126, "web", "cryptopay", "Large"),
    D(120, "bot", "telegram", "Small"), D(115, "web", "stripe", "Mega", delivery_seconds=9),
    D(110, "bot", "ton", "Standard", delivery_seconds=3),
    D(104, "web", "sandbox", "Starter", recipient="@sandbox_slow", delivery_seconds=31),
    D(98, "web", "stripe", "Standard"), D(93, "bot", "cryptopay", "Large"),
    D(87, "web", "ton", "Ultra", delivery_seconds=12), D(80, "bot", "stripe", "Standard"),
    D(76, "web", "sandbox", "Medium"), D(71, "bot", "telegram", "Standard", delivery_seconds=5),
    D(66, "web", "cryptopay", "Small"), D(60, "web", "stripe", "Large", delivery_seconds=7),
    D(54, "bot", "ton", "Large"), D(49, "web", "stripe", "Standard"),
    D(44, "bot", "sandbox", "Small", delivery_seconds=3),
    D(38, "web", "ton", "Standard", delivery_seconds=95),
    D(30, "bot", "stripe", "Medium"), D(26, "web", "cryptopay", "Medium"),
    D(20, "web", "stripe", "Standard", delivery_seconds=8), D(15, "bot", "telegram", "Large"),
    D(10, "web", "sandbox", "Standard"), D(6, "bot", "ton", "Small", delivery_seconds=3),
    D(3, "web", "stripe", "Standard"),
    # Paid more than the quote: delivered, the excess waits to be refunded.
    D(57, "web", "ton", "Standard", outcome="overpaid", overpaid_minor=400_000_000),
    # The supplier failed it without charge: refunded.
    D(84, "web", "stripe", "Standard", outcome="refunded", recipient="@sandbox_fail"),
    # The supplier wallet was empty: held until it is topped up.
    D(2, "web", "sandbox", "Standard", outcome="on_hold", recipient="@sandbox_broke"),
    # The supplier did not answer: nobody knows whether the top-up was placed.
    D(5, "bot", "stripe", "Large", outcome="unknown", recipient="@sandbox_timeout"),
    # Paid too little: an operator must decide.
    D(12, "web", "cryptopay", "Medium", outcome="review"),
    D(34, "web", "ton", "Standard", outcome="expired"),
    D(22, "bot", "stripe", "Small", outcome="cancelled"),
)


class _Timeline:
    """The times to give an order's events, in the order the services wrote them."""

    def __init__(self, order: Order) -> None:
        self.order = order
        self.times: list[datetime] = []
        self.paid_at: datetime | None = None
        self.delivered_at: datetime | None = None

    def move(self, at: datetime, to_status: str, reason: str, actor: str = DEMO_ACTOR,
             **fields: Any) -> None:
        self.order = order_transition(order=self.order, to_status=to_status, actor=actor,
                                      reason=reason, expected_status=self.order.status, **fields)
        self.times.append(at)
        if to_status == S.PAID:
            self.paid_at = at
        elif to_status == S.DELIVERED:
            self.delivered_at = at

    def note(self, at: datetime, reason: str, data: dict) -> None:
        order_note(order=self.order, actor=DEMO_ACTOR, reason=reason, data=data)
        self.times.append(at)


def demo_orders_load(*, now: datetime | None = None) -> int:
    """Create the demo orders if the shop has none yet; returns how many were created."""
    now = now or timezone.now()
    with transaction.atomic():
        if Order.objects.exists():
            return 0
        product = Product.objects.get(slug="telegram-stars")
        packages = {package.name: package for package in product.packages.all()}
        for telegram_id, username in BOT_BUYERS:
            TelegramUser.objects.get_or_create(telegram_id=telegram_id,
                                               defaults={"username": username})
        for number, spec in enumerate(DEMO_ORDERS):
            _demo_order(spec, number=number, product=product,
                        package_id=packages[spec.package].pk, now=now)
    return len(DEMO_ORDERS)


def _demo_order(spec: DemoOrder, *, number: int, product: Product, package_id: int,
                now: datetime) -> Order:
    placed_at = now - timedelta(hours=spec.hours_ago)
    paid_at = placed_at + timedelta(seconds=40 + number % 7 * 11)
    buyer_id, _ = BOT_BUYERS[number % len(BOT_BUYERS)]
    # Not order_create: it offers only the methods enabled now, and at set-up time that is the
    # sandbox alone (bin/run-demo turns the fakes on later); the demo shows sales by every method.
    # Priced for its method as a buyer's order is: the method's fee, and never a sale the
    # margin guard would refuse (Standard through Crypto Pay at 3 % is one).
    quote = quote_build(product=product, package_id=package_id, payment_method=spec.method)
    if not quote.allowed:
        raise ValueError(f"demo order {number}: the margin guard refuses {spec}")
    order = _order_insert(
        channel=spec.channel, quote=quote,
        given=spec.recipient,
        recipient=RecipientInfo(user_id=RECIPIENTS[spec.recipient], username=spec.recipient),
        payment_method=spec.method,
        buyer_telegram_id=buyer_id if spec.channel == "bot" else None,
        buyer_session_hash="" if spec.channel == "bot" else f"demo-session-{number:04d}",
        request_key="",
    )
    timeline = _Timeline(order)
    timeline.times.append(placed_at)  # "Order placed"
    _finish(timeline, spec, placed_at=placed_at, paid_at=paid_at)
    _backdate(timeline, placed_at=placed_at)
    return timeline.order


def _finish(timeline: _Timeline, spec: DemoOrder, *, placed_at: datetime, paid_at: datetime) -> None:
    """Move the order as the services would have for its outcome."""
    order = timeline.order
    if spec.outcome == "expired":
        timeline.move(placed_at + timedelta(minutes=30), S.EXPIRED, "Payment window passed",
                      actor="scheduler")
        return
    if spec.outcome == "cancelled":
        timeline.order = order_cancel(order=order, actor=f"buyer:{order.channel}",
                                      reason="Cancelled by the buyer")
        timeline.times.append(placed_at + timedelta(minutes=3))
        return
    if spec.outcome == "review":
        short = order.price - Decimal("1.00")
        _payment(order, paid_at=paid_at, amount_minor=to_minor(short, order.currency))
        timeline.move(paid_at, S.REVIEW, f"Underpaid: received {short} {order.currency}, "
                                         f"due {order.price} {order.currency}",
                      actor=f"payment:{order.payment_method}")
        return
    payment = _payment(order, paid_at=paid_at, excess_minor=spec.overpaid_minor)
    paid_by = f"payment:{order.payment_method}"
    data = {"payment_id": payment.pk, "provider": payment.provider, "amount": str(payment.amount),
            "currency": payment.currency}
    if spec.overpaid_minor:
        timeline.note(paid_at, f"Overpaid by {spec.overpaid_minor} minor units of "
                               f"{payment.currency}: refund the excess",
                      {**data, "excess_minor": spec.overpaid_minor})
    timeline.move(paid_at, S.PAID, f"Payment confirmed by {order.payment_method}", actor=paid_by,
                  data=data)
    submitted_at = paid_at + timedelta(seconds=1)
    timeline.move(submitted_at, S.SUBMITTING, "Placing the top-up", actor="worker",
                  fulfilment_attempts=1)
    done_at = paid_at + timedelta(seconds=spec.delivery_seconds)
    order = timeline.order
    if spec.outcome in ("delivered", "overpaid"):
        supplier_order_id = f"demo-{order.pk:06d}"
        _attempt(order, SupplierAttempt.Outcome.ACCEPTED, submitted_at, done_at,
                 status=200, supplier_order_id=supplier_order_id)
        timeline.move(done_at, S.DELIVERED, "Supplier delivered the top-up", actor="worker",
                      supplier_order_id=supplier_order_id, supplier_status="completed")
    elif spec.outcome == "refunded":
        supplier_order_id = f"demo-{order.pk:06d}"
        _attempt(order, SupplierAttempt.Outcome.ACCEPTED, submitted_at, submitted_at,
                 status=200, supplier_order_id=supplier_order_id)
        timeline.move(submitted_at, S.PROCESSING, "Supplier accepted the top-up", actor="worker",
                      supplier_order_id=supplier_order_id, supplier_status="processing")
        timeline.move(done_at, S.FAILED, "Supplier failed the top-up without charge",
                      actor="worker", supplier_status="failed")
        timeline.move(done_at, S.REFUND_PENDING, "Refunding the failed order", actor="worker")
        refunded_at = done_at + timedelta(seconds=5)
        Payment.objects.filter(pk=payment.pk).update(
            status=Payment.Status.REFUNDED, refund_reference=f"demo-refund-{payment.pk}",
            refunded_at=refunded_at)
        timeline.move(refunded_at, S.REFUNDED, "Payment refunded", actor="worker")
    elif spec.outcome == "on_hold":
        _attempt(order, SupplierAttempt.Outcome.REJECTED, submitted_at, submitted_at,
                 status=500, error_code="insufficient_balance")
        # As the service does: the sweeper looks at it again once the supplier balance allows.
        timeline.move(submitted_at, S.ON_HOLD, HOLD_REASON_BALANCE, actor="worker",
                      next_action_at=timezone.now() + _hold_recheck())
    elif spec.outcome == "unknown":
        _attempt(order, SupplierAttempt.Outcome.UNKNOWN, submitted_at, done_at,
                 error_code="timeout")
        # No next action: the sandbox supplier never saw this order, so the demo keeps it in the
        # "Outcome unknown" queue for an operator instead of letting a worker resolve it.
        timeline.move(done_at, S.UNKNOWN, "Supplier did not answer in time; resolving by lookup",
                      actor="worker", next_action_at=None)
    _skip_bot_notices(timeline.order)


def _payment(order: Order, *, paid_at: datetime, amount_minor: int | None = None,
             excess_minor: int = 0) -> Payment:
    """The invoice and payment a provider's confirmation would have left (TON in TON, else fiat)."""
    if order.payment_method == "ton":
        currency, rate = "TON", DEMO_TON_RATE
        due_minor = to_minor(order.price / rate, currency, round_up=True)
    else:
        currency, rate = order.currency, None
        due_minor = to_minor(order.price, currency)
    received_minor = (due_minor if amount_minor is None else amount_minor) + excess_minor
    reference = f"demo-{order.reference}"
    invoice = PaymentInvoice.objects.create(
        order=order, provider=order.payment_method, account=DEMO_ACTOR,
        status=PaymentInvoice.Status.PAID, provider_invoice_id=reference,
        amount_minor=due_minor, currency=currency, exponent=exponent_of(currency), rate=rate,
        expires_at=paid_at + timedelta(minutes=25), raw={"demo": True})
    payment = Payment.objects.create(
        order=order, invoice=invoice, provider=order.payment_method,
        provider_reference=reference,
        amount=Decimal(received_minor).scaleb(-exponent_of(currency)), currency=currency,
        excess_minor=excess_minor, raw={"demo": True})
    Payment.objects.filter(pk=payment.pk).update(created_at=paid_at)
    PaymentInvoice.objects.filter(pk=invoice.pk).update(created_at=paid_at - timedelta(seconds=30))
    return payment


def _attempt(order: Order, outcome: str, started_at: datetime, finished_at: datetime, *,
             status: int | None = None, supplier_order_id: str = "", error_code: str = "") -> None:
    """The supplier attempt the worker would have recorded."""
    attempt = SupplierAttempt.objects.create(
        order=order, number=1, supplier_code=order.supplier_code,
        idempotency_key=order.idempotency_key,
        request={"recipient": order.recipient_input, "quantity": order.stars, "demo": True},
        response_status=status, supplier_order_id=supplier_order_id, outcome=outcome,
        error_code=error_code, finished_at=finished_at)
    SupplierAttempt.objects.filter(pk=attempt.pk).update(started_at=started_at)


def _skip_bot_notices(order: Order) -> None:
    """Mark the bot buyer's notices as not sent: demo buyers are not real Telegram users.

    order_transition enqueues the notice on commit; with these rows in place the task finds
    the notice taken and sends nothing, even where a bot token is configured.
    """
    if order.channel != "bot" or not order.buyer_telegram_id:
        return
    reached = set(OrderEvent.objects.filter(order=order, to_status__in=BUYER_NOTICE_STATUSES)
                  .values_list("to_status", flat=True))
    for status in reached:
        BuyerNotice.objects.get_or_create(
            order=order, status=status,
            defaults={"chat_id": order.buyer_telegram_id, "outcome": BuyerNotice.Outcome.SKIPPED,
                      "error": "Demo data: not sent"})


def _backdate(timeline: _Timeline, *, placed_at: datetime) -> None:
    """Give the order and its events the demo's times (the services stamped them with now)."""
    order = timeline.order
    event_ids = list(OrderEvent.objects.filter(order=order).order_by("id").values_list("pk", flat=True))
    if len(event_ids) != len(timeline.times):
        raise RuntimeError(f"{order}: {len(event_ids)} events, {len(timeline.times)} times")
    for event_id, at in zip(event_ids, timeline.times, strict=True):
        OrderEvent.objects.filter(pk=event_id).update(created_at=at)
    Order.objects.filter(pk=order.pk).update(
        created_at=placed_at, expires_at=placed_at + timedelta(minutes=30),
        paid_at=timeline.paid_at, delivered_at=timeline.delivered_at,
        status_changed_at=timeline.times[-1], updated_at=timeline.times[-1])
