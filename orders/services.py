"""Every write to orders: placing, paying, fulfilling, refunding, sweeping.

Network calls (supplier, payment providers) never happen inside a transaction: a service
claims the order with a status move, commits, calls out, then records the answer.
"""

from __future__ import annotations

import logging
import time
import uuid
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal
from functools import partial
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.db import IntegrityError, connection, connections, transaction
from django.db.models import Q
from django.utils import timezone
from django.utils.crypto import salted_hmac

from orders import queue
from orders.exceptions import (
    InvalidTransition,
    ActionNotApplicable,
    IdempotencyConflict,
    InsufficientBalance,
    InvalidRecipient,
    OrderBusy,
    OrderError,
    OrderStateChanged,
    OutcomeUnknown,
    PaymentMethodUnavailable,
    PaymentMismatch,
    RateLimited,
    RecipientLookupLimited,
    SupplierAuthError,
    SupplierError,
    SupplierNotFound,
    SupplierRequestError,
    SupplierUnavailable,
)
from orders.leases import (
    DISPATCHED,
    LeaseKeeper,
    LeaseLost,
    lease_free,
    lease_owner_new,
    lease_seconds,
    order_lease_acquire,
    order_lease_dispatch,
    order_lease_release,
)
from orders.models import (
    Channel,
    Order,
    OrderEvent,
    Payment,
    PaymentEvent,
    PaymentInvoice,
    SupplierAttempt,
)
from orders.models import OrderStatus as S
from orders.payments import payment_methods_for, payment_provider_get
from orders.recipients import recipient_parse
from orders.suppliers import get_supplier_client, throttle
from orders.suppliers.base import (
    RecipientInfo,
    SupplierBalance,
    SupplierOrder,
    SupplierOrderStatus,
)
from orders.transitions import IN_FLIGHT_STATUSES, order_transition
from reseller.ratelimits import Limit, limits_for, limits_hit
from shop.exceptions import CatalogError, PromoCodeError
from shop.models import Product
from shop.pricing import BuyerIdentity, margin_refusal, promo_redeem
from shop.selectors import Quote, quote_build

logger = logging.getLogger(__name__)


def _now():
    return timezone.now()


def _hold_recheck() -> timedelta:
    # A balance reading that covers a held order resumes it sooner (orders_held_resume).
    return timedelta(seconds=settings.SUPPLIER_HOLD_RECHECK_SECONDS)


def _stall() -> timedelta:
    return timedelta(seconds=settings.FULFILMENT_STALL_SECONDS)


def _claim_window() -> timedelta:
    # A SUBMITTING order is due again once its worker's lease has lapsed; the lease, renewed
    # while the worker lives, is what keeps the sweep away until then.
    return timedelta(seconds=lease_seconds())


def _unknown_grace() -> timedelta:
    # A lookup that finds nothing proves nothing while our own request may still be in
    # flight: wait out the client timeout before concluding the top-up was never placed.
    return timedelta(seconds=settings.FULFILMENT_UNKNOWN_GRACE_SECONDS)


def order_note(*, order: Order, actor: str, reason: str, data: dict[str, Any] | None = None) -> None:
    """Record something an operator must see on the timeline without changing the status."""
    OrderEvent.objects.create(
        order=order,
        from_status=order.status,
        to_status=order.status,
        actor=actor,
        reason=reason[:255],
        data=data or {},
    )


# --- Placing -----------------------------------------------------------------------------


def recipient_validate(*, raw: str) -> tuple[str, RecipientInfo]:
    """Parse the buyer's input and ask the supplier who it is; returns (normalised, info).

    Raises InvalidRecipientInput (bad format), InvalidRecipient (no such user) or another
    SupplierError (supplier unreachable).
    """
    normalised = recipient_parse(raw)
    return normalised, get_supplier_client().validate_recipient(normalised)


def recipient_lookup_limits(*, client_ip: str = "", session_key: str = "",
                            telegram_id: int | None = None) -> list[Limit]:
    """The limits one buyer's recipient lookups count against, by whatever the door knows."""
    return [
        *limits_for("recipient:ip", client_ip, settings.RECIPIENT_LOOKUP_RATE_PER_IP),
        # Hashed: a session key is a credential, and cache keys are readable in the cache table.
        *limits_for("recipient:session", buyer_session_hash(session_key) if session_key else "",
                    settings.RECIPIENT_LOOKUP_RATE_PER_SESSION),
        *limits_for("recipient:telegram", str(telegram_id) if telegram_id is not None else "",
                    settings.RECIPIENT_LOOKUP_RATE_PER_TELEGRAM_USER),
    ]


def recipient_lookup(*, raw: str, limits: list[Limit]) -> tuple[str, RecipientInfo]:
    """recipient_validate for a buyer's door: counted against `limits`, answers cached briefly.

    Every door that lets a buyer ask "who is this?" (storefront, bot, API) comes through here,
    so none of them can enumerate accounts or spend the supplier's quota faster than the
    limits allow. Raises RecipientLookupLimited before anything else once a limit is spent,
    whether or not the input is valid, so a limited answer tells nothing about the account.
    Placing the top-up re-validates without the cache (_submit): usernames change owners.
    """
    if not limits_hit(limits):
        # The doors word the answer for their buyers; this text is for logs.
        raise RecipientLookupLimited("recipient lookup limit reached")
    normalised = recipient_parse(raw)
    key = f"orders:recipient:{normalised.lower()}"
    known = cache.get(key)
    if isinstance(known, dict):
        if known.get("found"):
            return normalised, RecipientInfo(user_id=known["user_id"], username=known["username"])
        raise InvalidRecipient(f"Supplier cannot deliver to {normalised} (cached answer)")
    try:
        info = get_supplier_client().validate_recipient(normalised)
    except InvalidRecipient:
        cache.set(key, {"found": False}, timeout=settings.RECIPIENT_NOT_FOUND_CACHE_SECONDS)
        raise
    cache.set(key, {"found": True, "user_id": info.user_id, "username": info.username},
              timeout=settings.RECIPIENT_CACHE_SECONDS)
    return normalised, info


