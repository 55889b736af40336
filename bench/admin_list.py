"""Issue #11: the admin order list (the operator's console) at a small and a large order table.

    .venv/bin/python bench/admin_list.py [--database sqlite|postgres] [--quick]

A shop of its own (bench/common.py) with a year-like history of realistic orders (events,
invoices, payments and supplier attempts as the console shows them), first SMALL orders, then
grown to LARGE by older orders (default 1,000 → 100,000; --quick 1,000 → 10,000). At each size
an Operator (staff in the Operators group: no authenticator needed, as superusers need in
production) loads /admin/orders/order/ with wrk, interleaved with the bare reference view of
bench/reference_admin.py in the same gunicorn (2 workers, production mode, the session cookie
as a header).

Figures: p50/p99 ms of the list and of the reference at each size, the list's growth
(p50 large ÷ p50 small; target ≤ 1.2) and, as "ratio" for CI, its inverse per round
(p50 small ÷ p50 large: 1.0 is flat, a drop means the list grows with the table again).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

# One order every MINUTES_APART minutes, newest first: 100,000 orders reach back ~7 months.
MINUTES_APART = 3
# Rows per bulk insert, and orders built in memory at a time.
BATCH = 2000
CHUNK = 10_000
LIST_PATH = "/admin/orders/order/"
REFERENCE_PATH = "/_bench/admin-orders/"


# --- run inside the shop (manage.py shell) ----------------------------------------------
def orders_seed(*, total: int, now_epoch: float) -> None:
    """Grow the order table to `total` orders, each older than the last, with their rows."""
    import uuid
    from datetime import UTC, datetime, timedelta
    from decimal import Decimal

    from orders.models import (
        Order,
        OrderEvent,
        Payment,
        PaymentEvent,
        PaymentInvoice,
        SupplierAttempt,
    )
    from orders.models import OrderStatus as S
    from shop.models import Product

    # Times are history here: auto_now_add would stamp every row with the time of the insert.
    for model, field in ((Order, "created_at"), (Order, "status_changed_at"),
                         (OrderEvent, "created_at"), (PaymentInvoice, "created_at"),
                         (PaymentEvent, "received_at"), (Payment, "created_at"),
                         (SupplierAttempt, "started_at")):
        setattr(model._meta.get_field(field), "auto_now_add", False)  # noqa: B010
    setattr(Order._meta.get_field("updated_at"), "auto_now", False)  # noqa: B010

    product = Product.objects.order_by("pk").first()
    assert product is not None, "no catalog"
    now = datetime.fromtimestamp(now_epoch, tz=UTC)
    statuses = [S.DELIVERED] * 14 + [S.EXPIRED, S.EXPIRED, S.CANCELLED, S.REFUNDED, S.ON_HOLD,
                                     S.REVIEW]
    unpaid = {S.EXPIRED, S.CANCELLED, S.AWAITING_PAYMENT}
    channels = ("web", "bot", "web", "api")
    methods = ("sandbox", "stripe", "ton", "cryptopay")
    start = Order.objects.count()
    for first in range(start, total, CHUNK):
        orders = []
        for number in range(first, min(first + CHUNK, total)):
            created = now - timedelta(minutes=MINUTES_APART * number)
            status = statuses[number % len(statuses)]
            channel = channels[number % len(channels)]
            paid_at = None if status in unpaid else created + timedelta(minutes=2)
            orders.append(Order(
                reference=f"ORD-{number + 1:07d}", channel=channel, status=status,
                product=product, product_name=product.name, package_name="500 Stars",
                platform="telegram", stars=500, recipient_input=f"@user_{number % 5000}",
                recipient_user_id=str(100_000_000 + number % 5000),
                recipient_username=f"@user_{number % 5000}", price=Decimal("8.50"),
                currency="USD", supplier_code="sandbox", cost=Decimal("8.25"),
                cost_currency="USD",
                payment_method="balance" if channel == "api" else methods[number % len(methods)],
                buyer_telegram_id=300_000_000 + number % 3000 if channel == "bot" else None,
                buyer_session_hash=uuid.uuid4().hex if channel == "web" else "",
                idempotency_key=uuid.uuid4().hex,
                supplier_order_id=f"SUP-{number}" if status == S.DELIVERED else "",
                created_at=created, updated_at=created + timedelta(minutes=3),
                status_changed_at=created + timedelta(minutes=3),
                expires_at=created + timedelta(minutes=30), paid_at=paid_at,
                delivered_at=created + timedelta(minutes=3) if status == S.DELIVERED else None))
        orders = Order.objects.bulk_create(orders, batch_size=BATCH)
        if orders[0].pk is None:
            orders = list(Order.objects.filter(reference__in=[o.reference for o in orders]))
        events, invoices = [], []
        for order in orders:
            assert order.created_at is not None
            events.append(OrderEvent(order=order, from_status="", to_status=S.AWAITING_PAYMENT,
                                     actor="web", reason="placed", created_at=order.created_at))
            if order.paid_at is not None:
                events.append(OrderEvent(order=order, from_status=S.AWAITING_PAYMENT,
                                         to_status=S.PAID, actor="payment",
                                         created_at=order.paid_at))
                events.append(OrderEvent(order=order, from_status=S.PAID,
                                         to_status=S.SUBMITTING, actor="worker",
                                         created_at=order.paid_at))
            events.append(OrderEvent(order=order, from_status=S.SUBMITTING, to_status=order.status,
                                     actor="worker", created_at=order.status_changed_at))
            invoices.append(PaymentInvoice(
                order=order, provider=order.payment_method, account="bench",
                status="open" if order.paid_at is None else "paid",
                provider_invoice_id=f"inv-{order.reference}", amount_minor=850, currency="USD",
                exponent=2, expires_at=order.expires_at, created_at=order.created_at))
        OrderEvent.objects.bulk_create(events, batch_size=BATCH)
        invoices = PaymentInvoice.objects.bulk_create(invoices, batch_size=BATCH)
        paid = [(order, invoice, order.paid_at)
                for order, invoice in zip(orders, invoices, strict=True)
                if order.paid_at is not None]
        inbox = PaymentEvent.objects.bulk_create([
            PaymentEvent(provider=order.payment_method, event_key=f"evt-{order.reference}",
                         kind="paid", order=order, invoice=invoice, amount_minor=850,
                         currency="USD", body='{"paid": true}', outcome="applied",
                         received_at=paid_at) for order, invoice, paid_at in paid],
            batch_size=BATCH)
        Payment.objects.bulk_create([
            Payment(order=order, invoice=invoice, event=event, provider=order.payment_method,
                    provider_reference=f"pay-{order.reference}", amount=Decimal("8.50"),
                    currency="USD", created_at=paid_at)
            for (order, invoice, paid_at), event in zip(paid, inbox, strict=True)],
            batch_size=BATCH)
        SupplierAttempt.objects.bulk_create([
            SupplierAttempt(order=order, number=1, supplier_code="sandbox",
                            idempotency_key=order.idempotency_key, request={"stars": 500},
                            response_status=200, response_body='{"ok": true}',
                            supplier_order_id=order.supplier_order_id,
                            outcome="accepted" if order.supplier_order_id else "rejected",
                            started_at=paid_at, finished_at=paid_at)
            for order, _invoice, paid_at in paid], batch_size=BATCH)
    from django.db import connection

    with connection.cursor() as cursor:  # what autovacuum would have done by the time anyone looks
        cursor.execute("ANALYZE")


def operator_session() -> str:
    """A logged-in session of an Operator (staff in the Operators group): its cookie value."""
    from importlib import import_module

    from django.conf import settings
    from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
    from django.contrib.auth.models import Group, User

    user = User.objects.create_user(username="bench-operator", is_staff=True)
    user.groups.add(Group.objects.get(name="Operators"))
    store = import_module(settings.SESSION_ENGINE).SessionStore()
    store[SESSION_KEY] = str(user.pk)
    store[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
    store[HASH_SESSION_KEY] = user.get_session_auth_hash()
    store.create()
    return f"{settings.SESSION_COOKIE_NAME}={store.session_key}"


# --- the benchmark ---------------------------------------------------------------------
def _median(runs: list[dict[str, float]], key: str) -> float:
    return round(statistics.median(run[key] for run in runs), 2)


def _size_summary(runs: dict[str, list[dict[str, float]]]) -> dict[str, Any]:
    admin, reference = runs["admin"], runs["reference"]
    return {
        "admin_p50_ms": _median(admin, "p50_ms"), "admin_p99_ms": _median(admin, "p99_ms"),
        "admin_rps": _median(admin, "rps"),
        "reference_p50_ms": _median(reference, "p50_ms"),
        "reference_p99_ms": _median(reference, "p99_ms"),
        "reference_rps": _median(reference, "rps"),
        "admin_over_reference_p50": round(_median(admin, "p50_ms")
                                          / _median(reference, "p50_ms"), 2),
        "errors": sum(run["non_2xx"] + run["socket_errors"] for run in admin + reference),
        "runs": runs,
    }


def main() -> int:
    from bench.common import PROXY_HEADERS, Shop, interleaved, ratio_summary, result_write, wrk

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database", choices=["sqlite", "postgres"], default="postgres")
    parser.add_argument("--quick", action="store_true", help="1k → 10k orders, short runs")
    parser.add_argument("--small", type=int, default=1000)
    parser.add_argument("--large", type=int, default=None)
    parser.add_argument("--seconds", type=float, default=None)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=2)
    args = parser.parse_args()
    large = args.large or (10_000 if args.quick else 100_000)
    seconds = args.seconds or (3 if args.quick else 10)
    now = time.time()

    with Shop(database=args.database,
              postgres_url="postgres://postgres@127.0.0.1:5432/reseller_admin_bench",
              redis_url="redis://127.0.0.1:6379/11") as shop:
        shop.setup()
        cookie = shop.shell("from bench.admin_list import operator_session; "
                            "print(operator_session())").strip().splitlines()[-1]
        base = shop.gunicorn(workers=2)
        headers = {**PROXY_HEADERS, "Cookie": cookie}

        def page(path: str) -> dict[str, float]:
            return wrk(base + path, seconds=seconds, connections=args.connections,
                       headers=headers)

        def at_size(total: int) -> dict[str, Any]:
            with_rows = time.monotonic()
            shop.shell(f"from bench.admin_list import orders_seed; "
                       f"orders_seed(total={total}, now_epoch={now})", timeout=3600)
            seeded_s = round(time.monotonic() - with_rows, 1)
            _check(base, headers)
            wrk(base + LIST_PATH, seconds=1, connections=args.connections, headers=headers)
            # interleaved() is typed for one number per run; here each run is wrk's whole record.
            measure: dict[str, Any] = {"admin": lambda: page(LIST_PATH),
                                       "reference": lambda: page(REFERENCE_PATH)}
            summary = _size_summary(interleaved(measure, args.rounds))  # type: ignore[arg-type]
            print(f"{total} orders (seeded in {seeded_s} s): {summary['admin_p50_ms']} ms p50 "
                  f"list, {summary['reference_p50_ms']} ms reference", file=sys.stderr)
            return {"orders": total, "seed_seconds": seeded_s, **summary}

        small = at_size(args.small)
        grown = at_size(large)

    # Per round: p50 small ÷ p50 large (1.0 = flat; CI fails on a drop), as speeds so that
    # ratio_summary's shop ÷ reference reads "large relative to small".
    def speeds(size: dict[str, Any]) -> list[float]:
        return [1000 / run["p50_ms"] for run in size["runs"]["admin"]]

    flatness = ratio_summary(speeds(grown), speeds(small))
    growth = round(grown["admin_p50_ms"] / small["admin_p50_ms"], 2)
    result_write("admin_list" + ("_quick" if args.quick else "") + f"_{args.database}", {
        "database": args.database, "connections": args.connections, "seconds": seconds,
        "ratio": flatness["ratio"], "ratio_min": flatness["ratio_min"],
        "ratio_max": flatness["ratio_max"], "growth_p50": growth,
        "target": "growth ≤ 1.2 (ratio ≥ 0.83) and < 100 ms p50 at 100k on PostgreSQL",
        "small": small, "large": grown,
    })
    return 0


def _check(base: str, headers: dict[str, str]) -> None:
    """The list answers the Operator with the page itself, not a redirect to the login."""
    import requests

    for path in (LIST_PATH, REFERENCE_PATH):
        response = requests.get(base + path, headers=headers, allow_redirects=False, timeout=60)
        if response.status_code != 200 or "ORD-0000001" not in response.text:
            raise SystemExit(f"{path}: {response.status_code}, not the order list")


if __name__ == "__main__":
    sys.exit(main())
