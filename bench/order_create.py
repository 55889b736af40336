"""orders.services.order_create from 8 threads at once, against a bare ORM insert from 8 threads.

Usage:
    .venv/bin/python bench/order_create.py [--database sqlite|postgres] [--quick]
        [--seconds 8 --threads 8 --rounds 3]
        [--postgres postgres://postgres@127.0.0.1:5432/reseller_bench --redis redis://127.0.0.1:6379/13]

Sets up a shop of its own (bench.common.Shop: a fresh SQLite file, or the PostgreSQL database
named, dropped and created again, with Redis), migrates it and loads the demo catalog, with
Stripe and Crypto Pay enabled next to the sandbox so the web channel prices three methods as
a real storefront does. Then, in one Python process with Django set up against that shop
(this script again, with --worker), it runs in turn, 3 interleaved rounds of --seconds each:

- shop: 8 threads each calling order_create as the storefront's confirm step does (web
  channel, the Large package, paid by card, a buyer session, a new request key per order, the
  buyer's language), one call after another;
- reference: 8 threads each inserting one row with ``Session.objects.create(...)``
  (django_session: three columns, a primary key and an index, nothing of the shop's).

Each thread opens its database connection before the clock starts and closes it after. The
figure is orders/s ÷ inserts/s per round (ratio_summary); it also records the queries one
order_create makes (CaptureQueriesContext) and every error, "database is locked" counted
apart, which must stay at zero. Nothing leaves the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

FIGURE = "order_create"
SETUP = """
from shop.demo import demo_catalog_load
demo_catalog_load()
"""


# --- worker: runs inside the shop's environment, with Django set up ---------------------------


def _worker(args: argparse.Namespace) -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "reseller.settings")
    import django

    django.setup()
    from django.contrib.sessions.models import Session
    from django.db import connection
    from django.test.utils import CaptureQueriesContext
    from django.utils import timezone

    from bench.common import interleaved
    from orders.services import order_create
    from orders.suppliers.base import RecipientInfo
    from shop.models import Package, Product

    product_id = Product.objects.get(slug="telegram-stars").pk
    package_id = Package.objects.get(product_id=product_id, quantity=1000).pk
    recipient = RecipientInfo(user_id="100000001", username="sandbox_ok")
    connection.close()
    errors: Counter[str] = Counter()

    def place(product: Product, session_key: str) -> None:
        order_create(channel="web", product=product, recipient_input="@sandbox_ok",
                     recipient=recipient, payment_method="stripe", package_id=package_id,
                     buyer_session_key=session_key, request_key=uuid.uuid4().hex,
                     buyer_language="en")

    def insert(_product: Product, _session_key: str) -> None:
        Session.objects.create(session_key=uuid.uuid4().hex, session_data="bench",
                               expire_date=timezone.now())

    def run(operation: Any) -> float:
        """Operations per second of `args.threads` threads calling `operation` for `args.seconds`."""
        ready = threading.Barrier(args.threads + 1)
        done = [0] * args.threads
        finished = [0.0] * args.threads
        clock: dict[str, float] = {}

        def thread(number: int) -> None:
            # The page a buyer confirms was read before: the product comes with the request.
            product = Product.objects.get(pk=product_id)
            session_key = uuid.uuid4().hex
            try:
                ready.wait()
                deadline = clock["deadline"]
                while time.monotonic() < deadline:
                    try:
                        operation(product, session_key)
                    except Exception as exc:  # counted and shown: the figure must have none
                        errors["database is locked" if "locked" in str(exc)
                               else f"{type(exc).__name__}: {exc}"[:200]] += 1
                    else:
                        done[number] += 1
                finished[number] = time.monotonic()
            finally:
                connection.close()

        threads = [threading.Thread(target=thread, args=(number,)) for number in range(args.threads)]
        for each in threads:
            each.start()
        started = time.monotonic()
        clock["deadline"] = started + args.seconds
        ready.wait()
        for each in threads:
            each.join()
        return sum(done) / (max(finished) - started)

    # One order first: warms imports and caches as a running shop has them, and counts queries.
    product = Product.objects.get(pk=product_id)
    place(product, "warm-up")
    with CaptureQueriesContext(connection) as captured:
        place(product, "counted")
    queries = [query["sql"] for query in captured.captured_queries]
    connection.close()
    runs = interleaved({"shop": lambda: run(place), "reference": lambda: run(insert)},
                       rounds=args.rounds)
    print("RESULT " + json.dumps({"runs": runs, "queries_per_order": len(queries),
                                  "queries": queries, "errors": dict(errors)}), flush=True)


# --- driver -----------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--database", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--quick", action="store_true", help="a short run for CI (about 30 s)")
    parser.add_argument("--seconds", type=float, default=None)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--postgres", default="postgres://postgres@127.0.0.1:5432/reseller_bench")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/13")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.seconds is None:
        args.seconds = 3.0 if args.quick else 8.0
    if args.worker:
        _worker(args)
        return

    from bench.common import Shop, ratio_summary, result_write

    with Shop(database=args.database, postgres_url=args.postgres, redis_url=args.redis,
              extra_env={"PAYMENT_STRIPE_ENABLED": "true", "PAYMENT_CRYPTOPAY_ENABLED": "true"},
              ) as shop:
        shop.manage("migrate", "--no-input")
        shop.manage("createcachetable")
        shop.shell(SETUP)
        done = subprocess.run(
            [sys.executable, str(Path(__file__).resolve()), "--worker",
             "--seconds", str(args.seconds), "--threads", str(args.threads),
             "--rounds", str(args.rounds)],
            cwd=ROOT, env=shop.env, capture_output=True, text=True, check=False,
            timeout=args.rounds * args.seconds * 2 + 300)
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if done.returncode != 0 or not lines:
        raise SystemExit(f"worker failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    outcome = json.loads(lines[-1][len("RESULT "):])
    runs = outcome["runs"]
    result_write(FIGURE + ("_postgres" if args.database == "postgres" else "_sqlite"), {
        "database": args.database, "threads": args.threads, "seconds": args.seconds,
        "rounds": args.rounds, "quick": args.quick,
        "unit": "order_create calls/s ÷ bare Session inserts/s, same process, same threads",
        **ratio_summary(runs["shop"], runs["reference"]),
        "queries_per_order": outcome["queries_per_order"], "queries": outcome["queries"],
        "errors": outcome["errors"],
        "load": os.getloadavg(),
    })


if __name__ == "__main__":
    main()