def order_create(
    *,
    channel: str,
    product: Product,
    recipient_input: str,
    recipient: RecipientInfo,
    payment_method: str,
    package_id: int | None = None,
    quantity: int | None = None,
    buyer_telegram_id: int | None = None,
    buyer_session_key: str = "",
    request_key: str = "",
    buyer_email: str = "",
    buyer_language: str = "",
    promo_code: str = "",
) -> Order:
    """Place an order awaiting payment, priced by shop.pricing at this moment.

    A non-empty request_key makes the call idempotent per channel: repeating it (a double
    click, a retried request) returns the order the first call placed. A method the margin
    guard refuses for this package or amount raises MarginTooLow, a promo code that cannot be
    used a PromoCodeError; either way nothing is created. The order keeps the price charged,
    after the (capped) discount; the code's use is recorded in the same transaction.
    """
    if channel not in Channel.values:
        raise ValueError(f"unknown channel {channel!r}")
    try:
        if payment_method not in dict(payment_methods_for(channel)):
            raise PaymentMethodUnavailable("That payment method is not available here.")
        given = recipient_parse(recipient_input)
        session_hash = buyer_session_hash(buyer_session_key) if buyer_session_key else ""
        buyer = BuyerIdentity(telegram_id=buyer_telegram_id, session_hash=session_hash,
                              email=buyer_email)
        # Without the channel: only the chosen method is priced (it is enabled, checked above);
        # the others' figures are for pages that offer a choice.
        quote = quote_build(product=product, package_id=package_id, quantity=quantity,
                            payment_method=payment_method, promo_code=promo_code, buyer=buyer)
        if not quote.allowed:
            raise margin_refusal()
        return _order_insert(
            channel=channel, quote=quote, given=given, recipient=recipient,
            payment_method=payment_method, buyer_telegram_id=buyer_telegram_id,
            buyer_session_hash=session_hash, request_key=request_key, buyer_email=buyer_email,
            buyer_language=buyer_language,
        )
    except (IntegrityError, OrderError, CatalogError, PromoCodeError):
        # A repeated request (a double click, a retry) answers with the order its first call
        # placed, even if the catalog, the method or the code would refuse a new one by now:
        # the unique request key decides, so a new order costs no read before its insert.
        if request_key:
            existing = Order.objects.filter(channel=channel, request_key=request_key).first()
            if existing is not None:
                return existing
        raise


def order_insert_quoted(*, channel: str, quote: Quote, recipient_input: str,
                        recipient: RecipientInfo, payment_method: str, request_key: str) -> Order:
    """Place an order awaiting payment at a quote the caller built and checked (the partner
    API, which pays it from a prepaid balance in the same transaction); quote.supplier_code
    routes its fulfilment (orders.suppliers.get_supplier_client)."""
    if not quote.allowed:
        raise margin_refusal()
    return _order_insert(channel=channel, quote=quote, given=recipient_parse(recipient_input),
                         recipient=recipient, payment_method=payment_method,
                         buyer_telegram_id=None, buyer_session_hash="", request_key=request_key)


def buyer_session_hash(session_key: str) -> str:
    """A keyed hash of a session key, so orders can be matched to a session without storing it."""
    return salted_hmac("orders.buyer_session", session_key, algorithm="sha256").hexdigest()


def _order_insert(*, channel: str, quote: Quote, given: str, recipient: RecipientInfo,
                  payment_method: str, buyer_telegram_id: int | None, buyer_session_hash: str,
                  request_key: str, buyer_email: str = "", buyer_language: str = "") -> Order:
    """Insert the order, its reference, its promo redemption and its first event, in one transaction.

    Everything that needs no database is done before the transaction opens: on SQLite a write
    transaction holds the one write lock, which every other writer waits for.
    """
    buyer = BuyerIdentity(telegram_id=buyer_telegram_id, session_hash=buyer_session_hash,
                          email=buyer_email)
    order = Order(
        channel=channel,
        product=quote.product,
        package=quote.package,
        product_name=quote.product.name,
        package_name=quote.name,
        platform=quote.product.platform,
        stars=quote.quantity,
        recipient_input=given,
        recipient_user_id=recipient.user_id,
        recipient_username=recipient.username or "",
        price=quote.price,
        currency=quote.currency,
        supplier_code=quote.supplier_code,
        cost=quote.cost,
        cost_currency=quote.cost_currency,
        payment_method=payment_method,
        payment_fee=quote.fee,
        buyer_telegram_id=buyer.telegram_id,
        buyer_session_hash=buyer.session_hash,
        request_key=request_key,
        buyer_email=buyer.email,
        idempotency_key=uuid.uuid4().hex,
        expires_at=_now() + timedelta(minutes=settings.ORDER_PAYMENT_WINDOW_MINUTES),
    )
    data: dict[str, Any] = {"price": str(order.price), "currency": order.currency,
                            "stars": order.stars}
    if buyer_language:
        # The buyer's language, for the receipt e-mail (shop.services.order_receipt_send).
        data["language"] = buyer_language
    with transaction.atomic():
        order.save(force_insert=True)
        order.reference = f"ORD-{order.pk:06d}"
        # update() rather than save(update_fields=...): the same UPDATE, without save()'s
        # signals and field bookkeeping, on the path every order takes.
        Order.objects.filter(pk=order.pk).update(reference=order.reference)
        # Locks the code and counts its uses again: a race for its last use loses here, and
        # this order rolls back with the refusal.
        redemption = promo_redeem(order=order, quote=quote, buyer=buyer)
        if redemption is not None:
            data.update(promo_code=redemption.code, discount=str(redemption.discount),
                        list_price=str(quote.list_price))
        OrderEvent.objects.create(order=order, from_status="", to_status=order.status,
                                  actor=f"buyer:{channel}", reason="Order placed", data=data)
    return order


def order_cancel(*, order: Order, actor: str, reason: str = "Cancelled") -> Order:
    """Cancel an order that has not been paid."""
    return order_transition(
        order=order, to_status=S.CANCELLED, actor=actor, reason=reason,
        expected_status=S.AWAITING_PAYMENT,
    )


