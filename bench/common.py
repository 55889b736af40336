"""Shared pieces of the benchmarks under bench/: a shop of its own, gunicorn, wrk, results.

Every figure of issue #11 is a ratio against a same-run reference (a bare Django view in the
same gunicorn, a bare ORM insert, a plain python-telegram-bot app), so machine speed cancels
out. A bench script:

- sets up its own shop (``Shop(database=...)``: a fresh SQLite file, or a PostgreSQL database
  dropped and created again with Redis as broker and cache, as in production),
- serves it with gunicorn in production mode (``Shop.gunicorn()``; ``BENCH_URLCONF`` adds
  the reference views of ``bench/reference.py`` next to the shop's URLs),
- measures the shop and the reference interleaved (``interleaved()``), and
- prints one JSON line per figure and writes it to ``var/bench/<figure>.json``
  (``result_write``), which ``bench/ci_check.py`` compares with ``bench/baseline.json``.
"""

from __future__ import annotations

import json
import os
import platform
import re
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "var" / "bench"
HOST = "shop.bench.test"
# What the TLS proxy in front of gunicorn adds to every request (README, Production).
PROXY_HEADERS = {"Host": HOST, "X-Forwarded-Proto": "https"}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpus": os.cpu_count(), "cpu": model or platform.processor(),
            "python": platform.python_version(), "system": platform.platform()}


def tagged(output: str, tag: str) -> Any:
    """The JSON a set-up script printed after `TAG ` on a line of its own."""
    for line in output.splitlines():
        if line.startswith(tag + " "):
            return json.loads(line[len(tag) + 1:])
    raise SystemExit(f"no {tag} line in:\n{output[-3000:]}")


def postgres_recreate(url: str) -> None:
    import psycopg

    parts = urlsplit(url)
    name = parts.path.lstrip("/")
    admin = parts._replace(path="/postgres").geturl()
    with psycopg.connect(admin, autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        connection.execute(f'CREATE DATABASE "{name}"')


class Shop:
    """A shop of its own for one benchmark run: its database, settings and processes.

    ``database``: "sqlite" (a fresh file under a temporary directory, ORM broker, database
    cache) or "postgres" (``postgres_url`` dropped and created again, Redis ``redis_url``
    flushed, as broker and cache). ``production``: DJANGO_ENV=production (DEBUG off, the
    production settings), served over plain HTTP: clients send the TLS proxy's headers
    (``PROXY_HEADERS``), as the proxy in front of gunicorn would.
    """

    def __init__(self, *, database: str = "sqlite", production: bool = True,
                 postgres_url: str = "postgres://postgres@127.0.0.1:5432/reseller_bench",
                 redis_url: str = "redis://127.0.0.1:6379/13",
                 extra_env: dict[str, str] | None = None) -> None:
        self.database = database
        self.tmp = Path(tempfile.mkdtemp(prefix="bench-"))
        self.processes: list[subprocess.Popen] = []
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("DJANGO_", "WEB_", "Q_", "SUPPLIER_", "TELEGRAM_"))}
        env.update({
            "DJANGO_ENV": "production" if production else "demo",
            "SECRET_KEY": secrets.token_urlsafe(50),
            "SITE_URL": f"https://{HOST}", "STATIC_ROOT": str(self.tmp / "static"),
            "ALLOWED_HOSTS": f"{HOST},127.0.0.1,localhost",
            "TELEGRAM_BOT_TOKEN": "", "SENTRY_DSN": "", "PYTHONUNBUFFERED": "1",
            "LOG_LEVEL": "WARNING", "Q_CLUSTER_NAME_PREFIX": f"bench-{os.getpid()}",
            "BENCH_URLCONF": "bench.urls",
            # The limits that protect the shop from one address: every client here is 127.0.0.1.
            "RECIPIENT_LOOKUP_RATE_PER_IP": "", "RECIPIENT_LOOKUP_RATE_PER_SESSION": "",
            "PARTNER_API_RATE": "1000000/minute", "PARTNER_API_RATE_PER_IP": "1000000/minute",
        })
        if database == "sqlite":
            env.update({"DATABASE_URL": f"sqlite:///{self.tmp / 'db.sqlite3'}",
                        "SQLITE_PATH": str(self.tmp / "db.sqlite3"), "REDIS_URL": ""})
        else:
            postgres_recreate(postgres_url)
            import redis

            redis.Redis.from_url(redis_url).flushdb()
            env.update({"DATABASE_URL": postgres_url, "REDIS_URL": redis_url})
        env.update(extra_env or {})
        self.env = env

    # --- set-up -------------------------------------------------------------------------
    def manage(self, *args: str, timeout: float = 600) -> str:
        done = subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=self.env,
                              capture_output=True, text=True, timeout=timeout, check=False)
        if done.returncode != 0:
            raise SystemExit(f"manage.py {args[0]} failed:\n{done.stdout}\n{done.stderr}")
        return done.stdout

    def shell(self, code: str, timeout: float = 600) -> str:
        """Run Python in `manage.py shell` against this shop; returns what it printed."""
        return self.manage("shell", "-c", code, timeout=timeout)

    def setup(self, *, catalog: bool = True) -> None:
        self.manage("migrate", "--no-input")
        self.manage("createcachetable")
        self.manage("collectstatic", "--no-input", "-v0")
        if catalog:
            self.shell("from shop.demo import demo_catalog_load; demo_catalog_load()")

    # --- processes ----------------------------------------------------------------------
    def start(self, args: list[str], name: str, env: dict[str, str] | None = None) -> subprocess.Popen:
        log = open(self.tmp / f"{name}.log", "ab")  # noqa: SIM115
        process = subprocess.Popen(args, cwd=ROOT, env={**self.env, **(env or {})}, stdout=log,
                                   stderr=subprocess.STDOUT, start_new_session=True)
        self.processes.append(process)
        return process

    def gunicorn(self, *, workers: int | None = None, threads: int | None = None,
                 worker_class: str | None = None, env: dict[str, str] | None = None) -> str:
        """Serve the shop with gunicorn.conf.py (overrides as given); returns its base URL."""
        port = free_port()
        args = [sys.executable, "-m", "gunicorn", "--config", "gunicorn.conf.py",
                "--bind", f"127.0.0.1:{port}", "--graceful-timeout", "3",
                "--access-logfile", "/dev/null"]
        if workers is not None:
            args += ["--workers", str(workers)]
        if threads is not None:
            args += ["--threads", str(threads)]
        if worker_class is not None:
            args += ["--worker-class", worker_class]
        process = self.start(args, "gunicorn", env)
        base = f"http://127.0.0.1:{port}"
        wait_http(f"{base}/healthz", process, self.tmp / "gunicorn.log")
        return base

    def supplier(self, *options: str, port: int | None = None) -> str:
        """Start the sandbox supplier (fakes/supplier.py) as a process; returns its URL."""
        port = port or free_port()
        process = self.start([sys.executable, "-m", "fakes.supplier", "--port", str(port),
                              "--db", str(self.tmp / "supplier.sqlite3"), *options], "supplier")
        url = f"http://127.0.0.1:{port}"
        wait_http(f"{url}/_sandbox/traffic", process, self.tmp / "supplier.log")
        return url

    def qcluster(self, env: dict[str, str] | None = None) -> subprocess.Popen:
        return self.start([sys.executable, "manage.py", "qcluster"], "qcluster", env)

    def stop(self) -> None:
        for process in reversed(self.processes):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in reversed(self.processes):
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.processes.clear()

    def __enter__(self) -> Shop:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
        if not os.environ.get("BENCH_KEEP"):
            shutil.rmtree(self.tmp, ignore_errors=True)


