"""Fulfilment of a flash sale: N orders paid at once, a supplier that answers in 1 s.

Usage:
    .venv/bin/python bench/flash_sale.py [--database sqlite|postgres] [--orders 300]
        [--latency 1.0] [--supplier-rate 50] [--workers 2] [--steady-rate 2 --steady-seconds 60]
        [--quick]

Sets up a shop of its own (bench/common.py Shop) and the sandbox supplier as a process
(fakes/supplier.py) answering every API call after --latency seconds and refusing more than
--supplier-rate calls per second with 429 + Retry-After (the shop is told the same rate,
SUPPLIER_RATE_PER_SECOND, minus a margin). Starts `manage.py qcluster` with --workers workers,
places --orders orders awaiting payment, then marks them all paid as fast as one process can
(each commit enqueues its fulfilment, as a payment webhook would) and waits until none is in
flight. Then a steady phase: orders paid one by one at --steady-rate per second for
--steady-seconds (below capacity).

Figures: paid → delivered p50/p95/max per phase; the flash sale's throughput (orders
delivered per second from the first payment to the last delivery) and its ratio to the
same-run reference, workers ÷ latency (what one supplier call at a time per worker allows);
the supplier's own counts (most calls in flight at once, most accepted in one second, 429s
sent). Exactly-once is checked at the end: one supplier order per order, under its key, for
its Stars, and every order delivered.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import Shop, free_port, result_write, tagged  # noqa: E402

PLACE = """
import json
from shop.models import Product
from orders.payments import payment_methods_for
from orders.services import order_create
from orders.suppliers.base import RecipientInfo
method = payment_methods_for("web")[0][0]
product = Product.objects.get(slug="telegram-stars")
package = product.packages.order_by("quantity").first()
ids = []
for number in range({count}):
    user_id = str({first_user} + number)
    order = order_create(channel="web", product=product, recipient_input=user_id,
                         recipient=RecipientInfo(user_id=user_id, username=f"user{{user_id}}"),
                         payment_method=method, package_id=package.pk)
    ids.append(order.pk)
print("IDS " + json.dumps(ids))
"""

PAY_AND_WAIT = """
import json, time
from django.utils import timezone
from orders.models import Order
from orders.services import order_mark_paid
from orders.transitions import IN_FLIGHT_STATUSES
ids = {ids}
interval = {interval}
started = time.monotonic()
for number, order in enumerate(Order.objects.filter(pk__in=ids).order_by("pk")):
    if interval:
        time.sleep(max(0.0, started + number * interval - time.monotonic()))
    order_mark_paid(order=order, provider="bench", provider_reference=f"bench-{{order.pk}}",
                    amount=order.price, currency=order.currency, actor="bench")
paid_in = time.monotonic() - started
deadline = time.monotonic() + {timeout}
while time.monotonic() < deadline:
    left = Order.objects.filter(pk__in=ids, status__in=["paid", *IN_FLIGHT_STATUSES]).count()
    if not left:
        break
    time.sleep(0.25)
rows = list(Order.objects.filter(pk__in=ids).values(
    "pk", "status", "paid_at", "delivered_at", "stars", "idempotency_key", "supplier_order_id"))