def orders_expire(*, now=None) -> int:
    """Expire unpaid orders past their payment window; returns how many."""
    now = now or _now()
    expired = 0
    for order in Order.objects.filter(status=S.AWAITING_PAYMENT, expires_at__lte=now):
        try:
            order_transition(
                order=order, to_status=S.EXPIRED, actor="scheduler",
                reason="Payment window passed", expected_status=S.AWAITING_PAYMENT,
            )
            expired += 1
        except OrderStateChanged:
            continue  # paid or cancelled meanwhile
    return expired


# --- Paying ------------------------------------------------------------------------------


def order_mark_paid(
    *,
    order: Order,
    provider: str,
    provider_reference: str,
    amount: Decimal,
    currency: str,
    actor: str,
    raw: dict[str, Any] | None = None,
    invoice: PaymentInvoice | None = None,
    event: PaymentEvent | None = None,
    excess_minor: int = 0,
    problem: str | None = None,
    covers_current_price: bool = False,
) -> Order:
    """Apply a verified payment; replays of the same payment (provider reference) change nothing.

    Records the payment, marks the order paid and records the fulfilment job (next_action_at)
    in one transaction; the worker is enqueued only after it commits. `problem` (underpaid,
    wrong currency), decided by the caller against the quote, sends the order to review
    instead; without an invoice the order's own price is the quote. Money that arrives for an
    order no longer waiting for it is recorded and shown to an operator, never dropped.
    """
    if invoice is None and problem is None and (currency != order.currency or amount < order.price):
        problem = f"Underpaid: received {amount} {currency}, due {order.price} {order.currency}"
    with transaction.atomic():
        try:
            with transaction.atomic():
                payment = Payment.objects.create(
                    order=order, provider=provider, provider_reference=provider_reference,
                    amount=amount, currency=currency, raw=raw or {}, invoice=invoice,
                    event=event, excess_minor=max(excess_minor, 0),
                )
        except IntegrityError:
            existing = Payment.objects.get(provider=provider, provider_reference=provider_reference)
            if existing.order_id != order.pk:
                raise PaymentMismatch(
                    f"{provider}:{provider_reference} belongs to another order"
                ) from None
            order.refresh_from_db()
            return order  # a replay: already applied
        order.refresh_from_db()
        data = {"payment_id": payment.pk, "provider": provider, "amount": str(amount),
                "currency": currency}
        if excess_minor > 0:
            order_note(order=order, actor=actor, data={**data, "excess_minor": excess_minor},
                       reason=f"Overpaid by {excess_minor} minor units of {currency}: refund the excess")
        late = order.status == S.EXPIRED
        if order.status == S.AWAITING_PAYMENT or (late and covers_current_price and not problem):
            if problem:
                return order_transition(order=order, to_status=S.REVIEW, actor=actor, data=data,
                                        reason=problem)
            order_transition(
                order=order, to_status=S.PAID, actor=actor, data=data,
                reason=(f"Payment confirmed by {provider}" if not late else
                        f"Paid after the quote expired, covering the current price ({provider})"),
                next_action_at=_now(), expected_status=order.status,
            )
            transaction.on_commit(lambda: queue.enqueue_fulfilment(order.pk))
        elif order.status in (S.EXPIRED, S.CANCELLED):
            order_transition(
                order=order, to_status=S.REVIEW, actor=actor, data=data,
                reason=(f"Payment received after the order was {order.status}"
                        + (f"; {problem}" if problem else ""))[:255],
            )
        else:
            order_note(order=order, actor=actor, data=data,
                       reason="Extra payment received: refund it")
    return order


def order_pay_sandbox(*, order: Order) -> Order:
    """Simulate paying an order in test mode, through the same inbox real providers use."""
    from orders.payments.services import invoice_open, payment_notice_accept

    if order.payment_method != "sandbox":
        raise PaymentMethodUnavailable("This order is not paid with the sandbox method.")
    if "sandbox" not in dict(payment_methods_for(order.channel)):
        # Simulated payments exist only while test mode is on for this channel.
        raise PaymentMethodUnavailable("Sandbox payments are turned off.")
    paid = order.invoices.filter(provider="sandbox", status=PaymentInvoice.Status.PAID).first()
    if paid is not None:
        return Order.objects.get(pk=order.pk)  # pressed twice: already paid
    invoice = invoice_open(order=order)
    provider = payment_provider_get("sandbox")
    payment_notice_accept(notice=provider.simulate_payment(invoice))  # type: ignore[attr-defined]
    return Order.objects.get(pk=order.pk)


# --- Fulfilling --------------------------------------------------------------------------


@dataclass
class _Step:
    order: Order
    actor: str
    client: Any = field(default=None)


class _WatchedClient:
    """The supplier client, paced and watched: before each call it takes a slot of the
    supplier's rate (orders.suppliers.throttle) and tells the lease keeper how long the call
    may take; a 429's Retry-After pauses every caller of that supplier."""

    # Calls that move Stars: sent only while this worker still holds the order's lease.
    FENCED = frozenset({"place_topup"})

    def __init__(self, client: Any, keeper: LeaseKeeper, supplier_code: str) -> None:
        self._client = client
        self._keeper = keeper
        self._supplier_code = supplier_code

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._client, name)
        if not callable(attribute):
            return attribute

        def call(*args: Any, **kwargs: Any) -> Any:
            # Waiting for a slot is progress too: the keeper may not let the lease lapse.
            self._keeper.expect(throttle.MAX_PAUSE_SECONDS)
            throttle.supplier_slot_wait(self._supplier_code)
            if name in self.FENCED:
                # The wait can last seconds (a 429's pause). Had the lease passed to another
                # worker meanwhile, that worker may already have looked the key up, found
                # nothing and be about to place it again: this request must not go out late.
                if not self._keeper.holds():
                    raise LeaseLost(f"order {self._keeper.order_id}: lease lost before {name}")
            # A requests timeout bounds each socket wait, so allow connect and read.
            self._keeper.expect(2 * float(settings.SUPPLIER_TIMEOUT))
            try:
                return attribute(*args, **kwargs)
            except RateLimited as exc:
                throttle.supplier_pause(self._supplier_code, exc.retry_after)
                raise

        return call


