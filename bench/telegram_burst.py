"""A burst of buyer notices drained by a real django-q2 cluster within Telegram's flood limits.

Usage:
    .venv/bin/python bench/telegram_burst.py [--database postgres|sqlite] [--quick] [--notices N]

Sets up a shop of its own (bench/common.py, production settings) with N delivered bot orders
(default 1,000; --quick 200): most buyers get one notice, one chat in 25 gets five, so some
chats are written to faster than Telegram allows. The fake Bot API (fakes/telegram.py) runs in
this process with Telegram's flood control on (30 messages/s overall, 1/s sustained per chat,
429 with retry_after past that). A cluster of 2 workers (Redis broker on PostgreSQL, the ORM
broker on SQLite) is started and warmed up with one notice. The same-run reference: the
cluster sends N bare messages (bench/reference_tasks.py: one POST per task over a kept
connection, no database, no limiter), flood control off. Then flood control goes on, one
order_notify task per order is enqueued at once and the clock runs until the last notice
reaches the fake.

Prints one JSON figure, "telegram_burst": messages/s overall; "ratio" (what CI compares) is
that ÷ the best the shop could do in this run: Telegram's 30/s, or the reference's rate where
the machine cannot even send bare messages that fast; also the ratio to Telegram's 30/s alone,
the most messages the fake saw in any second overall and in one chat,
the shortest gap between two messages in one chat, 429s received and left unhandled (a notice
that failed on flood control; must be 0), notices sent (must be all) and the time to drain.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import Shop, result_write  # noqa: E402
from fakes.telegram import FakeTelegram, FloodLimits, SentMessage, start_fake_telegram  # noqa: E402

FIRST_CHAT = 710_000_000
WARM_CHAT = 709_999_999
REFERENCE_CHAT = 720_000_000
# One chat in BUSY_EVERY gets BUSY_NOTICES notices (a buyer with several orders delivered at once).
BUSY_EVERY = 25
BUSY_NOTICES = 5
DRAIN_TIMEOUT = 300.0

# Set-up inside the shop (manage.py shell): delivered bot orders, their buyers, and a function
# that enqueues one notice task per order. Rows are test fixtures, written directly.
SETUP = """
import uuid
from datetime import timedelta
from decimal import Decimal
from django.utils import timezone
from bots.models import TelegramUser
from orders.models import Order
from shop.models import Product

product = Product.objects.first()
chats = {chats!r}
TelegramUser.objects.bulk_create([TelegramUser(telegram_id=chat, first_name="Buyer")
                                  for chat in sorted(set(chats))])
orders = Order.objects.bulk_create([Order(
    channel="bot", product=product, product_name=product.name, package_name="Standard",
    platform="telegram", stars=500, recipient_input="@sandbox_ok", recipient_user_id="100000001",
    recipient_username="@sandbox_ok", price=Decimal("8.50"), currency="USD",
    supplier_code="sandbox", cost=Decimal("8.25"), cost_currency="USD",
    payment_method="sandbox", idempotency_key=uuid.uuid4().hex,
    expires_at=timezone.now() + timedelta(minutes=30), status="delivered",
    buyer_telegram_id=chat, reference=f"BENCH-{{n:06d}}") for n, chat in enumerate(chats)])
print(",".join(str(order.pk) for order in orders))
"""
ENQUEUE = """
from django_q.tasks import async_task
for order_id in {order_ids!r}:
    async_task("bots.tasks.order_notify", order_id, "delivered")
"""
ENQUEUE_REFERENCE = """
from django_q.tasks import async_task
for chat_id in {chats!r}:
    async_task("bench.reference_tasks.telegram_send", chat_id, "Your order was delivered.")
