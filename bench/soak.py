"""Memory soak: resident memory of every process of the production layout under steady load, by role.

Usage:
    .venv/bin/python bench/soak.py [--database sqlite|postgres] [--minutes 10] [--quick]

Starts the production layout on this machine (bench/common.py's Shop, DJANGO_ENV=production):
gunicorn with gunicorn.conf.py, ``manage.py qcluster`` (Q_WORKERS=2), the sandbox supplier
(``python -m fakes.supplier``, 0.2 s per call where it supports ``--latency-seconds``) and the
bot in long polling (``manage.py runbot``) against the fake Bot API (fakes/telegram.py), which
runs in this process. PostgreSQL + Redis by default, as in production.

Load for the whole run, all at once:

- wrk on the catalog page (GET /, bench.common.PROXY_HEADERS), in 30 s rounds back to back;
- orders placed and paid at ``--orders-per-second`` by a long-lived ``manage.py shell`` loop
  (order_create for the bot channel, then order_pay_sandbox, which marks it paid through the
  payment inbox), so the cluster fulfils them and sends the buyers' notices through the fake;
- bot updates at ``--updates-per-second`` from ``--users`` returning users (/start, /buy,
  /cancel and taps on the catalog's package buttons) and, for ``--new-users`` of them, from a
  user the bot has never seen (/start), so memory kept per user would show; fed to getUpdates.

Every ``--sample-seconds`` it reads VmRSS and VmHWM (the peak) from /proc/<pid>/status of every
process, by role: gunicorn master, web worker, qcluster main, sentinel, monitor, pusher,
worker, runbot. gunicorn (max_requests) and django-q2 (recycle) replace workers now and then:
a new pid under the same role is a recycling event, counted and timed. The verdict per role
compares the median RSS of the second minute with that of the last minute and fits a line
(MB/min) over the last 8 minutes (the second half of a shorter run). ``--no-recycle`` turns
both recyclings off (WEB_MAX_REQUESTS=0, Q_RECYCLE), so growth they would hide shows.
``--tracemalloc`` runs the shop's processes with bench/memtrace/ on PYTHONPATH: each writes a
tracemalloc snapshot every minute, and the report diffs, per role, the longest-lived process's
snapshot of the second minute against its last one (what grew, by source line).
``--gc-seconds N`` instead makes them run a full garbage collection every N seconds: growth
that goes away with it is garbage in reference cycles waiting for the collector, not a leak.

The figure (``var/bench/soak.json``): per role start, peak, end, growth and slope; ``ratio`` is
the smallest of (second-minute RSS ÷ last-minute RSS) over the shop's roles: 1.0 when flat,
lower when something grows. The samples go to ``var/bench/soak_samples.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import (  # noqa: E402
    PROXY_HEADERS,
    RESULTS,
    ROOT,
    Shop,
    free_port,
    result_write,
    wrk,
)
from fakes.telegram import FakeTelegram, FakeUser, start_fake_telegram  # noqa: E402

POSTGRES_URL = "postgres://postgres@127.0.0.1:5432/reseller_soak"
REDIS_URL = "redis://127.0.0.1:6379/6"
Q_WORKERS = 2
BOT_USERS_FIRST = 720_000_001
BUYERS_FIRST = 730_000_001
NEW_USERS_FIRST = 740_000_000
BUYERS = 100
WRK_ROUND_SECONDS = 30
# The shop's own processes; the driver, the supplier fake and the order loader are reported
# too, but only these decide the verdict.
SHOP_ROLES = ("gunicorn master", "web worker", "qcluster main", "qcluster sentinel",
              "qcluster monitor", "qcluster pusher", "qcluster worker", "runbot")
ROLE_ORDER = (*SHOP_ROLES, "order loader", "supplier (fake)", "driver (fake Telegram)")
RECYCLED_ROLES = ("web worker", "qcluster worker")
# A role grows when its last minute sits this far above its second minute and its line rises:
# below these, what moves is allocator noise and the sawtooth of recycled workers.
GROWTH_MB = 3.0
GROWTH_PERCENT = 3.0
SLOPE_MB_PER_MIN = 0.25

# Runs in `manage.py shell`: places and pays bot orders at a steady rate until terminated.
ORDER_LOADER = r"""
import json, os, random, signal, sys, time
from orders.services import order_create, order_pay_sandbox
from orders.suppliers.base import RecipientInfo
from shop.models import Product

signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
rate = float(os.environ["SOAK_ORDERS_PER_SECOND"])
buyers_first, buyers = int(os.environ["SOAK_BUYERS_FIRST"]), int(os.environ["SOAK_BUYERS"])
product = Product.objects.get(slug="telegram-stars")
packages = list(product.packages.filter(active=True).values_list("pk", flat=True))
placed = paid = failed = 0
started = time.monotonic()
while True:
    try:
        recipient_id = random.randrange(200_000_000, 300_000_000)
        order = order_create(
            channel="bot", product=product, recipient_input=str(recipient_id),
            recipient=RecipientInfo(user_id=str(recipient_id), username=f"user{recipient_id}"),
            payment_method="sandbox", package_id=random.choice(packages),
            buyer_telegram_id=buyers_first + random.randrange(buyers), buyer_language="en")
        placed += 1
        order_pay_sandbox(order=order)
        paid += 1
    except Exception as exc:  # counted and printed: the soak reports it
        failed += 1
        print(json.dumps({"error": repr(exc)[:300]}), flush=True)
    if (placed + failed) % 20 == 0:
        print(json.dumps({"t": round(time.monotonic() - started, 1), "placed": placed,
                          "paid": paid, "failed": failed}), flush=True)
    delay = started + (placed + failed) / rate - time.monotonic()
    if delay > 0:
        time.sleep(delay)