def order_fulfil(*, order_id: int, actor: str = "worker", budget_seconds: float | None = None,
                 owner: str | None = None) -> Order:
    """Drive a paid order towards delivery for up to budget_seconds; safe to run any number of times.

    The worker first takes the order's lease (orders.leases) and keeps it renewed while it
    works; if another live worker holds it, this run does nothing. Each pass does what the
    order's status asks (submit, resolve an unknown outcome by lookup, poll); between passes it
    sleeps until the order's next_action_at. It returns when the order needs nobody (final, on
    hold, review) or its next action lies beyond the budget, which the recovery sweep then
    picks up. `owner`: a lease this caller already holds (orders_claim_due).
    """
    budget = settings.FULFILMENT_POLL_BUDGET_SECONDS if budget_seconds is None else budget_seconds
    owner = owner or lease_owner_new()
    if not order_lease_acquire(order_id=order_id, owner=owner):
        return Order.objects.get(pk=order_id)  # a live worker is on it
    keeper = LeaseKeeper(order_id=order_id, owner=owner)
    keeper.start()
    try:
        order = _fulfil_leased(order_id=order_id, actor=actor, budget=budget, owner=owner,
                               keeper=keeper)
    except Exception:
        keeper.stop()
        order_lease_release(order_id=order_id, owner=owner)
        raise
    # A BaseException (the process is exiting) keeps the lease: it lapses within seconds.
    keeper.stop()
    order_lease_release(order_id=order_id, owner=owner)
    if order is None:  # lost the lease: another worker has it now
        return Order.objects.get(pk=order_id)
    order.lease_owner, order.lease_until = "", None
    return order


def orders_claim_due(*, limit: int, now=None) -> list[tuple[int, str]]:
    """Take the leases of up to `limit` due in-flight orders nobody holds; (order id, owner)s.

    On PostgreSQL the candidates are locked with SKIP LOCKED, so clusters claiming at the same
    moment each get different orders without waiting on each other; on SQLite (one writer at a
    time) each lease is a conditional UPDATE that only one claimer can win.
    """
    if limit <= 0:
        return []
    now = now or _now()
    due = (Order.objects.filter(lease_free(now) | Q(lease_owner=DISPATCHED),
                                status__in=IN_FLIGHT_STATUSES, next_action_at__lte=now)
           .order_by("next_action_at"))
    claimed: list[tuple[int, str]] = []
    if connection.features.has_select_for_update_skip_locked:
        with transaction.atomic():
            ids = list(due.select_for_update(skip_locked=True, of=("self",))
                       .values_list("pk", flat=True)[:limit])
            for order_id in ids:
                owner = lease_owner_new()
                Order.objects.filter(pk=order_id).update(
                    lease_owner=owner, lease_until=now + timedelta(seconds=lease_seconds()))
                claimed.append((order_id, owner))
        return claimed
    for order_id in due.values_list("pk", flat=True)[:limit]:
        owner = lease_owner_new()
        if order_lease_acquire(order_id=order_id, owner=owner):
            claimed.append((order_id, owner))
    return claimed


def fulfil_concurrently(*, order_id: int, actor: str = "worker") -> Order:
    """Drive `order_id` and, meanwhile, other due orders: many supplier calls in flight at once.

    The fulfilment task's entry point. Up to FULFILMENT_CONCURRENCY orders run at once, each in
    its own thread under its own lease (order_fulfil, unchanged: exactly-once rests on its
    leases and compare-and-set moves, whichever thread runs it). For FULFILMENT_CLAIM_SECONDS
    this worker claims due orders into every free slot (orders_claim_due), then lets the ones
    it holds finish. A worker that waits for the supplier thus waits for many orders at once,
    paced by the supplier's rate (orders.suppliers.throttle). With FULFILMENT_CONCURRENCY 1
    it is order_fulfil.
    """
    slots = int(settings.FULFILMENT_CONCURRENCY)
    if slots <= 1:
        return order_fulfil(order_id=order_id, actor=actor)
    claim_until = time.monotonic() + float(settings.FULFILMENT_CLAIM_SECONDS)
    with ThreadPoolExecutor(max_workers=slots, thread_name_prefix="fulfil") as pool:
        # Its own order's lease first, before a claim below could take it for another thread.
        owner = lease_owner_new()
        first = (pool.submit(_fulfil_in_thread, order_id, owner, actor)
                 if order_lease_acquire(order_id=order_id, owner=owner) else None)
        running = {first} if first is not None else set()
        if first is None and time.monotonic() < claim_until:
            running |= {pool.submit(_fulfil_in_thread, claimed_id, claimed_owner, actor)
                        for claimed_id, claimed_owner in orders_claim_due(limit=slots)}
        while running:
            free = slots - len(running)
            if free > 0 and time.monotonic() < claim_until:
                for claimed_id, owner in orders_claim_due(limit=free):
                    running.add(pool.submit(_fulfil_in_thread, claimed_id, owner, actor))
            if time.monotonic() < claim_until:
                done, running = wait(running, timeout=0.2, return_when=FIRST_COMPLETED)
            else:
                done, running = wait(running)
            for future in done:
                if future is not first and future.exception() is not None:
                    logger.error("fulfilment of a claimed order failed",
                                 exc_info=future.exception())
    if first is None:
        return Order.objects.get(pk=order_id)  # a live worker is on it
    return first.result()


def _fulfil_in_thread(order_id: int, owner: str | None, actor: str) -> Order:
    try:
        return order_fulfil(order_id=order_id, actor=actor, owner=owner)
    finally:
        connections.close_all()  # this thread's own connection


def _fulfil_leased(*, order_id: int, actor: str, budget: float, owner: str,
                   keeper: LeaseKeeper) -> Order | None:
    """The passes of order_fulfil under a held lease; the order as they left it, or None."""
    deadline = time.monotonic() + budget
    order = Order.objects.get(pk=order_id)
    step = _Step(order=order, actor=actor,
                 client=_WatchedClient(get_supplier_client(order.supplier_code), keeper,
                                       order.supplier_code))
    while True:
        keeper.expect(lease_seconds())
        try:
            _fulfil_pass(step)
        except LeaseLost:
            logger.warning("%s: lease lost before placing the top-up; not sent, leaving the "
                           "order to its new holder", step.order)
            return None
        order = step.order
        if order.status not in IN_FLIGHT_STATUSES or order.next_action_at is None:
            return order
        wait = (order.next_action_at - _now()).total_seconds()
        if time.monotonic() + max(wait, 0) >= deadline:
            return order
        if order.status == S.SUBMITTING and wait > 0:
            return order  # another worker is mid-call; its lease says when it stopped
        if wait > 0:
            keeper.expect(wait)
            time.sleep(wait)
        # Checked before acting again: a worker that stalled past its lease must stop here.
        if not keeper.holds():
            logger.warning("%s: lease lost mid-work; leaving the order to its new holder", order)
            return None
        step.order = Order.objects.get(pk=order_id)


