"""Property tests (Hypothesis, stateful) of the order state machine and the services that drive it.

Random interleavings of placing, paying (duplicate, under- and overpaid, late, after expiry,
through the inbox), fulfilment passes against a scripted supplier (ok, processing, failed,
committed-then-timeout, a request still in flight, 5xx, rate limited, empty wallet, bad
credentials, invalid or renamed recipient), the supplier settling orders, clock jumps, sweeps,
refunds and operator actions. After every step the invariants below must hold; at the end the
supplier heals and everything paid must drain to delivered, refunded or review.

Only public services are called, and the supplier is injected where every service gets it
(``get_supplier_client``), so the tests hold whatever shape fulfilment takes inside.

Invariants:
- every status change is one declared move with exactly one OrderEvent (the events chain from
  "" to the current status), delivered happens at most once and is final;
- a paid order never goes back to unpaid (awaiting payment, expired, cancelled);
- Stars delivered: a delivered order has a completed supplier order for exactly its Stars;
  an order refunded without an operator never had its Stars delivered;
- never placed twice: one supplier order per idempotency key, no top-up sent again while an
  earlier request with the key may still be in flight, no replay of a placed key unless an
  operator sent the order back, and every call that may place has its SupplierAttempt;
- money fields (price, cost, fee, Stars, key) never change after placing; paid_at is set
  exactly when the order was paid; margin is what the model says; a refunded order's payments
  are refunded; an order a worker still owes something has its next action recorded.

CI runs derandomized (CI=true: the same examples every run) in well under a minute;
HYPOTHESIS_PROFILE=long runs many more, freshly random.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import ClassVar

import pytest
from django.conf import settings as django_settings
from django.db import transaction
from django.utils import timezone
from hypothesis import HealthCheck, assume
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
    run_state_machine_as_test,
)

from orders import console, services
from orders.exceptions import (
    ActionNotApplicable,
    IdempotencyConflict,
    InsufficientBalance,
    InvalidRecipient,
    InvalidTransition,
    OrderBusy,
    OrderStateChanged,
    OutcomeUnknown,
    PaymentMethodUnavailable,
    PaymentMismatch,
    RateLimited,
    SupplierAuthError,
    SupplierNotFound,
    SupplierUnavailable,
)
from orders.models import NO_MARGIN_STATUSES, Order, OrderEvent, Payment, SupplierAttempt
from orders.models import OrderStatus as S
from orders.payments.base import RefundResult
from orders.payments.sandbox import SandboxPaymentProvider
from orders.suppliers.base import (
    RecipientInfo,
    SupplierBalance,
    SupplierOrder,
    SupplierOrderStatus,
)
from orders.transitions import IN_FLIGHT_STATUSES, can_transition
from shop.models import Product

pytestmark = pytest.mark.django_db

LONG = os.environ.get("HYPOTHESIS_PROFILE") == "long"
PROFILE = hypothesis_settings(
    max_examples=1_000 if LONG else 50,
    stateful_step_count=60 if LONG else 30,
    derandomize=os.environ.get("CI") == "true" and not LONG,
    deadline=None,
    database=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                           HealthCheck.filter_too_much],
)

USER_ID, USERNAME = "100000001", "@sandbox_ok"
OTHER_USER_ID = "100000010"
UNPAID = {S.AWAITING_PAYMENT, S.EXPIRED, S.CANCELLED}
# What a buyer who paid may finally see once the supplier works again.
SETTLED_AFTER_PAYMENT = {S.DELIVERED, S.REFUNDED, S.REVIEW}
OPERATOR_ERRORS = (InvalidTransition, OrderStateChanged, ActionNotApplicable, OrderBusy)

# What the supplier does on the next calls of a fulfilment pass (or a lookup, a balance read).
PLACE_OUTCOMES = [
    "ok", "ok", "ok", "processing", "processing", "failed", "committed_then_timeout",
    "in_flight", "5xx", "rate_limited", "insufficient_balance", "auth", "idempotency_conflict",
    "invalid_at_place",
]
VALIDATE_OUTCOMES = ["invalid_recipient", "renamed", "validate_5xx"]
OUTCOMES = PLACE_OUTCOMES + VALIDATE_OUTCOMES
# Every status some order passed through, over the whole run: proof the run was not vacuous.
REACHED: Counter[str] = Counter()
TICKS = [0.5, 1, 2, 3, 6, 6, 16, 16, 61, 301, 1801, 1801, 25 * 3600]


class Clock:
    """django.utils.timezone.now with an offset the machine moves forward (a clock jump)."""

    def __init__(self) -> None:
        self.real_now = timezone.now
        self.offset = timedelta()

    def now(self) -> datetime:
        return self.real_now() + self.offset


@dataclass
class Booked:
    """One top-up in the supplier's books."""

    order_id: str
    key: str
    user_id: str
    stars: int
    status: SupplierOrderStatus

    def answer(self) -> SupplierOrder:
        return SupplierOrder(
            order_id=self.order_id, status=self.status, reference=self.key,
            user_id=self.user_id, stars=self.stars, cost=Decimal("1.00"),
            failure_reason="recipient_cannot_receive" if self.status == "failed" else "",
        )