"""


# --- /proc ------------------------------------------------------------------------------
def proc_parents() -> dict[int, int]:
    """pid → parent pid of every process on the machine."""
    parents: dict[int, int] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
        except OSError:
            continue
        # The command name may hold spaces and parentheses: the fields follow the last ")".
        parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    return parents


def proc_memory(pid: int) -> tuple[int, int] | None:
    """(VmRSS, VmHWM) in kB, or None once the process is gone."""
    rss = hwm = 0
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1])
            elif line.startswith("VmHWM:"):
                hwm = int(line.split()[1])
    except (OSError, ValueError):
        return None
    return (rss, hwm) if rss else None


def proc_handles(pid: int) -> tuple[int, int]:
    """(threads, open file descriptors): what leaks besides memory, 0 when unreadable."""
    threads = 0
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("Threads:"):
                threads = int(line.split()[1])
        return threads, len(os.listdir(f"/proc/{pid}/fd"))
    except (OSError, ValueError):
        return threads, 0


@dataclass
class Instance:
    """One process of a role, from its first sample to its last."""

    pid: int
    role: str
    first: float
    last: float
    samples: list[tuple[float, float]] = field(default_factory=list)  # (t, RSS MB)
    hwm_mb: float = 0.0
    gone: bool = False


class Roles:
    """Which process plays which role, followed across recycling."""

    def __init__(self, *, gunicorn: int, qcluster: int, runbot: int, loader: int, supplier: int,
                 q_workers: int) -> None:
        self.fixed = {gunicorn: "gunicorn master", qcluster: "qcluster main", runbot: "runbot",
                      loader: "order loader", supplier: "supplier (fake)",
                      os.getpid(): "driver (fake Telegram)"}
        self.gunicorn, self.qcluster, self.q_workers = gunicorn, qcluster, q_workers
        self.instances: dict[int, Instance] = {}
        self.sentinel_children_seen = False

    def sentinel_ready(self, parents: dict[int, int]) -> bool:
        """Whether the sentinel has spawned its workers, monitor and pusher (in that order)."""
        sentinels = [pid for pid, parent in parents.items() if parent == self.qcluster]
        return bool(sentinels) and sum(
            1 for parent in parents.values() if parent == sentinels[0]) >= self.q_workers + 2

    def classify(self, parents: dict[int, int]) -> dict[int, str]:
        roles = {pid: role for pid, role in self.fixed.items() if pid in parents}
        for pid, parent in parents.items():
            if parent == self.gunicorn:
                roles[pid] = "web worker"
            elif parent == self.qcluster:
                roles[pid] = "qcluster sentinel"
        sentinel = next((pid for pid, role in roles.items() if role == "qcluster sentinel"), None)
        if sentinel is not None:
            children = sorted(pid for pid, parent in parents.items() if parent == sentinel)
            known = {pid: self.instances[pid].role for pid in children if pid in self.instances}
            if not self.sentinel_children_seen and len(children) >= self.q_workers + 2:
                # django-q2's Sentinel.spawn_cluster: the workers first, then monitor, pusher.
                order = ["qcluster worker"] * self.q_workers + ["qcluster monitor", "qcluster pusher"]
                known = dict(zip(children, order, strict=False))
                self.sentinel_children_seen = True
            for pid in children:
                if pid not in known:
                    # A new child: a worker recycled (or reincarnated), unless an auxiliary
                    # process died and this is its replacement.
                    live = set(known.values())
                    workers = sum(1 for role in known.values() if role == "qcluster worker")
                    missing = [role for role in ("qcluster monitor", "qcluster pusher") if role not in live]
                    known[pid] = missing[0] if workers >= self.q_workers and missing else "qcluster worker"
                roles[pid] = known[pid]
        return roles

    def sample(self, t: float) -> dict[str, Any]:
        parents = proc_parents()
        roles = self.classify(parents)
        seen = set()
        for pid, role in roles.items():
            memory = proc_memory(pid)
            if memory is None:
                continue
            rss, hwm = memory
            instance = self.instances.get(pid)
            if instance is None:
                instance = self.instances[pid] = Instance(pid=pid, role=role, first=t, last=t)
            instance.last = t
            instance.samples.append((t, rss / 1024))
            instance.hwm_mb = max(instance.hwm_mb, hwm / 1024)
            seen.add(pid)
        for pid, instance in self.instances.items():
            if pid not in seen:
                instance.gone = True
        by_role: dict[str, list[float]] = {}
        handles: dict[str, list[tuple[int, int]]] = {}
        for pid in seen:
            instance = self.instances[pid]
            by_role.setdefault(instance.role, []).append(instance.samples[-1][1])
            handles.setdefault(instance.role, []).append(proc_handles(pid))
        return {"t": round(t, 1), "load": round(os.getloadavg()[0], 2),
                "roles": {role: {"n": len(values), "rss_mb": round(statistics.fmean(values), 1),
                                 "rss_max_mb": round(max(values), 1),
                                 "threads_max": max(threads for threads, _ in handles[role]),
                                 "fds_max": max(fds for _, fds in handles[role])}
                          for role, values in sorted(by_role.items())}}


# --- analysis ---------------------------------------------------------------------------
def slope_per_minute(points: list[tuple[float, float]]) -> float | None:
    """Least-squares slope of (seconds, MB) points, in MB per minute."""
    if len(points) < 3:
        return None
    times = [t for t, _ in points]
    if max(times) - min(times) < 30:
        return None
    return statistics.linear_regression(times, [mb for _, mb in points]).slope * 60


def windows(seconds: float) -> tuple[tuple[float, float], tuple[float, float], float]:
    """(baseline window, last window, fit start) in seconds since the load started.

    Ten minutes: the second minute, the last minute, a line over the last 8 minutes. A
    shorter run: its second quarter, its last quarter, a line over its second half.
    """
    if seconds >= 240:
        return (60.0, 120.0), (seconds - 60, seconds), max(60.0, seconds - 480)
    quarter = seconds / 4
    return (quarter, 2 * quarter), (seconds - quarter, seconds), seconds / 2


def role_summary(role: str, samples: list[dict[str, Any]], instances: list[Instance],
                 seconds: float) -> dict[str, Any]:
    """Start, peak, end, the two windows, slope and verdict of one role's mean RSS."""
    series = [(s["t"], s["roles"][role]["rss_mb"]) for s in samples if role in s["roles"]]
    if not series:
        return {}
    (b0, b1), (l0, l1), fit_from = windows(seconds)
    baseline = [mb for t, mb in series if b0 <= t < b1] or [series[0][1]]
    last = [mb for t, mb in series if l0 <= t <= l1] or [series[-1][1]]
    base_mb, last_mb = statistics.median(baseline), statistics.median(last)
    slope = slope_per_minute([(t, mb) for t, mb in series if t >= fit_from])
    growth = last_mb - base_mb
    grows = (growth > max(GROWTH_MB, base_mb * GROWTH_PERCENT / 100)
             and slope is not None and slope > SLOPE_MB_PER_MIN)
    # Within one worker's life, as long as it lived two minutes: what recycling would hide.
    lives = [slope_per_minute([(t, mb) for t, mb in instance.samples if t >= instance.first + 60])
             for instance in instances if instance.last - instance.first >= 120]
    lives_known = [value for value in lives if value is not None]
    threads = [s["roles"][role]["threads_max"] for s in samples if role in s["roles"]]
    fds = [s["roles"][role]["fds_max"] for s in samples if role in s["roles"]]
    return {
        "instances": len(instances),
        "threads_start_end_max": [threads[0], threads[-1], max(threads)],
        "fds_start_end_max": [fds[0], fds[-1], max(fds)],
        "recycled": sum(1 for instance in instances if instance.gone) if role in RECYCLED_ROLES else None,
        "start_mb": series[0][1], "peak_mb": round(max(i.hwm_mb for i in instances), 1),
        "end_mb": series[-1][1], "baseline_mb": round(base_mb, 1), "last_mb": round(last_mb, 1),
        "growth_mb": round(growth, 1), "slope_mb_per_min": None if slope is None else round(slope, 3),
        "life_slope_mb_per_min": round(statistics.median(lives_known), 3) if lives_known else None,
        "grows": grows,
    }