def _fulfil_pass(step: _Step) -> None:
    order = step.order
    now = _now()
    due = order.next_action_at is None or order.next_action_at <= now
    give_up_at = (order.paid_at or order.created_at) + timedelta(hours=settings.FULFILMENT_GIVE_UP_HOURS)
    try:
        if order.status in (S.PROCESSING, S.UNKNOWN) and due and now >= give_up_at:
            # Still not settled after this long: a person must ask the supplier.
            step.order = order_transition(
                order=order, to_status=S.REVIEW, actor=step.actor, expected_status=order.status,
                reason=f"Not settled {settings.FULFILMENT_GIVE_UP_HOURS} h after payment; "
                       "check with the supplier",
                data={"supplier_order_id": order.supplier_order_id},
            )
        elif order.status == S.SUBMITTING and due:
            # The worker that claimed it died or hung mid-call: we cannot know what the
            # supplier did, so only a lookup by our idempotency key may decide.
            step.order = order_transition(
                order=order, to_status=S.UNKNOWN, actor=step.actor, expected_status=S.SUBMITTING,
                reason="Worker stopped mid-call; resolving by lookup",
                next_action_at=now,
            )
            _resolve_unknown(step)
        elif order.status == S.UNKNOWN and due:
            _resolve_unknown(step)
        elif order.status == S.PAID and due:
            _submit(step)
        elif order.status == S.PROCESSING and due:
            _poll(step)
    except OrderStateChanged:
        step.order = Order.objects.get(pk=order.pk)


def _backoff(order: Order, base: float = 2.0, cap: float = 300.0) -> timedelta:
    return timedelta(seconds=min(cap, base * 2 ** min(order.fulfilment_attempts, 8)))


def _submit(step: _Step) -> None:
    order = step.order
    client = step.client
    # Re-validate right before the money moves, by what the buyer confirmed: a @username may
    # have changed owners since; a numeric ID cannot, whatever its username is now.
    lookup = order.recipient_input
    try:
        current = client.validate_recipient(lookup)
    except InvalidRecipient as exc:
        _fail(step, reason="Recipient no longer valid at the supplier", error=exc)
        return
    except SupplierAuthError as exc:
        step.order = order_transition(
            order=order, to_status=S.ON_HOLD, actor=step.actor, expected_status=S.PAID,
            reason="Supplier rejected our credentials", data=_error_data(exc),
            next_action_at=_now() + _hold_recheck(),
        )
        return
    except SupplierError as exc:
        _retry_later(step, exc, _retry_delay(exc, order))
        return
    if current.user_id != order.recipient_user_id:
        step.order = order_transition(
            order=order, to_status=S.REVIEW, actor=step.actor, expected_status=S.PAID,
            reason=f"{lookup} now belongs to another account; not delivered",
            data={"confirmed_user_id": order.recipient_user_id, "now_user_id": current.user_id},
        )
        return

    request = {"user_id": order.recipient_user_id, "stars": order.stars,
               "idempotency_key": order.idempotency_key}
    with transaction.atomic():
        order = order_transition(
            order=order, to_status=S.SUBMITTING, actor=step.actor, expected_status=S.PAID,
            reason="Placing the top-up", next_action_at=_now() + _claim_window(),
            fulfilment_attempts=order.fulfilment_attempts + 1,
        )
        attempt = SupplierAttempt.objects.create(
            order=order, number=order.fulfilment_attempts, supplier_code=order.supplier_code,
            idempotency_key=order.idempotency_key, request=request,
        )
    step.order = order
    try:
        placed = client.place_topup(
            user_id=order.recipient_user_id, stars=order.stars,
            idempotency_key=order.idempotency_key,
        )
    except LeaseLost:
        attempt.outcome, attempt.error_code = SupplierAttempt.Outcome.REJECTED, "lease_lost"
        attempt.response_body, attempt.finished_at = "Not sent: the lease passed to another worker", _now()
        attempt.save(update_fields=["outcome", "error_code", "response_body", "finished_at"])
        raise
    except SupplierError as exc:
        _record_attempt_error(attempt, exc)
        _after_place_error(step, exc)
        return
    _record_attempt(attempt, SupplierAttempt.Outcome.ACCEPTED, placed.raw, placed.order_id)
    _apply_supplier_order(step, placed, expected=S.SUBMITTING)


def _after_place_error(step: _Step, exc: SupplierError) -> None:
    order = step.order
    data = _error_data(exc)
    if isinstance(exc, OutcomeUnknown):
        step.order = order_transition(
            order=order, to_status=S.UNKNOWN, actor=step.actor, expected_status=S.SUBMITTING,
            reason="Supplier outcome unknown; resolving by lookup", data=data,
            next_action_at=_now() + timedelta(seconds=1),
        )
    elif isinstance(exc, InvalidRecipient):
        _fail(step, reason="Supplier rejected the recipient", error=exc, expected=S.SUBMITTING)
    elif isinstance(exc, InsufficientBalance | SupplierAuthError):
        step.order = order_transition(
            order=order, to_status=S.ON_HOLD, actor=step.actor, expected_status=S.SUBMITTING,
            reason=("Supplier balance too low" if isinstance(exc, InsufficientBalance)
                    else "Supplier rejected our credentials"),
            data=data, next_action_at=_now() + _hold_recheck(),
        )
    elif isinstance(exc, RateLimited | SupplierUnavailable):
        # Certain that nothing was placed: back to paid, to place again later.
        step.order = order_transition(
            order=order, to_status=S.PAID, actor=step.actor, expected_status=S.SUBMITTING,
            reason=f"Supplier did not take the order ({exc.code}); will retry", data=data,
            next_action_at=_now() + _retry_delay(exc, order),
        )
    else:  # IdempotencyConflict, SupplierRequestError: our request is wrong; a person must look
        step.order = order_transition(
            order=order, to_status=S.REVIEW, actor=step.actor, expected_status=S.SUBMITTING,
            reason=f"Supplier refused the request ({exc.code})", data=data,
        )


