"""Bot updates handled per second: the shop's bot vs a plain python-telegram-bot app, by webhook.

Usage:
    .venv/bin/python bench/bot_updates.py [--database sqlite|postgres] [--quick]
        [--seconds 10 --rounds 3 --connections 16 --workers 2]

The shop in production mode under gunicorn (gunicorn.conf.py: gthread; --workers of them),
its bot in webhook mode against the fake Bot API (fakes/telegram.py, a real HTTP server in
this process). wrk POSTs `/start` updates, as Telegram delivers them to a webhook (several
connections at once, each waiting for the answer), from many buyers who have used the bot
before, to the shop's webhook view: each update runs the real handler (buyer sync, catalog
read, one sendMessage) before the 200. The reference, measured interleaved in the same
gunicorn, is a plain python-telegram-bot Application with one handler doing one
send_message per update, fed the same way (bench/reference_bot.py). Neither has a rate
limiter (the fake does not limit).

Webhook rather than polling: production runs the bot by webhook in the web processes
(README, docs/bot.md), so that is the path whose throughput matters; both apps sit behind
the same gunicorn, so what differs is only what each does per update.

Prints one JSON line (figure "bot_updates_<database>"): updates/s of both and their ratio
(throughput_ratio), the gunicorn workers' CPU per update of both, and the figure, "ratio":
updates per CPU-second, shop ÷ reference, per round, and its spread (updates/s swing with how
wrk's connections spread over the workers; CPU per update does not). Refuses the result if
any request failed, any update's handler raised or the fake received fewer sendMessage calls
than updates were answered.
"""

from __future__ import annotations

import argparse
import functools
import os
import re
import secrets
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import PROXY_HEADERS, Shop, interleaved, ratio_summary, result_write, wrk  # noqa: E402
from fakes.telegram import start_fake_telegram  # noqa: E402

FIRST_USER_ID = 810_000_000
USERS_PER_THREAD = 500

LUA = """
local counter = 0
local threads = {}
function setup(thread)
  thread:set("tid", #threads)
  table.insert(threads, thread)
end
request = function()
  counter = counter + 1
  local user = %(first)d + tid * %(users)d + (counter %% %(users)d)
  local body = string.format('{"update_id":%%d,"message":{"message_id":%%d,' ..
    '"from":{"id":%%d,"is_bot":false,"first_name":"Bench","language_code":"en"},' ..
    '"chat":{"id":%%d,"type":"private","first_name":"Bench"},"date":%%d,"text":"/start",' ..
    '"entities":[{"offset":0,"length":6,"type":"bot_command"}]}}',
    tid * 100000000 + counter, counter, user, user, os.time())
  return wrk.format("POST", nil, nil, body)
end
"""