"""
OUTCOMES = """
import json
from django.db.models import Count
from bots.models import BuyerNotice
rows = BuyerNotice.objects.values("outcome").annotate(n=Count("id"))
flood = BuyerNotice.objects.filter(outcome="failed", error__icontains="flood").count()
print(json.dumps({{"outcomes": {{row["outcome"]: row["n"] for row in rows}}, "flood_failed": flood}}))
"""


def chats_for(notices: int, busy_every: int = BUSY_EVERY) -> list[int]:
    """One chat per notice, except every busy_every-th chat (0: none), which gets BUSY_NOTICES;
    shuffled."""
    chats: list[int] = []
    chat = FIRST_CHAT
    while len(chats) < notices:
        busy = busy_every and (chat - FIRST_CHAT) % busy_every == 0
        count = BUSY_NOTICES if busy else 1
        chats += [chat] * min(count, notices - len(chats))
        chat += 1
    random.Random(11).shuffle(chats)
    return chats


def most_in_a_second(times: list[float], jitter: float) -> int:
    """The most arrivals within any second, those up to `jitter` early counted as on time."""
    times = sorted(times)
    most, start = 0, 0
    for end, at in enumerate(times):
        while at - times[start] >= 1.0 - jitter:
            start += 1
        most = max(most, end - start + 1)
    return most


def chat_figures(sent: list[SentMessage], jitter: float) -> tuple[int, float | None]:
    """The most messages in one chat within a second, and the shortest gap in one chat."""
    by_chat: dict[str, list[float]] = {}
    for message in sent:
        by_chat.setdefault(message.chat_id, []).append(message.at)
    most, gap = 0, None
    for times in by_chat.values():
        most = max(most, most_in_a_second(times, jitter))
        times.sort()
        for earlier, later in zip(times, times[1:], strict=False):
            gap = later - earlier if gap is None else min(gap, later - earlier)
    return most, gap


def wait_for_messages(fake: FakeTelegram, count: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while len(fake.flood_sent()) < count:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def wait_for_calls(fake: FakeTelegram, chats: list[int], timeout: float) -> bool:
    wanted, deadline = set(chats), time.monotonic() + timeout
    while True:
        seen = {int(call.params["chat_id"]) for call in fake.calls("sendMessage")}
        if wanted <= seen:
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)


def rate(times: list[float]) -> float:
    """Messages a second between the first and the last."""
    return (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 else 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database", choices=["postgres", "sqlite"], default="postgres")
    parser.add_argument("--quick", action="store_true", help="200 notices (CI)")
    parser.add_argument("--notices", type=int, default=None)
    parser.add_argument("--workers", type=int, default=2, help="django-q2 workers")
    parser.add_argument("--busy-every", type=int, default=BUSY_EVERY,
                        help=f"one chat in this many gets {BUSY_NOTICES} notices (0: none)")
    parser.add_argument("--postgres-url", default="postgres://postgres@127.0.0.1:5432/reseller_bench")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/13")
    parser.add_argument("--conn-max-age", type=int, default=None,
                        help="PostgreSQL: keep connections this long (default: the shop's setting)")
    parser.add_argument("--telegram-rate", type=float, default=None,
                        help="the fake's overall limit, messages/s (default 30, as Telegram); "
                             "set it below the shop's 30/s to see 429s waited out")
    args = parser.parse_args()
    notices = args.notices or (200 if args.quick else 1000)

    limits = FloodLimits()
    if args.telegram_rate:
        limits = FloodLimits(overall_per_second=args.telegram_rate,
                             overall_burst=max(1, int(args.telegram_rate)))
    fake = start_fake_telegram()  # flood control goes on for the notices only
    chats = chats_for(notices, args.busy_every)
    reference_chats = [REFERENCE_CHAT + n for n in range(notices)]
    for chat in {*chats, WARM_CHAT, *reference_chats}:
        fake.user(chat)
    telegram = {"TELEGRAM_BOT_TOKEN": fake.token, "TELEGRAM_API_BASE_URL": fake.base_url,
                "TELEGRAM_API_FILE_URL": f"{fake.url}/file/bot", "Q_WORKERS": str(args.workers)}
    if args.conn_max_age is not None and args.database == "postgres":
        telegram["DATABASE_URL"] = f"{args.postgres_url}?conn_max_age={args.conn_max_age}"
    try:
        with Shop(database=args.database, postgres_url=args.postgres_url,
                  redis_url=args.redis_url, extra_env=telegram) as shop:
            shop.manage("migrate", "--no-input")
            shop.manage("createcachetable")
            shop.shell("from shop.demo import demo_catalog_load; demo_catalog_load()")
            printed = shop.shell(SETUP.format(chats=[WARM_CHAT, *chats]))
            warm_id, *order_ids = (int(pk) for pk in printed.strip().splitlines()[-1].split(","))
            shop.qcluster()
            shop.shell(ENQUEUE.format(order_ids=[warm_id]))
            if not wait_for_calls(fake, [WARM_CHAT], 60):
                raise SystemExit("the cluster did not send the warm-up notice:\n"
                                 + (shop.tmp / "qcluster.log").read_text(errors="replace")[-3000:])
            # The reference: the same cluster sends as many bare messages, flood control off.
            reference_started = time.monotonic()
            shop.shell(ENQUEUE_REFERENCE.format(chats=reference_chats))
            if not wait_for_calls(fake, reference_chats, DRAIN_TIMEOUT):
                raise SystemExit("the reference tasks did not drain")
            reference = sorted(call.at for call in fake.calls("sendMessage")
                               if call.at >= reference_started
                               and int(call.params["chat_id"]) >= REFERENCE_CHAT)
            fake.flood_control(limits)
            started = time.monotonic()
            shop.shell(ENQUEUE.format(order_ids=order_ids))
            drained = wait_for_messages(fake, notices, DRAIN_TIMEOUT)
            time.sleep(0.5)  # anything still in flight lands, so it is counted
            outcomes = json.loads(shop.shell(OUTCOMES.format()).strip().splitlines()[-1])
    finally:
        fake.stop()

    sent = fake.flood_sent()
    times = sorted(message.at for message in sent)
    refused = fake.flood_refused()
    drain = (times[-1] - started) if times else None
    shop_rate, reference_rate = rate(times), rate(reference)
    # What the shop could reach at best: Telegram's limit, or the cluster's bare send rate
    # where that is lower (a slow or busy machine).
    ceiling = min(limits.overall_per_second, reference_rate) if reference_rate else 0.0
    per_chat, gap = chat_figures(sent, limits.jitter)
    unhandled = outcomes["flood_failed"]
    result_write("telegram_burst", {
        "database": args.database, "workers": args.workers, "notices": notices,
        "conn_max_age": args.conn_max_age,
        "chats": len(set(chats)), "busy_every": args.busy_every, "drained": drained,
        "ratio": round(shop_rate / ceiling, 3) if ceiling else None,
        "messages_per_second": round(shop_rate, 2),
        "ratio_to_telegram_limit": round(shop_rate / limits.overall_per_second, 3),
        "reference_messages_per_second": round(reference_rate, 2),
        "max_overall_in_a_second": most_in_a_second(times, limits.jitter),
        "max_per_chat_in_a_second": per_chat,
        "min_gap_in_a_chat_seconds": round(gap, 3) if gap is not None else None,
        "telegram_429s": len(refused), "unhandled_429s": unhandled,
        "notices_sent": len(sent), "notice_outcomes_with_warm_up": outcomes["outcomes"],
        "drain_seconds": round(drain, 2) if drain is not None else None,
        "fake_limits": {"overall_per_second": limits.overall_per_second,
                        "overall_burst": limits.overall_burst,
                        "chat_per_second": limits.chat_per_second, "chat_burst": limits.chat_burst,
                        "jitter": limits.jitter},
    })
    if not drained or unhandled or len(sent) != notices:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