def _resolve_unknown(step: _Step) -> None:
    order = step.order
    try:
        found = step.client.find_by_reference(order.idempotency_key)
    except SupplierError as exc:
        _retry_later(step, exc, timedelta(seconds=5), status=S.UNKNOWN)
        return
    if found is not None:
        _apply_supplier_order(step, found, expected=S.UNKNOWN)
        return
    settle_at = order.status_changed_at + _unknown_grace()
    if _now() < settle_at:
        # Looked up again at least every FULFILMENT_POLL_MAX_SECONDS meanwhile: it may appear.
        wait = min(settle_at - _now(), timedelta(seconds=settings.FULFILMENT_POLL_MAX_SECONDS))
        _retry_later(step, None, wait, status=S.UNKNOWN)
        return
    step.order = order_transition(
        order=order, to_status=S.PAID, actor=step.actor, expected_status=S.UNKNOWN,
        reason="Supplier has no order under our key: safe to place it again with the same key",
        next_action_at=_now(),
    )


def _poll(step: _Step) -> None:
    order = step.order
    try:
        if order.supplier_order_id:
            found = step.client.get_order(order.supplier_order_id)
        else:
            found = step.client.find_by_reference(order.idempotency_key)
    except SupplierNotFound:
        found = None
    except SupplierError as exc:
        _retry_later(step, exc, timedelta(seconds=5), status=S.PROCESSING)
        return
    if found is None:
        step.order = order_transition(
            order=order, to_status=S.UNKNOWN, actor=step.actor, expected_status=S.PROCESSING,
            reason="Supplier lost track of the order", next_action_at=_now(),
        )
        return
    _apply_supplier_order(step, found, expected=S.PROCESSING)


def _apply_supplier_order(step: _Step, found: SupplierOrder, *, expected: str) -> None:
    order = step.order
    data = {"supplier_order_id": found.order_id, "supplier_status": str(found.status)}
    common = {"supplier_order_id": found.order_id, "supplier_status": str(found.status)}
    if found.status == SupplierOrderStatus.COMPLETED:
        step.order = order_transition(
            order=order, to_status=S.DELIVERED, actor=step.actor, expected_status=expected,
            reason="Supplier confirmed delivery", data=data, **common,
        )
    elif found.status == SupplierOrderStatus.FAILED:
        _fail(step, reason=f"Supplier failed the order: {found.failure_reason or 'no reason'}",
              error=None, expected=expected, extra=common)
    elif found.status == SupplierOrderStatus.REVERSED:
        step.order = order_transition(
            order=order, to_status=S.REVIEW, actor=step.actor, expected_status=expected,
            reason="Supplier reversed the order", data=data, **common,
        )
    else:
        waited = (_now() - order.status_changed_at).total_seconds() if expected == S.PROCESSING else 0
        delay = timedelta(seconds=min(settings.FULFILMENT_POLL_MAX_SECONDS,
                                      max(settings.FULFILMENT_POLL_FIRST_DELAY, waited / 2)))
        if order.status != S.PROCESSING:
            step.order = order_transition(
                order=order, to_status=S.PROCESSING, actor=step.actor, expected_status=expected,
                reason="Supplier is processing the order", data=data,
                next_action_at=_now() + delay, **common,
            )
        else:
            Order.objects.filter(pk=order.pk, status=S.PROCESSING).update(
                next_action_at=_now() + delay, supplier_status=str(found.status))
            step.order = Order.objects.get(pk=order.pk)


def _fail(step: _Step, *, reason: str, error: SupplierError | None, expected: str = S.PAID,
          extra: dict[str, Any] | None = None) -> None:
    """The supplier failed without charging: fail the order and start its refund."""
    with transaction.atomic():
        order = order_transition(
            order=step.order, to_status=S.FAILED, actor=step.actor, expected_status=expected,
            reason=reason, data=_error_data(error) if error else {}, **(extra or {}),
        )
        order = order_transition(
            order=order, to_status=S.REFUND_PENDING, actor=step.actor, reason="Refund started",
        )
        transaction.on_commit(lambda: queue.enqueue_refund(order.pk))
    step.order = order


def _retry_later(step: _Step, exc: SupplierError | None, delay: timedelta, status: str = S.PAID) -> None:
    """Leave the order where it is and set when to look again."""
    Order.objects.filter(pk=step.order.pk, status=status).update(next_action_at=_now() + delay)
    if exc is not None:
        logger.warning("%s: supplier error %s, retry in %ss", step.order, exc.code, delay.total_seconds())
    step.order = Order.objects.get(pk=step.order.pk)


def _retry_delay(exc: SupplierError, order: Order) -> timedelta:
    if isinstance(exc, RateLimited):
        return timedelta(seconds=max(exc.retry_after, 0.5))
    return _backoff(order)


def _error_data(exc: SupplierError | None) -> dict[str, Any]:
    if exc is None:
        return {}
    return {"error": exc.code, "message": str(exc)[:500], "http_status": exc.http_status}


def _record_attempt(attempt: SupplierAttempt, outcome: str, raw: dict[str, Any],
                    supplier_order_id: str = "") -> None:
    attempt.outcome = outcome
    attempt.response_status = raw.get("status")
    body = raw.get("body")
    attempt.response_body = body if isinstance(body, str) else _json_text(body)
    attempt.supplier_order_id = supplier_order_id
    attempt.finished_at = _now()
    attempt.save(update_fields=["outcome", "response_status", "response_body",
                                "supplier_order_id", "finished_at"])


def _record_attempt_error(attempt: SupplierAttempt, exc: SupplierError) -> None:
    certain = isinstance(exc, InvalidRecipient | InsufficientBalance | SupplierAuthError
                         | RateLimited | SupplierUnavailable | IdempotencyConflict
                         | SupplierRequestError)
    attempt.outcome = SupplierAttempt.Outcome.REJECTED if certain else SupplierAttempt.Outcome.UNKNOWN
    attempt.error_code = exc.code[:50]
    attempt.response_status = exc.http_status
    attempt.response_body = (exc.response_body or str(exc))[:10_000]
    attempt.finished_at = _now()
    attempt.save(update_fields=["outcome", "error_code", "response_status", "response_body",
                                "finished_at"])