print("ROWS " + json.dumps({{"paid_in": paid_in, "rows": rows}}, default=str))
"""



def _percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(pct / 100 * len(ordered) + 0.5) - 1))
    return ordered[index]


def _phase(shop: Shop, ids: list[int], *, interval: float, timeout: float) -> dict:
    from datetime import datetime

    result = tagged(shop.shell(PAY_AND_WAIT.format(ids=ids, interval=interval, timeout=timeout),
                                timeout=timeout + 120), "ROWS")
    rows = result["rows"]
    latencies = []
    paid = [datetime.fromisoformat(r["paid_at"]) for r in rows if r["paid_at"]]
    delivered = [datetime.fromisoformat(r["delivered_at"]) for r in rows if r["delivered_at"]]
    for row in rows:
        if row["paid_at"] and row["delivered_at"]:
            latencies.append((datetime.fromisoformat(row["delivered_at"])
                              - datetime.fromisoformat(row["paid_at"])).total_seconds())
    statuses: dict[str, int] = {}
    for row in rows:
        statuses[row["status"]] = statuses.get(row["status"], 0) + 1
    span = (max(delivered) - min(paid)).total_seconds() if delivered and paid else float("nan")
    return {
        "orders": len(rows), "statuses": statuses, "paid_in_s": round(result["paid_in"], 2),
        "p50_s": round(_percentile(latencies, 50), 2), "p95_s": round(_percentile(latencies, 95), 2),
        "max_s": round(max(latencies), 2) if latencies else None,
        "throughput_per_s": round(len(delivered) / span, 2) if span == span and span > 0 else None,
        "rows": rows,
    }


def _exactly_once(supplier: str, rows: list[dict]) -> dict:
    books = requests.get(f"{supplier}/_sandbox/orders", timeout=30).json()
    orders = books["orders"] if isinstance(books, dict) else books
    by_reference: dict[str, list[dict]] = {}
    for order in orders:
        by_reference.setdefault(order["reference"], []).append(order)
    problems = []
    for row in rows:
        found = by_reference.get(row["idempotency_key"], [])
        if row["status"] == "delivered" and len(found) != 1:
            problems.append(f"order {row['pk']}: {len(found)} supplier orders")
        if found and any(int(o["stars"]) != row["stars"] for o in found):
            problems.append(f"order {row['pk']}: Stars differ")
    return {"supplier_orders": len(orders), "problems": problems, "problems_count": len(problems)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--orders", type=int, default=300)
    parser.add_argument("--latency", type=float, default=1.0)
    parser.add_argument("--supplier-rate", type=float, default=50.0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--steady-rate", type=float, default=2.0)
    parser.add_argument("--steady-seconds", type=float, default=60.0)
    parser.add_argument("--env", action="append", default=[],
                        help="NAME=VALUE for the shop's processes (e.g. FULFILMENT_CONCURRENCY=1)")
    parser.add_argument("--quick", action="store_true", help="100 orders, 20 s steady")
    args = parser.parse_args()
    if args.quick:
        args.orders, args.steady_seconds = 100, 20.0
    steady_count = int(args.steady_rate * args.steady_seconds)

    port = free_port()
    supplier = f"http://127.0.0.1:{port}"
    extra = dict(item.split("=", 1) for item in args.env)
    with Shop(database=args.database, extra_env={
        "SUPPLIER_BASE_URL": supplier, "SUPPLIER_API_KEY": "sandbox-key",
        # The shop is told a little less than the supplier enforces (clocks, windows).
        "SUPPLIER_RATE_PER_SECOND": str(args.supplier_rate * 0.9),
        "Q_WORKERS": str(args.workers), **extra}) as shop:
        print(f"set-up ({args.database}) in {shop.tmp} ...", flush=True)
        shop.setup()
        shop.supplier("--balance", "100000000", "--latency-seconds", str(args.latency),
                      "--rate-limit", str(args.supplier_rate), port=port)
        flash_ids = tagged(shop.shell(PLACE.format(count=args.orders, first_user=7_100_000_000)), "IDS")
        steady_ids = tagged(shop.shell(PLACE.format(count=steady_count, first_user=7_200_000_000)), "IDS")
        shop.qcluster()
        time.sleep(4)  # the cluster's workers up and idle
        requests.post(f"{supplier}/_sandbox/reset", timeout=10)  # traffic counts from here
        requests.post(f"{supplier}/_sandbox/balance", json={"balance": "100000000"}, timeout=10)
        print(f"flash sale: {args.orders} orders paid at once ...", flush=True)
        flash = _phase(shop, flash_ids, interval=0.0, timeout=600)
        flash_traffic = requests.get(f"{supplier}/_sandbox/traffic", timeout=10).json()
        print(f"steady: {steady_count} orders at {args.steady_rate}/s ...", flush=True)
        steady = _phase(shop, steady_ids, interval=1.0 / args.steady_rate, timeout=300)
        checks = _exactly_once(supplier, flash["rows"] + steady["rows"])
        traffic = requests.get(f"{supplier}/_sandbox/traffic", timeout=10).json()
    reference = args.workers / args.latency
    for phase in (flash, steady):
        phase.pop("rows")
    result_write("flash_sale", {
        "database": args.database, "latency_s": args.latency, "workers": args.workers,
        "supplier_rate": args.supplier_rate, "env": extra,
        "flash": flash, "steady": steady,
        "reference_per_s": reference,
        "ratio": round((flash["throughput_per_s"] or 0) / reference, 3),
        "supplier_traffic_flash": flash_traffic, "supplier_traffic_total": traffic,
        "exactly_once": checks,
    })
    failed = checks["problems"] or flash["statuses"].get("delivered") != args.orders \
        or steady["statuses"].get("delivered") != steady_count
    if failed:
        raise SystemExit("not every order was delivered exactly once")


if __name__ == "__main__":
    main()