# --- load -------------------------------------------------------------------------------
class Load:
    """The three streams of load and what they counted, minute by minute."""

    def __init__(self, *, base: str, fake: FakeTelegram, users: list[FakeUser], deadline: float,
                 updates_per_second: float, new_users: float, wrk_connections: int) -> None:
        self.base, self.fake, self.users, self.new_users = base, fake, users, new_users
        self.newcomers = 0
        self.deadline, self.updates_per_second = deadline, updates_per_second
        self.wrk_connections = wrk_connections
        self.stop = threading.Event()
        self.wrk_rounds: list[dict[str, float]] = []
        self.updates: list[float] = []
        self.started = time.monotonic()

    def catalog(self) -> None:
        while not self.stop.is_set():
            left = self.deadline - time.monotonic()
            if left < 2:
                return
            result = wrk(f"{self.base}/", seconds=min(WRK_ROUND_SECONDS, left),
                         connections=self.wrk_connections, threads=1, headers=PROXY_HEADERS)
            result["t"] = round(time.monotonic() - self.started, 1)
            self.wrk_rounds.append(result)

    def bot(self) -> None:
        rng = random.Random(11)
        interval = 1 / self.updates_per_second
        sent = 0
        while not self.stop.is_set() and time.monotonic() < self.deadline:
            if rng.random() < self.new_users:
                self.newcomers += 1
                newcomer = self.fake.user(NEW_USERS_FIRST + self.newcomers, f"New{self.newcomers}")
                self.fake.push_update(newcomer.text("/start"))
                self.updates.append(time.monotonic() - self.started)
                sent += 1
                delay = self.started + sent * interval - time.monotonic()
                if delay > 0:
                    self.stop.wait(delay)
                continue
            user = rng.choice(self.users)
            mine = self.fake.bot_messages(user.id)
            packages = [button["callback_data"] for button in (mine[-1].buttons if mine else [])
                        if "callback_data" in button and button["text"].startswith("⭐")]
            if packages and rng.random() < 0.7:
                update = user.callback(rng.choice(packages), mine[-1])
            else:
                update = user.text(rng.choice(("/start", "/buy", "/buy", "/cancel")))
            self.fake.push_update(update)
            self.updates.append(time.monotonic() - self.started)
            sent += 1
            delay = self.started + sent * interval - time.monotonic()
            if delay > 0:
                self.stop.wait(delay)


def port_wait(port: int, process: subprocess.Popen, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"nothing listens on port {port}")


def supplier_supports_latency() -> bool:
    done = subprocess.run([sys.executable, "-m", "fakes.supplier", "--help"], cwd=ROOT,
                          capture_output=True, text=True, check=False)
    return "--latency-seconds" in done.stdout