def _json_text(value: Any) -> str:
    import json

    return json.dumps(value, default=str)[:10_000]


# --- Refunds, holds and the operator -----------------------------------------------------


def order_refund(*, order_id: int, actor: str = "worker") -> Order:
    """Refund every confirmed payment of an order in refund_pending; safe to repeat."""
    order = Order.objects.get(pk=order_id)
    if order.status != S.REFUND_PENDING:
        return order
    for payment in order.payments.filter(status=Payment.Status.CONFIRMED):
        result = payment_provider_get(payment.provider).refund(payment)
        if not result.refunded:
            return order_transition(
                order=order, to_status=S.REVIEW, actor=actor, expected_status=S.REFUND_PENDING,
                reason=f"Refund through {payment.provider} failed: {result.message}"[:255],
            )
        Payment.objects.filter(pk=payment.pk, status=Payment.Status.CONFIRMED).update(
            status=Payment.Status.REFUNDED, refund_reference=result.provider_reference,
            refunded_at=_now(),
        )
    try:
        return order_transition(
            order=order, to_status=S.REFUNDED, actor=actor, expected_status=S.REFUND_PENDING,
            reason="Payment refunded",
        )
    except OrderStateChanged:
        return Order.objects.get(pk=order_id)


def order_resume(*, order: Order, actor: str, reason: str = "Resumed by an operator",
                 expected_status: str | None = None) -> Order:
    """Send an on-hold or reviewed order back to fulfilment.

    With expected_status, an order that has moved since the caller read it is refused
    (OrderStateChanged): the operator decided on what they saw. Only on hold and review
    resume (InvalidTransition otherwise): from unknown or submitting a second top-up could
    follow one still in flight, and an expired order was never paid.
    """
    if order.status not in (S.ON_HOLD, S.REVIEW):
        raise InvalidTransition(order.reference, order.status, S.PAID)
    with transaction.atomic():
        order = order_transition(order=order, to_status=S.PAID, actor=actor, reason=reason,
                                 expected_status=expected_status, next_action_at=_now())
        transaction.on_commit(lambda: queue.enqueue_fulfilment(order.pk))
    return order


def order_refund_start(*, order: Order, actor: str, reason: str = "Refund decided by an operator",
                       expected_status: str | None = None) -> Order:
    """Send an on-hold, reviewed or failed order to refund; the refund task does the rest."""
    with transaction.atomic():
        order = order_transition(order=order, to_status=S.REFUND_PENDING, actor=actor,
                                 reason=reason, expected_status=expected_status)
        transaction.on_commit(lambda: queue.enqueue_refund(order.pk))
    return order


@dataclass
class SweepResult:
    enqueued: list[int] = field(default_factory=list)
    resumed: list[int] = field(default_factory=list)
    refunds: list[int] = field(default_factory=list)


def orders_recover(*, now=None) -> list[int]:
    """Enqueue every in-flight order that is due and that no live worker holds; returns their ids.

    Cheap enough to run every second (one indexed query): the cluster's recovery loop runs it
    at start and then continuously, so an order whose worker died is worked on again within a
    lease, however often the cluster restarts. Each enqueued order is marked dispatched for a
    few seconds, so a queue that is slow to deliver does not collect copies of its task.
    """
    now = now or _now()
    due = Order.objects.filter(lease_free(now), status__in=IN_FLIGHT_STATUSES,
                               next_action_at__lte=now).order_by("next_action_at")
    enqueued: list[int] = []
    for order_id in due.values_list("pk", flat=True)[:500]:
        if order_lease_dispatch(order_id=order_id, now=now):
            queue.enqueue_fulfilment(order_id)
            enqueued.append(order_id)
    return enqueued


def orders_sweep(*, now=None) -> SweepResult:
    """Find paid orders nobody is working on and put them back in the queue.

    The queue can lose a task (a Redis worker killed mid-task) and run one twice (the ORM
    broker); the order rows are the truth, so this runs on a schedule (and its in-flight part,
    orders_recover, continuously in the cluster's recovery loop).
    """
    now = now or _now()
    result = SweepResult()
    result.enqueued = orders_recover(now=now)
    # Orders whose refund task was lost.
    for order_id in Order.objects.filter(
        status=S.REFUND_PENDING, status_changed_at__lte=now - _stall()
    ).values_list("pk", flat=True)[:500]:
        queue.enqueue_refund(order_id)
        result.refunds.append(order_id)
    held = list(Order.objects.filter(status=S.ON_HOLD, next_action_at__lte=now)[:500])
    if held:
        result.resumed = _resume_held(held)
    return result


def _resume_held(held: list[Order]) -> list[int]:
    """Resume held orders once the supplier answers and its balance covers them."""
    try:
        balance = get_supplier_client().balance()
    except SupplierError as exc:
        logger.warning("supplier still unavailable for held orders: %s", exc.code)
        Order.objects.filter(pk__in=[o.pk for o in held], status=S.ON_HOLD).update(
            next_action_at=_now() + _hold_recheck())
        return []
    return _resume_covered(held, balance=balance, actor="sweeper")


def orders_held_resume(*, balance: SupplierBalance, actor: str = "balance-check") -> list[int]:
    """Resume the held orders a balance just read covers, oldest first; returns their ids.

    For the balance check (stock.services.balance_check): a reading that covers an order ends
    its hold at once, instead of after SUPPLIER_HOLD_RECHECK_SECONDS. The read itself proves
    our credentials work, so orders held for them are resumed too, as the sweeper does. Each
    resume is a conditional status move: racing the sweeper, an order resumes once.
    """
    held = list(Order.objects.filter(status=S.ON_HOLD).order_by("paid_at", "created_at")[:500])
    return _resume_covered(held, balance=balance, actor=actor) if held else []


