"""Chaos: hundreds of orders through real processes, with faults injected at random (issue #11).

The shop's django-q2 cluster(s) and the fake supplier (``python -m fakes.supplier``) run as
processes; this script places and pays orders meanwhile and, at random moments, SIGKILLs the
cluster (restarting it), makes the clock jump for orders in flight, and lets the supplier fail
at random (503 and 429 before anything is done; after a top-up committed: 500, a reset
connection, an answer later than our client timeout). Payments arrive duplicated, replayed,
double-clicked from two threads, out of order (the provider's "expired" before or after its
"paid") and late (after the order expired); confirm buttons are double-submitted. Then the
storm stops, the supplier heals, and every paid order must settle by a deadline. Checked at the
end, per order:

- Stars delivered at the supplier (its completed order for the order's key) equal the Stars
  of a delivered order, and are zero for every other order;
- the supplier holds at most one order per idempotency key and never saw the key again once
  it held its order (a replay: a supplier whose dedupe fails would pay it twice);
- every paid order ends delivered, refunded or in review within the deadline;
- every status change is a declared move with its one event; a refunded order's payments are
  refunded; one order per double-submitted confirm.

Clock jumps are done on the rows, not on the processes' clocks: a jump forward for an order in
flight is its lease and next action falling due at once (lease_until, next_action_at moved
into the past), which is what a worker's wall clock jumping ahead, or a stalled worker, looks
like to every other worker; the live worker holding it keeps going, so two workers may act on
the order at once, which is the race exactly-once must survive. Expiry is jumped the same way
(expires_at in the past) for the late payments.

    .venv/bin/python bench/chaos.py [--orders 500] [--seed N] [--database sqlite|postgres]
                                    [--clusters 1] [--quick]

Writes var/bench/chaos.json (result_write "chaos"). orders/tests/test_chaos.py runs a short
version in the test suite with a fixed seed per run, printed for a replay.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

import requests

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

# Recipients of the fake supplier (fakes/supplier.py) and how often each is ordered for.
RECIPIENTS: list[tuple[str, int]] = [
    ("@sandbox_ok", 40), ("@sandbox_slow", 12), ("@sandbox_fail", 6), ("@sandbox_flaky", 8),
    ("@sandbox_ratelimit", 6), ("@sandbox_hold", 8), ("@sandbox_timeout", 4), ("generic", 16),
]
PAYMENTS: list[tuple[str, int]] = [
    ("once", 40), ("twice", 10), ("double_click", 15), ("webhook_replay", 10),
    ("expired_then_paid", 5), ("paid_then_expired", 5), ("late", 8), ("unpaid", 7),
]
FAULTS = {"p_5xx": 0.08, "p_429": 0.04, "p_500": 0.05, "p_reset": 0.05, "p_slow": 0.04}
# What the cluster runs with: the supplier's hang (3 s) is past the client timeout (2 s).
CLUSTER_SETTINGS = {
    "SUPPLIER_TIMEOUT": "2", "FULFILMENT_UNKNOWN_GRACE_SECONDS": "3",
    "FULFILMENT_POLL_FIRST_DELAY": "0.2", "Q_TIMEOUT": "30", "Q_RETRY": "40",
    "FULFILMENT_STALL_SECONDS": "5",
}
SUPPLIER_HANG_SECONDS = 3.0
SUPPLIER_SLOW_SECONDS = 1.0


class ClusterProcess(Protocol):
    def start(self) -> None: ...
    def kill(self) -> None: ...
    def stop(self, timeout: float = 15) -> None: ...
    def logs(self) -> str: ...


@dataclass
class ChaosConfig:
    orders: int = 500
    seed: int = 0
    storm_seconds: float = 120.0
    drain_seconds: float = 120.0
    # Seconds between two chaos events (a kill, a clock jump), drawn uniformly.
    chaos_every: tuple[float, float] = (2.0, 8.0)
    faults: dict[str, float] = field(default_factory=lambda: dict(FAULTS))


class SupplierProcess:
    """The fake supplier as its own process, and its /_sandbox/ control endpoints."""

    def __init__(self, *, db_path: Path, port: int, log_path: Path, api_key: str = "chaos-key",
                 env: dict[str, str] | None = None) -> None:
        self.url = f"http://127.0.0.1:{port}"
        self.api_key = api_key
        self._args = [sys.executable, "-m", "fakes.supplier", "--host", "127.0.0.1",
                      "--port", str(port), "--db", str(db_path), "--api-key", api_key,
                      "--hang-seconds", str(SUPPLIER_HANG_SECONDS),
                      "--slow-seconds", str(SUPPLIER_SLOW_SECONDS), "--balance", "10000000"]
        self._log_path = log_path
        self._env = env
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        log = open(self._log_path, "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(self._args, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                                     env=self._env, start_new_session=True)
        deadline = time.monotonic() + 30
        while True:
            try:
                requests.get(f"{self.url}/_sandbox/orders", timeout=2).raise_for_status()
                return
            except requests.RequestException as exc:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise RuntimeError(
                        f"the fake supplier did not start; see {self._log_path}") from exc
                time.sleep(0.1)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)

    def _control(self, path: str, payload: dict[str, Any] | None = None) -> Any:
        if payload is None:
            response = requests.get(f"{self.url}/_sandbox/{path}", timeout=30)
        else:
            response = requests.post(f"{self.url}/_sandbox/{path}", json=payload, timeout=30)
        response.raise_for_status()
        return response.json()

    def faults_random(self, probabilities: dict[str, float], seed: int) -> None:
        self._control("fault", {"mode": "random", **probabilities, "seed": seed})

    def faults_off(self) -> None:
        self._control("fault", {"mode": "none", "count": 0})

    def orders(self) -> list[dict[str, Any]]:
        return list(self._control("orders"))


def _weighted(rng: random.Random, choices: Sequence[tuple[str, int]]) -> str:
    names, weights = zip(*choices, strict=True)
    return rng.choices(names, weights=weights)[0]


def _stats(values: list[float]) -> dict[str, float]:
    if not values:
        return {"n": 0}
    ordered = sorted(values)
    return {"n": len(values), "median": round(statistics.median(ordered), 2),
            "p95": round(ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))], 2),
            "max": round(ordered[-1], 2)}


class Chaos:
    """One chaos run against processes already set up (database migrated, catalogue loaded)."""

    def __init__(self, *, config: ChaosConfig, clusters: list[ClusterProcess],
                 supplier: SupplierProcess, log: Callable[[str], None] = print) -> None:
        self.config = config
        self.clusters = clusters
        self.supplier = supplier
        self.log = log
        self.rng = random.Random(config.seed)  # noqa: S311  (a replayable run, not secrets)
        self.counts: Counter[str] = Counter()
        self.restarts: list[datetime] = []
        self.errors: list[str] = []
        self.order_ids: list[int] = []
        self.request_keys: dict[str, int] = {}
        self._stop = threading.Event()

    # --- placing and paying ------------------------------------------------------------
    def _with_retries(self, call: Callable[[], Any]) -> Any:
        """The buyer tries again when the supplier's random 503/429 hits a lookup."""
        from orders.exceptions import SupplierError

        for attempt in range(30):
            try:
                return call()
            except SupplierError:
                if attempt == 29:
                    raise
                time.sleep(0.1)
        return None

    def place(self, index: int) -> int:
        from orders import services
        from shop.models import Product

        rng = self.rng
        recipient = _weighted(rng, RECIPIENTS)
        if recipient == "generic":
            recipient = f"@user{rng.randrange(10**6, 10**7)}"
        product = Product.objects.get(slug="telegram-stars")
        packages = list(product.packages.values_list("pk", flat=True))
        package_id = rng.choice(packages) if rng.random() < 0.8 else None
        quantity = None if package_id else rng.randrange(50, 10_001)
        _, info = self._with_retries(lambda: services.recipient_validate(raw=recipient))
        request_key = f"chaos-{self.config.seed}-{index}"
        double = rng.random() < 0.2

        def submit() -> int:
            order = services.order_create(
                channel="web", product=product, recipient_input=recipient, recipient=info,
                payment_method="sandbox", package_id=package_id, quantity=quantity,
                request_key=request_key)
            return order.pk

        if double:
            self.counts["confirm_double_submit"] += 1
            placed = self._twice_at_once(submit)
            if len(set(placed)) != 1:
                self.errors.append(f"double submit {request_key} placed orders {placed}")
            order_id = placed[0]
        else:
            order_id = submit()
        self.request_keys[request_key] = order_id
        return order_id

    def _twice_at_once(self, call: Callable[[], Any]) -> list[Any]:
        """Run `call` from two threads released together: a double click."""
        from django.db import connection

        barrier = threading.Barrier(2)
        results: list[Any] = []
        failures: list[BaseException] = []

        def run() -> None:
            try:
                barrier.wait(timeout=10)
                results.append(call())
            except BaseException as exc:  # reported below, with the run's errors
                failures.append(exc)
            finally:
                connection.close()

        threads = [threading.Thread(target=run) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        for exc in failures:
            self.errors.append(f"double click raised {exc!r}")
        return results or [None]

    def pay(self, order_id: int) -> None:
        from orders import services
        from orders.exceptions import OrderStateChanged
        from orders.models import Order, PaymentInvoice
        from orders.payments import payment_provider_get
        from orders.payments.base import NoticeKind, PaymentNotice
        from orders.payments.services import invoice_open, payment_notice_accept

        kind = _weighted(self.rng, PAYMENTS)
        self.counts[f"payment_{kind}"] += 1
        if kind == "unpaid":
            return

        def press() -> None:
            try:
                services.order_pay_sandbox(order=Order.objects.get(pk=order_id))
            except OrderStateChanged:
                pass  # the other click (or an expiry) moved it first

        if kind in ("once", "twice"):
            press()
            if kind == "twice":
                press()
            return
        if kind == "double_click":
            self._twice_at_once(press)
            return
        order = Order.objects.get(pk=order_id)
        invoice = invoice_open(order=order)
        provider = payment_provider_get("sandbox")
        paid = provider.simulate_payment(invoice)  # type: ignore[attr-defined]
        expired = PaymentNotice(provider="sandbox", event_key=f"expired-{invoice.provider_invoice_id}",
                                kind=NoticeKind.EXPIRED, account=invoice.account,
                                invoice_id=invoice.provider_invoice_id,
                                order_reference=order.reference or "")
        if kind == "webhook_replay":
            for _ in range(3):
                payment_notice_accept(notice=paid)
        elif kind == "expired_then_paid":
            payment_notice_accept(notice=expired)
            payment_notice_accept(notice=paid)
        elif kind == "paid_then_expired":
            payment_notice_accept(notice=paid)
            payment_notice_accept(notice=expired)
        elif kind == "late":
            # The clock jumps past the payment window; the scheduler expires it; money comes.
            from django.utils import timezone

            past = timezone.now() - timedelta(seconds=1)
            Order.objects.filter(pk=order_id).update(expires_at=past)
            PaymentInvoice.objects.filter(pk=invoice.pk).update(expires_at=past)
            services.orders_expire()
            payment_notice_accept(notice=paid)

    # --- chaos -------------------------------------------------------------------------
    def _chaos_loop(self) -> None:
        from django.db import connection

        rng = random.Random(self.config.seed + 1)  # noqa: S311
        low, high = self.config.chaos_every
        try:
            while not self._stop.wait(rng.uniform(low, high)):
                roll = rng.random()
                # The first event is always a kill: even a short run must survive one.
                if roll < 0.6 or not self.counts["cluster_sigkill"]:
                    self._kill_and_restart(rng)
                elif roll < 0.9:
                    self._clock_jump(rng)
        except BaseException as exc:
            self.errors.append(f"chaos loop crashed: {exc!r}")
        finally:
            connection.close()

    def _kill_and_restart(self, rng: random.Random) -> None:
        from django.utils import timezone

        cluster = rng.choice(self.clusters)
        cluster.kill()
        self.counts["cluster_sigkill"] += 1
        time.sleep(rng.uniform(0, 1.5))
        cluster.start()
        self.restarts.append(timezone.now())

    def _clock_jump(self, rng: random.Random) -> None:
        from django.utils import timezone

        from orders.models import Order
        from orders.transitions import IN_FLIGHT_STATUSES

        in_flight = list(Order.objects.filter(status__in=IN_FLIGHT_STATUSES)
                         .values_list("pk", flat=True))
        if not in_flight:
            return
        jumped = rng.sample(in_flight, k=max(1, len(in_flight) // 3))
        past = timezone.now() - timedelta(minutes=1)
        Order.objects.filter(pk__in=jumped, status__in=IN_FLIGHT_STATUSES).update(
            lease_until=past, next_action_at=past)
        self.counts["clock_jump"] += 1
        self.counts["clock_jump_orders"] += len(jumped)

    # --- the run -----------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        from django.db import connection

        config = self.config
        self.supplier.faults_random(config.faults, config.seed)
        for cluster in self.clusters:
            cluster.start()
        chaos = threading.Thread(target=self._chaos_loop, name="chaos", daemon=True)
        started = time.monotonic()
        chaos.start()
        pause = config.storm_seconds / max(config.orders, 1)
        for index in range(config.orders):
            try:
                order_id = self.place(index)
                self.order_ids.append(order_id)
                self.pay(order_id)
            except Exception as exc:
                self.errors.append(f"placing/paying order #{index} raised {exc!r}")
            time.sleep(max(0.0, started + (index + 1) * pause - time.monotonic()))
        self._stop.set()
        chaos.join(timeout=60)
        storm = time.monotonic() - started
        # The storm is over: the supplier heals, every cluster is up (restarted if it died).
        self.supplier.faults_off()
        drain_started = time.monotonic()
        drained = self._drain(deadline=drain_started + config.drain_seconds)
        drain = time.monotonic() - drain_started
        connection.close()
        result = self._check(drained=drained)
        result.update({
            "seed": config.seed, "orders": config.orders, "clusters": len(self.clusters),
            "storm_s": round(storm, 1), "drain_s": round(drain, 1),
            "drain_deadline_s": config.drain_seconds, "faults": config.faults,
            "events": dict(sorted(self.counts.items())),
            "recovery_s": self._recovery_times(),
        })
        return result

    def _unsettled(self) -> list[int]:
        from orders.models import Order
        from orders.models import OrderStatus as S

        paid = Order.objects.filter(pk__in=self.order_ids, events__to_status=S.PAID).distinct()
        return list(paid.exclude(status__in=(S.DELIVERED, S.REFUNDED, S.REVIEW))
                    .values_list("pk", flat=True))

    def _drain(self, *, deadline: float) -> bool:
        while time.monotonic() < deadline:
            if not self._unsettled():
                return True
            time.sleep(0.5)
        return not self._unsettled()

    def _recovery_times(self) -> dict[str, float]:
        """Seconds from each restart to the first status move a worker made after it."""
        from django.db.models import F

        from orders.models import OrderEvent

        times: list[float] = []
        for restarted in self.restarts:
            first = (OrderEvent.objects.filter(created_at__gt=restarted, actor="worker")
                     .exclude(from_status=F("to_status")).order_by("created_at")
                     .values_list("created_at", flat=True).first())
            if first is not None:
                times.append((first - restarted).total_seconds())
        return _stats(times)

    def _check(self, *, drained: bool) -> dict[str, Any]:
        from orders.models import Order, OrderEvent, Payment
        from orders.models import OrderStatus as S
        from orders.transitions import can_transition

        violations = list(self.errors)
        supplier_orders = self.supplier.orders()
        by_key: dict[str, list[dict[str, Any]]] = {}
        for supplier_order in supplier_orders:
            by_key.setdefault(supplier_order["reference"], []).append(supplier_order)
        orders = {o.pk: o for o in Order.objects.filter(pk__in=self.order_ids)}
        events: dict[int, list[Any]] = {}
        for event in OrderEvent.objects.filter(order_id__in=list(orders)).order_by("id"):
            events.setdefault(event.order_id, []).append(event)
        settle: list[float] = []
        statuses: Counter[str] = Counter()
        for order in orders.values():
            statuses[order.status] += 1
            moves = [e for e in events.get(order.pk, []) if e.from_status != e.to_status]
            chain: list[str] = [S.AWAITING_PAYMENT]
            if not moves or (moves[0].from_status, moves[0].to_status) != ("", S.AWAITING_PAYMENT):
                violations.append(f"{order}: no creation event")
            for move in moves[1:]:
                if move.from_status != chain[-1] or not can_transition(move.from_status, move.to_status):
                    violations.append(f"{order}: event {move} does not follow {chain[-1]}")
                chain.append(move.to_status)
            if chain[-1] != order.status:
                violations.append(f"{order}: events end at {chain[-1]}, order is {order.status}")
            if chain.count(S.DELIVERED) > 1:
                violations.append(f"{order}: delivered {chain.count(S.DELIVERED)} times")
            booked = by_key.get(order.idempotency_key, [])
            if len(booked) > 1:
                violations.append(f"{order}: {len(booked)} supplier orders for one key")
            for entry in booked:
                if entry.get("replays"):
                    violations.append(f"{order}: top-up sent {entry['replays']} more time(s) after "
                                      f"the supplier held {entry['order_id']}")
            delivered = sum(e["stars"] for e in booked if e["status"] == "completed")
            owed = order.stars if order.status == S.DELIVERED else 0
            if delivered != owed:
                violations.append(f"{order} ({order.status}): the supplier delivered {delivered} "
                                  f"Stars, {owed} paid for and kept")
            paid = S.PAID in chain
            if paid and order.status not in (S.DELIVERED, S.REFUNDED, S.REVIEW):
                violations.append(f"{order}: paid, still {order.status} after the drain "
                                  f"({order.status_reason})")
            if order.status == S.REFUNDED and order.payments.filter(
                    status=Payment.Status.CONFIRMED, created_at__lte=order.status_changed_at).exists():
                violations.append(f"{order}: refunded with a payment still confirmed")
            if paid and order.paid_at and order.status in (S.DELIVERED, S.REFUNDED, S.REVIEW):
                settle.append((order.status_changed_at - order.paid_at).total_seconds())
        known = {o.idempotency_key for o in orders.values()}
        strangers = [b["order_id"] for b in supplier_orders if b["reference"] not in known]
        if strangers:
            violations.append(f"supplier orders under keys no order has: {strangers[:10]}")
        return {
            "ok": not violations and drained, "drained": drained,
            "violations": violations[:50], "violation_count": len(violations),
            "final_statuses": dict(sorted(statuses.items())),
            "supplier": {"orders": len(supplier_orders),
                         "topup_calls": sum(b.get("topup_calls", 0) for b in supplier_orders),
                         "replays": sum(b.get("replays", 0) for b in supplier_orders),
                         "completed": sum(1 for b in supplier_orders if b["status"] == "completed")},
            "paid_to_settled_s": _stats(settle),
        }


# --- the benchmark command ---------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    from bench.common import Shop, free_port, result_write

    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--orders", type=int, default=500)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--database", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--clusters", type=int, default=1)
    parser.add_argument("--storm-seconds", type=float, default=None,
                        help="how long orders keep coming (default: 0.4 s per order)")
    parser.add_argument("--drain-seconds", type=float, default=120.0)
    parser.add_argument("--quick", action="store_true", help="60 orders, in about a minute")
    args = parser.parse_args(argv)
    orders = 60 if args.quick else args.orders
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(2**31)
    print(f"chaos: seed {seed} (replay with --seed {seed})", flush=True)
    shop = Shop(database=args.database, production=True,
                postgres_url="postgres://postgres@127.0.0.1:5432/reseller_proof_chaos",
                redis_url="redis://127.0.0.1:6379/14")
    with shop:
        port = free_port()
        supplier_env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        supplier = SupplierProcess(db_path=shop.tmp / "supplier.sqlite3", port=port,
                                   log_path=shop.tmp / "supplier.log", env=supplier_env)
        shop.env.update({"SUPPLIER_CODE": "sandbox", "SUPPLIER_BASE_URL": supplier.url,
                         "SUPPLIER_API_KEY": supplier.api_key, "PAYMENT_SANDBOX_ENABLED": "true",
                         "LOG_LEVEL": "WARNING", **CLUSTER_SETTINGS})
        shop.setup()
        supplier.start()
        os.environ.update(shop.env)
        os.environ["DJANGO_SETTINGS_MODULE"] = "reseller.settings"
        import django

        django.setup()
        from orders.tests.clusters import Cluster

        clusters: list[ClusterProcess] = []
        for number in range(args.clusters):
            log_dir = shop.tmp / f"cluster-{number}"
            log_dir.mkdir()
            clusters.append(Cluster(dict(shop.env), log_dir))
        config = ChaosConfig(orders=orders, seed=seed, drain_seconds=args.drain_seconds,
                             storm_seconds=args.storm_seconds or 0.4 * orders)
        try:
            result = Chaos(config=config, clusters=clusters, supplier=supplier).run()
        finally:
            for cluster in clusters:
                cluster.stop()
            supplier.stop()
        result_write("chaos", {"database": args.database, "quick": args.quick,
                               "load_avg_at_end": os.getloadavg(), **result})
        if not result["ok"]:
            for cluster in clusters:
                print(cluster.logs()[-3000:], file=sys.stderr)
            print(json.dumps(result["violations"], indent=1), file=sys.stderr)
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