@dataclass
class ScriptedSupplier:
    """A supplier in memory that dedupes by idempotency key and answers as it is told.

    It also counts what a supplier whose dedupe cannot be trusted would have done twice:
    a top-up sent while an earlier request with its key may still be in flight (`overlaps`)
    and a top-up sent again for a key it already holds (`replays`).
    """

    clock: Clock
    outcome: str = "ok"
    books: dict[str, Booked] = field(default_factory=dict)
    created: Counter[str] = field(default_factory=Counter)
    place_calls: Counter[str] = field(default_factory=Counter)
    replays: Counter[str] = field(default_factory=Counter)
    # key -> (when the in-flight request lands, its Stars and user)
    in_flight: dict[str, tuple[datetime, int, str]] = field(default_factory=dict)
    overlaps: list[str] = field(default_factory=list)
    seq: int = 0

    def _land_due(self) -> None:
        now = self.clock.now()
        for key, (lands_at, stars, user_id) in list(self.in_flight.items()):
            if lands_at <= now:
                del self.in_flight[key]
                if key not in self.books:
                    self._book(key, user_id, stars, SupplierOrderStatus.COMPLETED)

    def _book(self, key: str, user_id: str, stars: int, status: SupplierOrderStatus) -> Booked:
        self.seq += 1
        booked = Booked(f"SUP-{self.seq:05d}", key, user_id, stars, status)
        self.books[key] = booked
        self.created[key] += 1
        return booked

    def _read_fault(self) -> None:
        if self.outcome in ("5xx", "validate_5xx"):
            raise SupplierUnavailable("down", http_status=503)
        if self.outcome == "rate_limited":
            raise RateLimited("slow down", retry_after=1.0, http_status=429)
        if self.outcome in ("committed_then_timeout", "in_flight"):
            raise OutcomeUnknown("read timed out")

    def validate_recipient(self, recipient: str) -> RecipientInfo:
        if self.outcome == "invalid_recipient":
            raise InvalidRecipient("no such user", http_status=400)
        if self.outcome == "validate_5xx":
            raise SupplierUnavailable("down", http_status=503)
        if self.outcome == "auth":
            raise SupplierAuthError("bad key", http_status=401)
        if self.outcome == "renamed":
            return RecipientInfo(user_id=OTHER_USER_ID, username=USERNAME)
        return RecipientInfo(user_id=USER_ID, username=USERNAME)

    def place_topup(self, *, user_id: str, stars: int, idempotency_key: str) -> SupplierOrder:
        self._land_due()
        key = idempotency_key
        self.place_calls[key] += 1
        if key in self.in_flight:
            self.overlaps.append(key)
        if key in self.books:
            self.replays[key] += 1
            return self.books[key].answer()
        outcome = self.outcome
        if outcome == "5xx":
            raise SupplierUnavailable("internal error, nothing created", http_status=500)
        if outcome == "rate_limited":
            raise RateLimited("slow down", retry_after=2.0, http_status=429)
        if outcome == "insufficient_balance":
            raise InsufficientBalance("wallet empty", http_status=500)
        if outcome == "auth":
            raise SupplierAuthError("bad key", http_status=401)
        if outcome == "idempotency_conflict":
            raise IdempotencyConflict("key reused", http_status=409)
        if outcome == "invalid_at_place":
            raise InvalidRecipient("cannot receive", http_status=400)
        if outcome == "in_flight":
            # Our client gave up; the request lands later, within the client's timeout.
            lands = self.clock.now() + timedelta(seconds=float(django_settings.SUPPLIER_TIMEOUT))
            self.in_flight[key] = (lands, stars, user_id)
            raise OutcomeUnknown("read timed out")
        status = {"processing": SupplierOrderStatus.PROCESSING,
                  "failed": SupplierOrderStatus.FAILED}.get(outcome, SupplierOrderStatus.COMPLETED)
        booked = self._book(key, user_id, stars, status)
        if outcome == "committed_then_timeout":
            raise OutcomeUnknown("read timed out after the supplier committed")
        return booked.answer()

    def get_order(self, supplier_order_id: str) -> SupplierOrder:
        self._land_due()
        self._read_fault()
        for booked in self.books.values():
            if booked.order_id == supplier_order_id:
                return booked.answer()
        raise SupplierNotFound("no such order", http_status=404)

    def find_by_reference(self, idempotency_key: str) -> SupplierOrder | None:
        self._land_due()
        self._read_fault()
        booked = self.books.get(idempotency_key)
        return booked.answer() if booked else None

    def balance(self) -> SupplierBalance:
        self._read_fault()
        amount = Decimal("0") if self.outcome == "insufficient_balance" else Decimal("1000000")
        return SupplierBalance(amount=amount, currency="USD")

    def orders_between(self, *, since: datetime, until: datetime) -> list[SupplierOrder]:
        return []

    def delivered_stars(self, key: str) -> int:
        booked = self.books.get(key)
        return booked.stars if booked and booked.status == SupplierOrderStatus.COMPLETED else 0


