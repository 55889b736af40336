"""Partner API top-ups accepted per second: 8 partners at once against a real gunicorn.

Usage:
    .venv/bin/python bench/partner_topups.py --database sqlite [--seconds 20 --partners 8]
    .venv/bin/python bench/partner_topups.py --database postgres \
        [--postgres postgres://postgres@127.0.0.1:5432/reseller_chain_bench \
         --redis redis://127.0.0.1:6379/12]

Sets up a shop of its own (a fresh SQLite file in a temporary directory, or the PostgreSQL
database named, dropped and created again, with Redis as broker and cache as in production):
migrate, the demo catalog, one partner per client with a test key and a sandbox balance big
enough for the run. Then starts gunicorn with gunicorn.conf.py (its worker count: 2 × cores + 1,
at most 9) and `manage.py qcluster`, and runs one thread per partner, each POSTing /topup
(Standard 500 Stars, a new Idempotency-Key each time) one after another for --seconds. The
per-key and per-address rate limits are raised out of the way: every client is 127.0.0.1.

Afterwards it checks, in the database: orders placed == top-ups answered 201, every partner's
sandbox balance == its start − the sum of its charges == its start − the costs the answers
showed, and no ledger row ever left a balance below zero. Nothing leaves the machine.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from decimal import Decimal
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import free_port, postgres_recreate, tagged  # noqa: E402

START_BALANCE = Decimal("1000000.00")

SETUP = """
import json
from decimal import Decimal
from django.core.management import call_command
call_command("migrate", interactive=False, verbosity=0)
call_command("createcachetable")
from shop.demo import demo_catalog_load
demo_catalog_load()
from partners.services import api_key_create, partner_balance_topup, partner_create
keys = []
for number in range({partners}):
    partner = partner_create(name=f"Bench partner {{number + 1}}", actor="bench")
    partner_balance_topup(partner=partner, amount=Decimal("{topup}"), actor="bench",
                          note="bench", sandbox=True)
    key, token = api_key_create(partner=partner, test=True, name="bench")
    keys.append(token)
print("KEYS " + json.dumps(keys))
"""

VERIFY = """
import json
from django.db.models import Min, Sum
from partners.models import LedgerEntry, Partner, PartnerOrder
report = {}
for partner in Partner.objects.filter(name__startswith="Bench partner"):
    ledger = LedgerEntry.objects.filter(partner=partner, sandbox=True)
    charges = ledger.filter(kind="charge")
    credits = ledger.exclude(kind="charge").exclude(kind="refund")
    report[partner.name] = {
        "orders": PartnerOrder.objects.filter(partner=partner, sandbox=True).count(),
        "charges": charges.count(),
        "charged": str(-(charges.aggregate(total=Sum("amount"))["total"] or 0)),
        "refunded": str(ledger.filter(kind="refund").aggregate(total=Sum("amount"))["total"] or 0),
        "start": str(credits.aggregate(total=Sum("amount"))["total"] or 0),
        "balance": str(partner.sandbox_balance),
        "lowest_balance_after": str(ledger.aggregate(low=Min("balance_after"))["low"]),
    }