def per_minute(times: list[float], seconds: float) -> list[int]:
    counts = [0] * max(1, int(-(-seconds // 60)))
    for t in times:
        if 0 <= t < seconds:
            counts[int(t // 60)] += 1
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database", choices=["sqlite", "postgres"], default="postgres")
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--quick", action="store_true", help="2 minutes (CI)")
    parser.add_argument("--sample-seconds", type=float, default=5.0)
    parser.add_argument("--orders-per-second", type=float, default=2.0)
    parser.add_argument("--updates-per-second", type=float, default=5.0)
    parser.add_argument("--users", type=int, default=200, help="returning bot users")
    parser.add_argument("--new-users", type=float, default=0.2,
                        help="share of updates from a user new to the bot")
    parser.add_argument("--wrk-connections", type=int, default=4)
    parser.add_argument("--web-workers", type=int, default=None,
                        help="gunicorn workers (default: gunicorn.conf.py's)")
    parser.add_argument("--latency-seconds", type=float, default=0.2, help="supplier, per call")
    parser.add_argument("--no-recycle", action="store_true",
                        help="no worker recycling (gunicorn max_requests, django-q2 recycle)")
    parser.add_argument("--tracemalloc", action="store_true",
                        help="snapshot diffs per role (bench/memtrace/sitecustomize.py)")
    parser.add_argument("--gc-seconds", type=float, default=0.0,
                        help="a full gc.collect() this often in the shop's processes "
                             "(bench/memtrace/sitecustomize.py): is what grows cyclic garbage?")
    parser.add_argument("--postgres", default=POSTGRES_URL)
    parser.add_argument("--redis", default=REDIS_URL)
    args = parser.parse_args()
    minutes = 2.0 if args.quick else args.minutes
    seconds = minutes * 60

    fake = start_fake_telegram()
    users = [fake.user(BOT_USERS_FIRST + n, f"Soak{n}") for n in range(args.users)]
    for n in range(BUYERS):
        fake.user(BUYERS_FIRST + n, f"Buyer{n}")
    supplier_port = free_port()
    extra_env = {
        "TELEGRAM_BOT_TOKEN": fake.token, "TELEGRAM_API_BASE_URL": fake.base_url,
        "TELEGRAM_API_FILE_URL": f"{fake.url}/file/bot",
        "SUPPLIER_CODE": "sandbox", "SUPPLIER_BASE_URL": f"http://127.0.0.1:{supplier_port}",
        "SUPPLIER_API_KEY": "soak-key", "Q_WORKERS": str(Q_WORKERS),
    }
    if args.no_recycle:
        extra_env.update({"WEB_MAX_REQUESTS": "0", "Q_RECYCLE": "1000000000"})
    with Shop(database=args.database, postgres_url=args.postgres, redis_url=args.redis,
              extra_env=extra_env) as shop:
        shop.setup()
        trace_dir = RESULTS / "soak_tracemalloc"
        if args.tracemalloc:
            # The processes that run through the soak only (not migrate and the set-up).
            shutil.rmtree(trace_dir, ignore_errors=True)
            trace_dir.mkdir(parents=True)
            shop.env.update({"PYTHONPATH": str(ROOT / "bench" / "memtrace"),
                             "MEMTRACE_DIR": str(trace_dir), "MEMTRACE_SECONDS": "60"})
        elif args.gc_seconds:
            shop.env.update({"PYTHONPATH": str(ROOT / "bench" / "memtrace"),
                             "MEMTRACE_GC_SECONDS": str(args.gc_seconds)})
        supplier_args = [sys.executable, "-m", "fakes.supplier", "--host", "127.0.0.1",
                         "--port", str(supplier_port), "--db", str(shop.tmp / "supplier.sqlite3"),
                         "--api-key", "soak-key", "--balance", "100000000"]
        latency = supplier_supports_latency()
        if latency:
            supplier_args += ["--latency-seconds", str(args.latency_seconds)]
        supplier = shop.start(supplier_args, "supplier")
        port_wait(supplier_port, supplier)
        base = shop.gunicorn(workers=args.web_workers)
        gunicorn = shop.processes[-1]
        cluster = shop.qcluster()
        runbot = shop.start([sys.executable, "manage.py", "runbot"], "runbot")
        fake.wait_for(lambda: fake.calls("getUpdates"), timeout=60)
        loader = shop.start([sys.executable, "manage.py", "shell", "-c", ORDER_LOADER], "loader", {
            "SOAK_ORDERS_PER_SECOND": str(args.orders_per_second),
            "SOAK_BUYERS_FIRST": str(BUYERS_FIRST), "SOAK_BUYERS": str(BUYERS)})
        roles = Roles(gunicorn=gunicorn.pid, qcluster=cluster.pid, runbot=runbot.pid,
                      loader=loader.pid, supplier=supplier.pid, q_workers=Q_WORKERS)
        deadline = time.monotonic() + 60
        while not roles.sentinel_ready(proc_parents()):
            if time.monotonic() > deadline or cluster.poll() is not None:
                raise SystemExit((shop.tmp / "qcluster.log").read_text(errors="replace")[-3000:])
            time.sleep(0.2)

        started, started_wall = time.monotonic(), time.time()
        load = Load(base=base, fake=fake, users=users, deadline=started + seconds,
                    updates_per_second=args.updates_per_second, new_users=args.new_users,
                    wrk_connections=args.wrk_connections)
        load.started = started
        threads = [threading.Thread(target=load.catalog, name="soak-wrk", daemon=True),
                   threading.Thread(target=load.bot, name="soak-bot", daemon=True)]
        for thread in threads:
            thread.start()
        samples: list[dict[str, Any]] = []
        dead: list[str] = []
        while True:
            t = time.monotonic() - started
            samples.append(roles.sample(t))
            for name, process in (("gunicorn", gunicorn), ("qcluster", cluster),
                                  ("runbot", runbot), ("loader", loader), ("supplier", supplier)):
                if process.poll() is not None and name not in dead:
                    dead.append(name)
                    print(f"soak: {name} exited with {process.returncode}", file=sys.stderr)
            if t >= seconds:
                break
            print(f"soak: {t / 60:4.1f} min, load {samples[-1]['load']}, "
                  + ", ".join(f"{role} {v['rss_mb']:.0f} MB" + (f" ×{v['n']}" if v["n"] > 1 else "")
                              for role, v in samples[-1]["roles"].items() if role in SHOP_ROLES),
                  file=sys.stderr, flush=True)
            time.sleep(max(0.0, started + len(samples) * args.sample_seconds - time.monotonic()))
        load.stop.set()
        loader.send_signal(signal.SIGTERM)
        for thread in threads:
            thread.join(timeout=WRK_ROUND_SECONDS + 15)
        # What the cluster made of the orders (a few seconds to finish those in flight).
        time.sleep(5)
        outcome = json.loads(shop.shell(
            "import json; from django.db.models import Count; from orders.models import Order; "
            "from bots.models import BuyerNotice; from django_q.brokers import get_broker; "
            "print(json.dumps({'orders': dict(Order.objects.values_list('status')"
            ".annotate(n=Count('id'))), 'notices': dict(BuyerNotice.objects"
            ".values_list('outcome').annotate(n=Count('id'))), "
            "'queued_tasks': get_broker().queue_size()}))").strip().splitlines()[-1])
        logs = {name: (shop.tmp / f"{name}.log").read_text(errors="replace")
                for name in ("gunicorn", "qcluster", "runbot", "loader", "supplier")}
        loader_lines = [json.loads(line) for line in logs["loader"].splitlines()
                        if line.startswith("{")]

    product_roles = [role for role in ROLE_ORDER if any(i.role == role for i in roles.instances.values())]
    summary = {role: role_summary(role, samples, [i for i in roles.instances.values() if i.role == role],
                                  seconds)
               for role in product_roles}
    recycling = {role: sorted(round(i.last, 1) for i in roles.instances.values()
                              if i.role == role and i.gone)
                 for role in RECYCLED_ROLES}
    growth_ratios = [s["baseline_mb"] / s["last_mb"] for role, s in summary.items()
                     if role in SHOP_ROLES and s and s["last_mb"]]
    progress = [line for line in loader_lines if "placed" in line]
    bot_replies = {method: len(fake.calls(method)) for method in
                   ("sendMessage", "editMessageText", "answerCallbackQuery")}
    wrk_totals = {key: sum(r[key] for r in load.wrk_rounds)
                  for key in ("requests", "non_2xx", "socket_errors")}
    data = {
        "database": args.database, "minutes": minutes, "quick": args.quick,
        "recycling_on": not args.no_recycle, "sample_seconds": args.sample_seconds,
        "gc_seconds": args.gc_seconds or None,
        # glibc's malloc arenas (one per thread up to 8 × cores): set in the environment to try.
        "malloc_arena_max": os.environ.get("MALLOC_ARENA_MAX"),
        "ratio": round(min(growth_ratios), 3) if growth_ratios else None,
        "grows": sorted(role for role, s in summary.items() if role in SHOP_ROLES and s.get("grows")),
        "roles": summary,
        "recycling_events_at_seconds": recycling,
        "load": {
            "machine_load_avg": [min(s["load"] for s in samples), max(s["load"] for s in samples)],
            "catalog": {**wrk_totals, "rps_per_round": [round(r["rps"], 1) for r in load.wrk_rounds],
                        "p99_ms_max": max((r.get("p99_ms", 0.0) for r in load.wrk_rounds), default=0.0)},
            "orders": {"progress_last": progress[-1] if progress else None,
                       "errors": [line["error"] for line in loader_lines if "error" in line][:5],
                       "per_second": args.orders_per_second, "final_status": outcome["orders"],
                       "notices": outcome["notices"], "tasks_queued_at_end": outcome["queued_tasks"]},
            "bot": {"updates": len(load.updates), "new_users": load.newcomers,
                    "per_minute": per_minute(load.updates, seconds),
                    "replies": bot_replies, "unanswered_callback_queries": len(fake.unanswered_queries())},
            "supplier_latency_seconds": args.latency_seconds if latency else None,
        },
        "errors_in_logs": {name: sum(text.count(word) for word in ("Traceback", "database is locked"))
                           for name, text in logs.items()},
        # Replacements that were not recycling (logged at WARNING and above, unlike recycling).
        "workers_died": {"web (gunicorn WORKER TIMEOUT or killed)": sum(
                             logs["gunicorn"].count(word) for word in ("WORKER TIMEOUT", "was sent SIG")),
                         "cluster (django-q2 reincarnated)": logs["qcluster"].count("reincarnated")},
        "exited_early": dead,
    }
    if args.tracemalloc:
        data["tracemalloc"] = memtrace_report(trace_dir, roles, started_wall)
    fake.stop()
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "soak_samples.json").write_text(json.dumps(samples))
    result_write("soak", data)
    print(table(summary), file=sys.stderr)


def memtrace_report(trace_dir: Path, roles: Roles, started_wall: float) -> dict[str, Any]:
    """Per role: what grew between the second minute and the end in its longest-lived process."""
    import tracemalloc

    report: dict[str, Any] = {}
    for role in SHOP_ROLES:
        instances = sorted((i for i in roles.instances.values() if i.role == role),
                           key=lambda i: i.last - i.first)
        if not instances:
            continue
        pid = instances[-1].pid
        dumps = sorted(trace_dir.glob(f"{pid}-*.pickle"))
        timed = [(path.stat().st_mtime - started_wall, path) for path in dumps]
        early = [path for t, path in timed if t >= 120] or [path for _, path in timed]
        if len(timed) < 2 or early[0] == timed[-1][1]:
            continue
        old = tracemalloc.Snapshot.load(str(early[0]))
        new = tracemalloc.Snapshot.load(str(timed[-1][1]))
        lines = new.compare_to(old, "lineno")
        report[role] = {
            "pid": pid, "from": early[0].name, "to": timed[-1][1].name,
            "traced_growth_kb": round(sum(stat.size_diff for stat in lines) / 1024, 1),
            "top": [f"{stat.size_diff / 1024:+.1f} kB {stat.count_diff:+d} blocks "
                    f"{stat.traceback[0].filename}:{stat.traceback[0].lineno}"
                    for stat in lines[:12]],
            "top_tracebacks": [
                [f"{stat.size_diff / 1024:+.1f} kB", *stat.traceback.format(limit=8)]
                for stat in new.compare_to(old, "traceback")[:3]],
        }
    return report


def table(summary: dict[str, dict[str, Any]]) -> str:
    """The per-role table, as docs/benchmarks.md records it."""
    lines = ["| role | instances (recycled) | start MB | peak MB (VmHWM) | 2nd min MB | last min MB "
             "| end MB | slope MB/min | slope within a life | grows |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for role, s in summary.items():
        if not s:
            continue
        recycled = f" ({s['recycled']})" if s["recycled"] is not None else ""
        lines.append(
            f"| {role} | {s['instances']}{recycled} | {s['start_mb']:.0f} | {s['peak_mb']:.0f} "
            f"| {s['baseline_mb']:.1f} | {s['last_mb']:.1f} | {s['end_mb']:.0f} "
            f"| {s['slope_mb_per_min'] if s['slope_mb_per_min'] is not None else '–'} "
            f"| {s['life_slope_mb_per_min'] if s['life_slope_mb_per_min'] is not None else '–'} "
            f"| {('yes' if s['grows'] else 'no') if role in SHOP_ROLES else '(load generator)'} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