@dataclass
class World:
    """What the pytest test sets up once and every example shares."""

    catalog: Product
    clock: Clock
    supplier: ScriptedSupplier | None = None
    refund_ok: bool = True


@dataclass
class Placed:
    """What an order was placed with: none of it may change later."""

    price: Decimal
    cost: Decimal
    payment_fee: Decimal
    stars: int
    currency: str
    idempotency_key: str


class OrderMachine(RuleBasedStateMachine):
    """Orders driven through the public services in random order, with random faults."""

    world: ClassVar[World]
    orders = Bundle("orders")

    def __init__(self) -> None:
        super().__init__()
        # Each example runs in a savepoint rolled back at teardown: examples never see each other.
        self._atomic = transaction.atomic()
        self._atomic.__enter__()
        self.world.clock.offset = timedelta()
        self.world.refund_ok = True
        self.supplier = ScriptedSupplier(clock=self.world.clock)
        self.world.supplier = self.supplier
        self.placed: dict[int, Placed] = {}
        self.operator_touched: set[int] = set()
        self.operator_resumed: set[int] = set()
        self.refunded_payments: dict[int, set[int]] = {}

    def teardown(self) -> None:
        try:
            if self.placed:
                self._drain_and_check()
        finally:
            transaction.set_rollback(True)
            self._atomic.__exit__(None, None, None)

    # --- helpers --------------------------------------------------------------------------

    def _order(self, pk: int) -> Order:
        return Order.objects.get(pk=pk)

    def _fulfil(self, pk: int) -> None:
        services.order_fulfil(order_id=pk, budget_seconds=0)

    def _drain_and_check(self) -> None:
        """The supplier heals: everything paid must settle, nothing may be left owed."""
        self.supplier.outcome = "ok"
        self.world.refund_ok = True
        for booked in self.supplier.books.values():
            if booked.status in (SupplierOrderStatus.PROCESSING, SupplierOrderStatus.PENDING):
                booked.status = SupplierOrderStatus.COMPLETED
        for _ in range(12):
            self.world.clock.offset += timedelta(seconds=301)
            services.orders_sweep()
            for pk in Order.objects.filter(status__in=IN_FLIGHT_STATUSES).values_list("pk", flat=True):
                self._fulfil(pk)
            for pk in Order.objects.filter(status=S.REFUND_PENDING).values_list("pk", flat=True):
                services.order_refund(order_id=pk, actor="worker")
            self.orders_hold_their_invariants()
            if not Order.objects.filter(
                    status__in=[*IN_FLIGHT_STATUSES, S.REFUND_PENDING, S.ON_HOLD]).exists():
                break
        for order in Order.objects.filter(pk__in=list(self.placed)):
            ever_paid = order.events.filter(to_status=S.PAID).exists()
            if ever_paid:
                assert order.status in SETTLED_AFTER_PAYMENT, (
                    f"{order} paid but left {order.status} after the supplier healed: "
                    f"{order.status_reason}")

    # --- placing and paying ---------------------------------------------------------------

    @initialize(target=orders)
    def first_order(self) -> int:
        pk = self.place(package=500)
        order = self._order(pk)
        services.order_mark_paid(order=order, provider="sandbox", provider_reference=f"{pk}-a",
                                 amount=order.price, currency=order.currency,
                                 actor="payment:sandbox")
        return pk

    @rule(target=orders, package=st.sampled_from([None, 50, 500, 1000, 5000]),
          quantity=st.integers(50, 10_000))
    def place_order(self, package: int | None, quantity: int) -> int:
        return self.place(package=package, quantity=quantity)

    def place(self, *, package: int | None, quantity: int | None = None) -> int:
        catalog = self.world.catalog
        package_id = catalog.packages.get(quantity=package).pk if package else None
        order = services.order_create(
            channel="web", product=catalog, recipient_input=USERNAME,
            recipient=RecipientInfo(user_id=USER_ID, username=USERNAME),
            payment_method="sandbox", package_id=package_id,
            quantity=None if package_id else quantity,
        )
        self.placed[order.pk] = Placed(order.price, order.cost, order.payment_fee, order.stars,
                                       order.currency, order.idempotency_key)
        return order.pk

    @rule(pk=orders, reference=st.sampled_from(["a", "a", "b"]),
          amount=st.sampled_from(["exact", "exact", "exact", "under", "over"]),
          currency=st.sampled_from(["USD", "USD", "USD", "EUR"]), covers_now=st.booleans())
    def pay(self, pk: int, reference: str, amount: str, currency: str, covers_now: bool) -> None:
        """A provider's confirmation, possibly a replay (same reference), late or wrong."""
        order = self._order(pk)
        paid = {"exact": order.price, "under": order.price - Decimal("0.01"),
                "over": order.price + Decimal("1.00")}[amount]
        try:
            services.order_mark_paid(
                order=order, provider="sandbox", provider_reference=f"{pk}-{reference}",
                amount=paid, currency=currency, actor="payment:sandbox",
                covers_current_price=covers_now,
            )
        except PaymentMismatch:
            pass  # the reference was spent on another order (pay_with_another_orders_reference)

    @rule(pk=orders, other=orders)
    def pay_with_another_orders_reference(self, pk: int, other: int) -> None:
        """A payment reference already applied to another order is refused, never applied."""
        assume(pk != other)
        order = self._order(pk)
        try:
            services.order_mark_paid(
                order=order, provider="sandbox", provider_reference=f"{other}-a",
                amount=order.price, currency=order.currency, actor="payment:sandbox")
        except PaymentMismatch:
            pass

    @rule(pk=orders)
    def pay_through_the_inbox(self, pk: int) -> None:
        """The sandbox button: an invoice and a provider notice, pressed any number of times."""
        try:
            services.order_pay_sandbox(order=self._order(pk))
        except (OrderStateChanged, PaymentMethodUnavailable):
            pass  # no invoice for an order that no longer awaits payment

    @rule(pk=orders)
    def buyer_cancels(self, pk: int) -> None:
        try:
            services.order_cancel(order=self._order(pk), actor="buyer:web")
        except (OrderStateChanged, InvalidTransition):
            pass

    # --- time, the supplier, the workers --------------------------------------------------

    @rule(seconds=st.sampled_from(TICKS), scheduler_ran=st.booleans())
    def clock_jumps(self, seconds: float, scheduler_ran: bool) -> None:
        """Time passes (or the clock jumps); the minute scheduler may have expired orders meanwhile."""
        self.world.clock.offset += timedelta(seconds=seconds)
        if scheduler_ran and seconds >= 60:
            services.orders_expire()

    @rule()
    def expire_unpaid(self) -> None:
        services.orders_expire()

    @rule(pk=orders, outcome=st.sampled_from(OUTCOMES))
    def fulfil(self, pk: int, outcome: str) -> None:
        """One fulfilment task (a worker's pass), the supplier answering `outcome`."""
        self.supplier.outcome = outcome
        self._fulfil(pk)

    @rule(data=st.data())
    def workers_run(self, data: st.DataObject) -> None:
        """A round of the cluster: every order a worker owes something gets a pass."""
        owed = list(Order.objects.filter(status__in=IN_FLIGHT_STATUSES)
                    .order_by("pk").values_list("pk", flat=True))
        for pk in owed:
            self.supplier.outcome = data.draw(st.sampled_from(OUTCOMES), label=f"outcome {pk}")
            self._fulfil(pk)

    @rule(data=st.data(), final=st.sampled_from(["completed", "completed", "failed", "reversed"]))
    def supplier_settles(self, data: st.DataObject, final: str) -> None:
        processing = [b for b in self.supplier.books.values()
                      if b.status == SupplierOrderStatus.PROCESSING]
        assume(processing)
        booked = data.draw(st.sampled_from(processing))
        booked.status = SupplierOrderStatus(final)

    @rule(outcome=st.sampled_from(["ok", "ok", "5xx", "insufficient_balance"]))
    def sweep(self, outcome: str) -> None:
        self.supplier.outcome = outcome
        services.orders_sweep()

    @rule(pk=orders, refund_ok=st.booleans())
    def refund_task(self, pk: int, refund_ok: bool) -> None:
        self.world.refund_ok = refund_ok
        services.order_refund(order_id=pk, actor="worker")

    # --- the operator ---------------------------------------------------------------------

    @rule(pk=orders, name=st.sampled_from(["retry", "resolve", "refund", "mark_refunded",
                                           "cancel"]),
          outcome=st.sampled_from(["ok", "5xx", "committed_then_timeout"]))
    def operator_acts(self, pk: int, name: str, outcome: str) -> None:
        """An operator's console action, offered only where the console offers it."""
        order = self._order(pk)
        action = console.ACTIONS[name]
        if not action.applies_to(order):
            return
        self.supplier.outcome = outcome
        given = console.ActionInput(actor="operator:test", reason="checked",
                                    expected_status=order.status, reference="BANK-1")
        try:
            action.perform(order, given)
        except OPERATOR_ERRORS:
            return
        if name != "resolve":
            self.operator_touched.add(pk)
        if name == "retry":
            self.operator_resumed.add(pk)

    # --- invariants -----------------------------------------------------------------------

    @invariant()
    def orders_hold_their_invariants(self) -> None:
        if not self.placed:
            return
        events: dict[int, list[OrderEvent]] = {}
        for event in OrderEvent.objects.order_by("id"):
            events.setdefault(event.order_id, []).append(event)
        attempts = Counter(SupplierAttempt.objects.values_list("idempotency_key", flat=True))
        for order in Order.objects.all():
            self._check_order(order, events.get(order.pk, []), attempts[order.idempotency_key])
        supplier = self.supplier
        assert not supplier.overlaps, f"top-up sent again while a request was in flight: {supplier.overlaps}"
        assert all(n == 1 for n in supplier.created.values()), supplier.created

    def _check_order(self, order: Order, events: list[OrderEvent], attempts: int) -> None:
        moves = [e for e in events if e.from_status != e.to_status]
        assert moves and (moves[0].from_status, moves[0].to_status) == ("", S.AWAITING_PAYMENT), moves
        statuses: list[str] = [S.AWAITING_PAYMENT]
        for move in moves[1:]:
            # Exactly one event per change: each starts where the last one ended.
            assert move.from_status == statuses[-1], (order, [str(e) for e in moves])
            assert can_transition(move.from_status, move.to_status), str(move)
            statuses.append(move.to_status)
        assert statuses[-1] == order.status, (order, statuses)
        REACHED.update(statuses)
        assert statuses.count(S.DELIVERED) <= 1
        if S.DELIVERED in statuses:
            assert statuses[-1] == S.DELIVERED, statuses
        if S.PAID in statuses:
            after_paid = statuses[statuses.index(S.PAID):]
            assert not UNPAID & set(after_paid), statuses
        assert (order.paid_at is not None) == (S.PAID in statuses), (order, statuses, order.paid_at)

        placed = self.placed[order.pk]
        assert (order.price, order.cost, order.payment_fee, order.stars, order.currency,
                order.idempotency_key) == (placed.price, placed.cost, placed.payment_fee,
                                           placed.stars, placed.currency, placed.idempotency_key)
        expected_margin = (Decimal("0.00") if order.paid_at is None or order.status in NO_MARGIN_STATUSES
                           else order.price - order.cost - order.payment_fee)
        assert order.margin == expected_margin

        if order.status in IN_FLIGHT_STATUSES:
            assert order.next_action_at is not None, f"{order} {order.status} with no next action"

        supplier, key = self.supplier, order.idempotency_key
        assert attempts == supplier.place_calls[key], (
            f"{order}: {supplier.place_calls[key]} top-up calls, {attempts} SupplierAttempt rows")
        if supplier.replays[key]:
            assert order.pk in self.operator_resumed, (
                f"{order}: top-up sent again for a key the supplier holds, unasked")
        if order.status == S.DELIVERED:
            assert order.delivered_at is not None and order.next_action_at is None
            assert supplier.delivered_stars(key) == order.stars, (
                f"{order} delivered but the supplier delivered {supplier.delivered_stars(key)} Stars")
            assert order.supplier_order_id == supplier.books[key].order_id
        if order.status in (S.FAILED, S.REFUND_PENDING, S.REFUNDED) and order.pk not in self.operator_touched:
            assert supplier.delivered_stars(key) == 0, f"{order} {order.status} but its Stars were delivered"
        if order.status == S.REFUNDED:
            seen = self.refunded_payments.setdefault(
                order.pk, set(order.payments.values_list("pk", flat=True)))
            left = Payment.objects.filter(pk__in=seen, status=Payment.Status.CONFIRMED)
            assert not left.exists(), f"{order} refunded with payments still confirmed"