print("REPORT " + json.dumps(report))
"""


def _manage(env: dict[str, str], *args: str) -> str:
    done = subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300, check=False)
    if done.returncode != 0:
        raise SystemExit(f"manage.py {args[0]} failed:\n{done.stdout}\n{done.stderr}")
    return done.stdout


class Client(threading.Thread):
    """One partner: POST /topup after POST /topup until the deadline."""

    def __init__(self, base: str, token: str, number: int, deadline: float,
                 start: threading.Event) -> None:
        super().__init__(daemon=True)
        self.base, self.token, self.number = base, token, number
        self.deadline, self.start_event = deadline, start
        self.latencies: list[float] = []
        self.outcomes: Counter[str] = Counter()
        self.costs: list[Decimal] = []

    def run(self) -> None:
        session = requests.Session()
        headers = {"Authorization": f"Bearer {self.token}"}
        self.start_event.wait()
        sent = 0
        while time.monotonic() < self.deadline:
            sent += 1
            body = {"platform": "telegram", "user_id": f"{7_000_000 + self.number * 100_000 + sent}",
                    "stars": 500}
            started = time.monotonic()
            try:
                answer = session.post(f"{self.base}/api/v1/topup", json=body, timeout=30,
                                      headers={**headers, "Idempotency-Key": uuid.uuid4().hex})
            except requests.RequestException as error:
                self.outcomes[type(error).__name__] += 1
                continue
            self.latencies.append(time.monotonic() - started)
            if answer.status_code == 201:
                self.outcomes["accepted"] += 1
                self.costs.append(Decimal(answer.json()["cost"]))
                continue
            try:
                code = answer.json()["error"]["code"]
            except (ValueError, KeyError, TypeError):
                code = "unreadable"
            self.outcomes[f"{answer.status_code} {code}"] += 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database", choices=["sqlite", "postgres"], required=True)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--partners", type=int, default=8)
    parser.add_argument("--postgres", default="postgres://postgres@127.0.0.1:5432/reseller_chain_bench")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/12",
                        help="broker and cache with --database postgres")
    parser.add_argument("--no-cluster", action="store_true",
                        help="leave placed orders paid (no qcluster competing for the database)")
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="partner-topups-"))
    env = {**os.environ, "DJANGO_ENV": "demo", "TELEGRAM_BOT_TOKEN": "", "SENTRY_DSN": "",
           "Q_CLUSTER_NAME_PREFIX": "bench-topups", "PYTHONUNBUFFERED": "1",
           "LOG_LEVEL": "WARNING",
           # Rate limits out of the way: the bench measures the top-up, not the limiter.
           "PARTNER_API_RATE": "1000000/minute", "PARTNER_API_RATE_PER_IP": "1000000/minute",
           "SUPPLIER_BASE_URL": f"http://127.0.0.1:{free_port()}"}
    if args.database == "sqlite":
        env.update({"DATABASE_URL": "", "SQLITE_PATH": str(tmp / "db.sqlite3"), "REDIS_URL": ""})
    else:
        postgres_recreate(args.postgres)
        env.update({"DATABASE_URL": args.postgres, "REDIS_URL": args.redis})
        import redis

        redis.Redis.from_url(args.redis).flushdb()
    env.pop("WEB_CONCURRENCY", None)  # gunicorn.conf.py's own default

    print(f"set-up ({args.database}) in {tmp} ...", flush=True)
    tokens = tagged(_manage(env, "shell", "-c", SETUP.format(
        partners=args.partners, topup=START_BALANCE)), "KEYS")
    assert isinstance(tokens, list)

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log = open(tmp / "gunicorn.log", "wb")  # noqa: SIM115
    server = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "--config", "gunicorn.conf.py",
         "--bind", f"127.0.0.1:{port}", "--graceful-timeout", "3"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    cluster = None
    if not args.no_cluster:
        cluster = subprocess.Popen([sys.executable, "manage.py", "qcluster"], cwd=ROOT, env=env,
                                   stdout=open(tmp / "qcluster.log", "wb"),  # noqa: SIM115
                                   stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if requests.get(f"{base}/healthz", timeout=5).status_code == 200:
                    break
            except requests.RequestException:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("gunicorn did not come up; see " + str(tmp / "gunicorn.log"))
            time.sleep(0.2)
        # Warm every worker up (imports, first connection) before the clock starts.
        warm = [threading.Thread(target=requests.get, args=(f"{base}/api/v1/balance",),
                                 kwargs={"headers": {"Authorization": f"Bearer {token}"},
                                         "timeout": 30})
                for token in tokens * 4]
        for thread in warm:
            thread.start()
        for thread in warm:
            thread.join()

        go = threading.Event()
        started = time.monotonic()
        stop_at = started + args.seconds
        clients = [Client(base, token, number, stop_at, go) for number, token in enumerate(tokens)]
        for client in clients:
            client.start()
        go.set()
        for client in clients:
            client.join()
        elapsed = time.monotonic() - started
    finally:
        if cluster is not None:
            cluster.send_signal(signal.SIGTERM)
            try:
                cluster.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
        for process in (cluster, server):
            if process is not None:
                try:
                    os.killpg(process.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass

    outcomes: Counter[str] = Counter()
    latencies: list[float] = []
    for client in clients:
        outcomes.update(client.outcomes)
        latencies.extend(client.latencies)
    accepted = outcomes["accepted"]
    latencies.sort()
    workers = min(2 * os.cpu_count() + 1, 9) if os.cpu_count() else "?"  # type: ignore[operator]
    print(f"database: {args.database}; gunicorn workers × threads: {workers} × 4 "
          f"(gunicorn.conf.py); partners: {len(clients)}; cluster: {not args.no_cluster}")
    print(f"run: {elapsed:.1f} s; requests: {len(latencies)}; accepted: {accepted} "
          f"= {accepted / elapsed:.1f}/s")
    if latencies:
        p50 = statistics.median(latencies)
        p95 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.95))]
        print(f"latency p50 / p95 / max: {p50 * 1000:.0f} / {p95 * 1000:.0f} / "
              f"{latencies[-1] * 1000:.0f} ms")
    errors = {code: count for code, count in outcomes.items() if code != "accepted"}
    print(f"errors by code: {errors or 'none'}")

    report = tagged(_manage(env, "shell", "-c", VERIFY), "REPORT")
    assert isinstance(report, dict)
    problems = []
    for client in clients:
        name = f"Bench partner {client.number + 1}"
        row = report[name]
        start, balance = Decimal(row["start"]), Decimal(row["balance"])
        charged, refunded = Decimal(row["charged"]), Decimal(row["refunded"])
        if row["orders"] != client.outcomes["accepted"] or row["charges"] != row["orders"]:
            problems.append(f"{name}: {row['orders']} orders, {row['charges']} charges, "
                            f"{client.outcomes['accepted']} accepted")
        if balance != start - charged + refunded or charged != sum(client.costs, Decimal(0)):
            problems.append(f"{name}: balance {balance}, start {start}, charged {charged}, "
                            f"refunded {refunded}, answers' costs {sum(client.costs, Decimal(0))}")
        if Decimal(row["lowest_balance_after"]) < 0 or balance < 0:
            problems.append(f"{name}: a balance below zero")
    total_orders = sum(row["orders"] for row in report.values())
    print(f"verified: orders in the database {total_orders} == accepted {accepted}; balances == "
          f"start − charges (+ refunds), never negative: {'OK' if not problems else 'FAILED'}")
    for problem in problems:
        print("  " + problem)
    if problems:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