def _resume_covered(held: list[Order], *, balance: SupplierBalance, actor: str) -> list[int]:
    resumed: list[int] = []
    available = balance.amount
    for order in sorted(held, key=lambda o: o.paid_at or o.created_at):
        if order.cost > available:
            Order.objects.filter(pk=order.pk, status=S.ON_HOLD).update(
                next_action_at=_now() + _hold_recheck())
            continue
        available -= order.cost
        try:
            # Only from on hold: an order an operator moved meanwhile (to review, to refund)
            # stays where they put it.
            with transaction.atomic():
                order_transition(
                    order=order, to_status=S.PAID, actor=actor, expected_status=S.ON_HOLD,
                    reason=f"Supplier reachable, balance {balance.amount} {balance.currency}",
                    next_action_at=_now(),
                )
                transaction.on_commit(partial(queue.enqueue_fulfilment, order.pk))
        except OrderStateChanged:
            continue  # resumed (or moved on) by someone else meanwhile
        resumed.append(order.pk)
    return resumed


# The operator's console (orders/console.py) calls these; each records `actor` and the
# operator's reason on the order's timeline.

# Statuses an order's buyer notice may be sent again for: the final ones the buyer was told about.
NOTICE_RESEND_STATUSES = frozenset({S.DELIVERED, S.REFUNDED})


def order_mark_refunded_refusal(order: Order) -> str:
    """Why an order cannot be marked refunded by hand, or "" when it can."""
    if order.payment_method == "balance":
        # Nothing outside the shop can refund a prepaid balance: only the refund task's ledger
        # credit does, and marking it refunded would tell the partner so without one.
        return (f"Order {order} was paid from a partner's balance: use Refund, which credits "
                "the balance.")
    return ""


def order_mark_refunded(*, order: Order, actor: str, reason: str, refund_reference: str,
                        expected_status: str) -> Order:
    """Record that an operator refunded the order outside the shop (by hand, at the provider).

    The order's confirmed payments are marked refunded with the operator's reference, so the
    refund task, if it still runs, finds nothing left to refund.
    """
    refusal = order_mark_refunded_refusal(order)
    if refusal:
        raise ActionNotApplicable(refusal)
    refund_reference = refund_reference.strip()
    if not refund_reference:
        raise ActionNotApplicable("A refund reference is required.")
    now = _now()
    with transaction.atomic():
        order = order_transition(
            order=order, to_status=S.REFUNDED, actor=actor, reason=reason,
            expected_status=expected_status,
            data={"refund_reference": refund_reference, "refunded_outside_the_shop": True},
        )
        Payment.objects.filter(order=order, status=Payment.Status.CONFIRMED).update(
            status=Payment.Status.REFUNDED, refund_reference=refund_reference[:200],
            refunded_at=now,
        )
    return order


@dataclass(frozen=True)
class UnknownLookup:
    """What an operator's supplier lookup of an unknown order found, and where it left the order."""

    order: Order
    found: SupplierOrder | None
    error: str = ""


def order_unknown_resolve(*, order: Order, actor: str, reason: str) -> UnknownLookup:
    """Ask the supplier now what became of an order whose outcome is unknown, and apply it.

    Only a lookup by our idempotency key: it never places a top-up, and an order the supplier
    has no record of stays unknown (the worker decides when it is safe to place it again). The
    order's lease keeps a worker from acting on it meanwhile; the call runs outside any
    transaction. Raises OrderBusy while a worker holds it, OrderStateChanged once it is no
    longer unknown.
    """
    owner = lease_owner_new()
    if not order_lease_acquire(order_id=order.pk, owner=owner):
        raise OrderBusy(f"A worker is working on order {order} right now; try again in a few seconds.")
    try:
        order = Order.objects.get(pk=order.pk)
        if order.status != S.UNKNOWN:
            raise OrderStateChanged(order.reference, expected=S.UNKNOWN, actual=order.status)
        client = get_supplier_client(order.supplier_code)
        try:
            found = client.find_by_reference(order.idempotency_key)
        except SupplierError as exc:
            order_note(order=order, actor=actor, reason=reason,
                       data={"lookup": "failed", **_error_data(exc)})
            return UnknownLookup(order=order, found=None, error=f"{exc.code}: {exc}")
        order_note(order=order, actor=actor, reason=reason, data={
            "lookup": "found" if found else "not found",
            **({"supplier_order_id": found.order_id, "supplier_status": str(found.status)}
               if found else {}),
        })
        if found is None:
            return UnknownLookup(order=order, found=None)
        step = _Step(order=order, actor=actor, client=client)
        _apply_supplier_order(step, found, expected=S.UNKNOWN)
        return UnknownLookup(order=step.order, found=found)
    finally:
        order_lease_release(order_id=order.pk, owner=owner)


def order_notice_refusal(order: Order) -> str:
    """Why the buyer's notice of this order cannot be sent again, or "" when it can."""
    if order.status not in NOTICE_RESEND_STATUSES:
        return (f"Order {order} is {order.get_status_display()}: only delivered or refunded "
                "orders have a notice to resend.")
    if not settings.ORDER_NOTICE_TASKS.get(order.channel):
        return f"Nothing sends notices for {order.get_channel_display()} orders here."
    if order.channel == Channel.WEB and not order.buyer_email:
        return "The buyer gave no e-mail address for a receipt."
    if order.channel == Channel.BOT and not order.buyer_telegram_id:
        return "The order has no buyer Telegram ID to send the notice to."
    return ""


def order_notice_resend(*, order: Order, actor: str, reason: str, expected_status: str) -> Order:
    """Send the buyer's notice (bot message or e-mail receipt) about the order's status again.

    Notices go out at most once per status; this records the resend on the timeline, and the
    notice task sends once for that note (the note's id is its key), however often it runs.
    """
    with transaction.atomic():
        order = Order.objects.select_for_update().get(pk=order.pk)
        if order.status != expected_status:
            raise OrderStateChanged(order.reference, expected=expected_status, actual=order.status)
        refusal = order_notice_refusal(order)
        if refusal:
            raise ActionNotApplicable(refusal)
        status = order.status
        note = OrderEvent.objects.create(
            order=order, from_status=status, to_status=status, actor=actor[:100],
            reason=reason[:255], data={"notice_resend": status},
        )
        channel, order_id = order.channel, order.pk
        transaction.on_commit(
            lambda: queue.enqueue_buyer_notice_resend(order_id, channel, status, note.pk))
    return order