@pytest.fixture
def world(catalog, settings, monkeypatch) -> World:
    """The injected supplier, clock and refund outcome every example of the machine uses."""
    settings.SUPPLIER_TIMEOUT = 10.0
    settings.FULFILMENT_UNKNOWN_GRACE_SECONDS = 15.0
    settings.FULFILMENT_LEASE_SECONDS = 5.0
    clock = Clock()
    world = World(catalog=catalog, clock=clock)
    monkeypatch.setattr(timezone, "now", clock.now)

    def supplier_client(code: str = "") -> ScriptedSupplier:
        assert world.supplier is not None
        return world.supplier

    # Wherever a module of the orders app took the factory by name, it gets the scripted one.
    import sys

    from orders import suppliers

    original = suppliers.get_supplier_client
    for name, module in list(sys.modules.items()):
        if (name == "orders" or name.startswith("orders.")) and \
                getattr(module, "get_supplier_client", None) is original:
            monkeypatch.setattr(module, "get_supplier_client", supplier_client)

    def refund(provider: SandboxPaymentProvider, payment: Payment) -> RefundResult:
        if world.refund_ok:
            return RefundResult(refunded=True, provider_reference=f"sbx-refund-{payment.pk}")
        return RefundResult(refunded=False, message="provider refused the refund")

    monkeypatch.setattr(SandboxPaymentProvider, "refund", refund)
    # Jobs are run by the machine's rules; nothing goes to a broker.
    monkeypatch.setattr("orders.queue.async_task", lambda *args, **kwargs: None)
    return world