USERS_CREATE = """
from bots.models import TelegramUser
TelegramUser.objects.bulk_create(
    [TelegramUser(telegram_id=telegram_id, first_name="Bench", language_code="en")
     for telegram_id in range({first}, {first} + {count})], batch_size=500)
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--postgres", default="postgres://postgres@127.0.0.1:5432/reseller_botupd_bench")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/13")
    parser.add_argument("--quick", action="store_true", help="3 rounds of 3 s each (CI)")
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=16,
                        help="updates in flight at once (Telegram's max_connections: 40)")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers")
    args = parser.parse_args()
    seconds = 3 if args.quick else args.seconds

    fake = start_fake_telegram()
    wrk_threads = 2
    users = wrk_threads * USERS_PER_THREAD
    for telegram_id in range(FIRST_USER_ID, FIRST_USER_ID + users):
        fake.user(telegram_id, "Bench", language_code="en")
    path_secret, header_secret = secrets.token_urlsafe(16), secrets.token_urlsafe(16)
    telegram_env = {
        "TELEGRAM_BOT_TOKEN": fake.token, "TELEGRAM_API_BASE_URL": fake.base_url,
        "TELEGRAM_API_FILE_URL": f"{fake.url}/file/bot",
        "TELEGRAM_WEBHOOK_URL": "https://shop.bench.test", "TELEGRAM_WEBHOOK_PATH": path_secret,
        "TELEGRAM_WEBHOOK_SECRET": header_secret, "TELEGRAM_RATE_LIMIT": "false",
    }
    headers = {**PROXY_HEADERS, "Content-Type": "application/json",
               "X-Telegram-Bot-Api-Secret-Token": header_secret}
    with Shop(database=args.database, postgres_url=args.postgres, redis_url=args.redis,
              extra_env=telegram_env) as shop, tempfile.TemporaryDirectory() as tmp:
        shop.setup()
        shop.shell(USERS_CREATE.format(first=FIRST_USER_ID, count=users))
        script = Path(tmp) / "updates.lua"
        script.write_text(LUA % {"first": FIRST_USER_ID, "users": USERS_PER_THREAD})
        # No recycling mid-run: a fresh worker restarts its bot and its CPU count.
        base = shop.gunicorn(workers=args.workers, env={"WEB_MAX_REQUESTS": "0"})
        log = shop.tmp / "gunicorn.log"
        urls = {"shop": f"{base}/bot/webhook/{path_secret}", "reference": f"{base}/_bench/bot-webhook"}
        failures: list[str] = []

        master = shop.processes[-1].pid
        cpu: dict[str, list[float]] = {name: [] for name in urls}

        def measure(name: str, length: float) -> float:
            sent_before = len(fake.calls("sendMessage"))
            errors_before = _handler_errors(log)
            cpu_before = _children_cpu_seconds(master)
            result = wrk(urls[name], seconds=length, connections=args.connections,
                         threads=wrk_threads, headers=headers, script=str(script))
            fake.wait_for(lambda: len(fake.calls("sendMessage")) - sent_before >= result["requests"],
                          timeout=30)
            errors = _handler_errors(log) - errors_before
            cpu[name].append(round(1000 * (_children_cpu_seconds(master) - cpu_before)
                                   / max(result["requests"], 1), 2))
            if result["non_2xx"] or result["socket_errors"] or errors:
                failures.append(f"{name}: {result['non_2xx']:.0f} non-2xx, "
                                f"{result['socket_errors']:.0f} socket errors, {errors} handler errors")
            return result["rps"]

        for name in urls:  # every worker starts its bot and warms up
            measure(name, 2 if args.quick else 5)
            cpu[name].clear()
        runs = interleaved({name: functools.partial(measure, name, seconds) for name in urls},
                           rounds=3 if args.quick else args.rounds)
    fake.stop()
    if failures:
        raise SystemExit("failed requests or handlers:\n" + "\n".join(failures))
    cpu_ratios = [ref / own for own, ref in zip(cpu["shop"], cpu["reference"], strict=True) if own]
    throughput = ratio_summary(runs["shop"], runs["reference"])
    result_write(f"bot_updates_{args.database}", {
        "unit": "updates/s", "seconds": seconds, "connections": args.connections,
        "workers": args.workers, "feeding": "webhook POSTs (wrk), /start from returning buyers",
        # The figure: updates per CPU-second of the gunicorn workers, shop ÷ reference, per
        # round (reference CPU per update ÷ shop's). Updates/s alone swing by 2-3x from round
        # to round with the same code, as wrk's connections happen to land on one worker or
        # spread over both; CPU per update does not, and at saturation it sets the rate.
        "ratio": round(statistics.median(cpu_ratios), 3), "ratio_min": round(min(cpu_ratios), 3),
        "ratio_max": round(max(cpu_ratios), 3),
        "cpu_ms_per_update": cpu,
        "shop": throughput["shop"], "reference": throughput["reference"],
        "throughput_ratio": throughput["ratio"], "throughput_ratio_min": throughput["ratio_min"],
        "throughput_ratio_max": throughput["ratio_max"],
    })


def _children_cpu_seconds(pid: int) -> float:
    """CPU time (user + system) of a process's children so far, from /proc (Linux)."""
    total = 0
    tick = os.sysconf("SC_CLK_TCK")
    for task in Path(f"/proc/{pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            try:
                fields = Path(f"/proc/{child}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue  # ended meanwhile
            total += int(fields[11]) + int(fields[12])
    return total / tick


def _handler_errors(log: Path) -> int:
    """Updates whose handler raised, as the bot's error handler logged them."""
    if not log.exists():
        return 0
    return len(re.findall(r"error while handling update", log.read_text(errors="replace")))


if __name__ == "__main__":
    main()