def wait_http(url: str, process: subprocess.Popen | None = None, log: Path | None = None,
              timeout: float = 60) -> None:
    import requests

    deadline = time.monotonic() + timeout
    while True:
        try:
            if requests.get(url, timeout=5).status_code == 200:
                return
        except requests.RequestException:
            pass
        if (process is not None and process.poll() is not None) or time.monotonic() > deadline:
            tail = log.read_text(errors="replace")[-3000:] if log and log.exists() else ""
            raise SystemExit(f"{url} did not come up\n{tail}")
        time.sleep(0.2)


# --- load ------------------------------------------------------------------------------
def wrk(url: str, *, seconds: float, connections: int = 8, threads: int = 2,
        headers: dict[str, str] | None = None, script: str | None = None) -> dict[str, float]:
    """Run wrk against `url`; requests/s, latency percentiles (ms) and errors."""
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed (Debian: apt-get install wrk)")
    # wrk refuses more threads than connections.
    args = ["wrk", f"-t{min(threads, connections)}", f"-c{connections}", f"-d{max(int(seconds), 1)}s",
            "--latency", "--timeout", "10s"]
    for name, value in (headers or {}).items():
        args += ["-H", f"{name}: {value}"]
    if script:
        args += ["-s", script]
    out = subprocess.run(args + [url], capture_output=True, text=True, check=True).stdout
    return wrk_parse(out)


_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}


def wrk_parse(out: str) -> dict[str, float]:
    def ms(text: str) -> float:
        number, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text).groups()  # type: ignore[union-attr]
        return float(number) * _UNITS[unit]

    result: dict[str, float] = {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))}  # type: ignore[union-attr]
    for pct in ("50", "90", "99"):
        found = re.search(rf"^\s+{pct}%\s+(\S+)", out, re.M)
        if found:
            result[f"p{pct}_ms"] = ms(found.group(1))
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    result["socket_errors"] = float(sum(int(x) for x in errors.groups())) if errors else 0.0
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    result["non_2xx"] = float(non2xx.group(1)) if non2xx else 0.0
    result["requests"] = float(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    return result


def interleaved(measure: dict[str, Callable[[], float]], rounds: int = 3) -> dict[str, list[float]]:
    """Run each named measurement once per round, in turn, so drift hits all of them alike."""
    runs: dict[str, list[float]] = {name: [] for name in measure}
    for _ in range(rounds):
        for name, run in measure.items():
            runs[name].append(run())
    return runs


def ratio_summary(shop: list[float], reference: list[float]) -> dict[str, Any]:
    """Per-round ratios shop ÷ reference and their median, min and max (the spread)."""
    ratios = [s / r for s, r in zip(shop, reference, strict=True) if r]
    return {"ratio": round(statistics.median(ratios), 3), "ratio_min": round(min(ratios), 3),
            "ratio_max": round(max(ratios), 3), "shop": shop, "reference": reference}


def result_write(figure: str, data: dict[str, Any]) -> dict[str, Any]:
    """Print the figure as one JSON line and keep it in var/bench/<figure>.json."""
    record = {"figure": figure, "when": time.strftime("%Y-%m-%d %H:%M:%S"),
              "machine": machine(), "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
              **data}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{figure}.json").write_text(json.dumps(record, indent=2, default=str))
    print(json.dumps(record, default=str), flush=True)
    return record


@contextmanager
def timer() -> Iterator[Callable[[], float]]:
    started = time.monotonic()
    yield lambda: time.monotonic() - started
