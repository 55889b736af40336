"""A burst of Telegram webhook deliveries at once against runserver or gunicorn, on loopback.

Usage:
    .venv/bin/python bench/webhook_burst.py --server runserver --requests 150
    .venv/bin/python bench/webhook_burst.py --server gunicorn --requests 150 [--workers 2 --threads 4]

Starts the fake Bot API (fakes/telegram.py) in this process and the web server in a
subprocess on a free 127.0.0.1 port, with its own SQLite file in a temporary directory; then
POSTs one /start update per user, all released together, to the bot's webhook URL, and
counts 200s, connection errors (resets) and latency. Nothing leaves the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from fakes.telegram import start_fake_telegram  # noqa: E402


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--server", choices=["runserver", "gunicorn"], required=True)
    parser.add_argument("--requests", type=int, default=150)
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers (bin/run-demo: 2)")
    parser.add_argument("--threads", type=int, default=4, help="gunicorn threads per worker")
    args = parser.parse_args()
    if not 1 <= args.requests <= 500:
        raise SystemExit("--requests: 1 to 500")

    fake = start_fake_telegram()
    tmp = Path(tempfile.mkdtemp(prefix="webhook-burst-"))
    path_secret, header_secret = secrets.token_urlsafe(16), secrets.token_urlsafe(16)
    port = _free_port()
    env = {**os.environ, "DJANGO_ENV": "demo", "DATABASE_URL": "", "REDIS_URL": "",
           "SQLITE_PATH": str(tmp / "db.sqlite3"), "TELEGRAM_BOT_TOKEN": fake.token,
           "TELEGRAM_API_BASE_URL": fake.base_url, "TELEGRAM_API_FILE_URL": f"{fake.url}/file/bot",
           "TELEGRAM_WEBHOOK_URL": "https://shop.example", "TELEGRAM_WEBHOOK_PATH": path_secret,
           "TELEGRAM_WEBHOOK_SECRET": header_secret, "LOG_LEVEL": "WARNING"}
    py = sys.executable
    subprocess.run([py, "manage.py", "migrate", "-v0"], cwd=ROOT, env=env, check=True)
    subprocess.run([py, "manage.py", "createcachetable"], cwd=ROOT, env=env, check=True)
    if args.server == "runserver":
        command = [py, "manage.py", "runserver", "--noreload", "--insecure", f"127.0.0.1:{port}"]
    else:
        command = [py, "-m", "gunicorn", "--config", "gunicorn.conf.py", "--bind", f"127.0.0.1:{port}",
                   "--workers", str(args.workers), "--threads", str(args.threads),
                   "--access-logfile", "/dev/null"]
    log = open(tmp / "server.log", "wb")
    server = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                              start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    url = f"{base}/bot/webhook/{path_secret}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                requests.get(f"{base}/terms/", timeout=2).raise_for_status()
                break
            except requests.RequestException:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise SystemExit((tmp / "server.log").read_text(errors="replace")) from None
                time.sleep(0.2)
        # One warm-up update, so each measurement starts from a running bot (per process).
        warm = fake.user(700000000, "Warm")
        requests.post(url, data=json.dumps(warm.text("/start")), timeout=30,
                      headers={"X-Telegram-Bot-Api-Secret-Token": header_secret,
                               "Content-Type": "application/json"})

        updates = [fake.user(700000001 + n, f"User{n}").text("/start") for n in range(args.requests)]
        barrier = threading.Barrier(args.requests)
        results: list[tuple[str, float]] = [("", 0.0)] * args.requests

        def deliver(index: int) -> None:
            barrier.wait()
            started = time.perf_counter()
            try:
                answer = requests.post(url, data=json.dumps(updates[index]), timeout=60, headers={
                    "X-Telegram-Bot-Api-Secret-Token": header_secret,
                    "Content-Type": "application/json"})
                outcome = str(answer.status_code)
            except requests.ConnectionError as exc:
                outcome = "reset" if "reset" in str(exc).lower() else "connection error"
            except requests.Timeout:
                outcome = "timeout"
            results[index] = (outcome, time.perf_counter() - started)

        threads = [threading.Thread(target=deliver, args=(n,)) for n in range(args.requests)]
        wall = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        wall = time.perf_counter() - wall
        time.sleep(1)
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
        fake.stop()

    outcomes: dict[str, int] = {}
    for outcome, _ in results:
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
    ok_times = sorted(seconds for outcome, seconds in results if outcome == "200")
    replies = len(fake.calls("sendMessage"))
    print(f"server: {args.server}" + (f" ({args.workers} workers x {args.threads} threads)"
                                      if args.server == "gunicorn" else ""))
    print(f"deliveries: {args.requests}, outcomes: {outcomes}, wall: {wall:.2f}s")
    if ok_times:
        p95 = ok_times[min(len(ok_times) - 1, int(len(ok_times) * 0.95))]
        print(f"200 latency: median {statistics.median(ok_times):.2f}s, p95 {p95:.2f}s, "
              f"max {ok_times[-1]:.2f}s")
    print(f"bot replies sent (sendMessage, incl. warm-up): {replies}")


if __name__ == "__main__":
    main()