def test_order_state_machine(world: World) -> None:
    machine = type("Machine", (OrderMachine,), {"world": world})
    REACHED.clear()
    run_state_machine_as_test(machine, settings=PROFILE)
    print("statuses reached (order-steps):", dict(REACHED.most_common()))
    # The run went where the faults lead, not only down the happy path.
    assert set(REACHED) >= {S.DELIVERED, S.REVIEW, S.REFUNDED, S.CANCELLED}, REACHED


def test_the_scripted_supplier_is_the_one_every_service_gets(world: World) -> None:
    """The injection reaches the services: a pass with an invalid recipient fails the order."""
    world.supplier = ScriptedSupplier(clock=world.clock, outcome="invalid_recipient")
    product = world.catalog
    order = services.order_create(
        channel="web", product=product, recipient_input=USERNAME,
        recipient=RecipientInfo(user_id=USER_ID, username=USERNAME), payment_method="sandbox",
        package_id=product.packages.get(quantity=500).pk)
    services.order_mark_paid(order=order, provider="sandbox", provider_reference="x",
                             amount=order.price, currency=order.currency, actor="payment:test")
    services.order_fulfil(order_id=order.pk, budget_seconds=0)
    assert Order.objects.get(pk=order.pk).status == S.REFUND_PENDING
    assert not world.supplier.place_calls


def test_the_machine_finds_a_blind_resend() -> None:
    """The checks bite: a top-up sent again while the first may be in flight is caught."""
    clock = Clock()
    supplier = ScriptedSupplier(clock=clock, outcome="in_flight")
    with pytest.raises(OutcomeUnknown):
        supplier.place_topup(user_id=USER_ID, stars=50, idempotency_key="k")
    supplier.outcome = "ok"
    supplier.place_topup(user_id=USER_ID, stars=50, idempotency_key="k")
    assert supplier.overlaps == ["k"]
