"""bots.tasks.order_notify: the buyer's notice through the fake Bot API, once, and never to a blocked chat."""

from __future__ import annotations

import uuid
from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone
from telegram.error import NetworkError

from bots.models import BuyerNotice, TelegramUser
from bots.tasks import order_notify
from fakes.telegram import FloodLimits
from orders.models import Order
from orders.models import OrderStatus as S

pytestmark = pytest.mark.django_db(transaction=True)

BUYER = 500000001


@pytest.fixture
def make_order(catalog):
    """An order row in a given status (set-up only; the code under test uses services)."""

    def make(status: str = S.DELIVERED, *, channel: str = "bot", buyer: int | None = BUYER) -> Order:
        order = Order.objects.create(
            channel=channel, product=catalog, product_name=catalog.name, package_name="Standard",
            platform="telegram", stars=500, recipient_input="@sandbox_ok",
            recipient_user_id="100000001", recipient_username="@sandbox_ok",
            price=Decimal("8.50"), currency="USD", supplier_code="sandbox", cost=Decimal("8.25"),
            cost_currency="USD", payment_method="sandbox", idempotency_key=uuid.uuid4().hex,
            expires_at=timezone.now() + timedelta(minutes=30), status=status,
            buyer_telegram_id=buyer,
        )
        order.reference = f"ORD-{order.pk:06d}"
        order.save(update_fields=["reference"])
        return order

    return make


@pytest.fixture
def buyer(bot_settings):
    """A buyer who has talked to the bot."""
    TelegramUser.objects.create(telegram_id=BUYER, first_name="Dana")
    return bot_settings.user(BUYER, "Dana")


def test_delivered_notice_is_sent_once(bot_settings, buyer, make_order):
    order = make_order()
    assert order_notify(order.pk, S.DELIVERED) == "sent"
    assert order_notify(order.pk, S.DELIVERED) == "skipped"
    sent = bot_settings.calls("sendMessage")
    assert len(sent) == 1 and sent[0].params["chat_id"] == BUYER
    assert bot_settings.last_bot_message(BUYER).text.startswith(
        f"✅ 500 Stars sent to @sandbox_ok. Order #{order.reference}")
    notice = BuyerNotice.objects.get()
    assert (notice.outcome, notice.message_id) == ("sent", bot_settings.last_bot_message(BUYER).message_id)


def test_blocked_buyer_is_marked_and_not_tried_again(bot_settings, buyer, make_order):
    bot_settings.block(BUYER)
    delivered, refunded = make_order(), make_order(S.REFUNDED)
    assert order_notify(delivered.pk, S.DELIVERED) == "blocked"
    user = TelegramUser.objects.get(telegram_id=BUYER)
    assert user.blocked_at is not None
    notice = BuyerNotice.objects.get(order=delivered)
    assert (notice.outcome, notice.error) == ("blocked", "Forbidden: bot was blocked by the user")
    attempts = len(bot_settings.calls("sendMessage"))
    # Neither a re-run nor the buyer's next notice knocks again.
    assert order_notify(delivered.pk, S.DELIVERED) == "skipped"
    assert order_notify(refunded.pk, S.REFUNDED) == "skipped"
    assert BuyerNotice.objects.get(order=refunded).outcome == "blocked"
    assert len(bot_settings.calls("sendMessage")) == attempts == 1


def test_flood_control_is_waited_out(bot_settings, buyer, make_order):
    bot_settings.fail_next("sendMessage", error_code=429, retry_after=1)
    order = make_order()
    assert order_notify(order.pk, S.DELIVERED) == "sent"
    first, second = bot_settings.calls("sendMessage")
    assert second.at - first.at >= 1.0
    assert len(bot_settings.bot_messages(BUYER)) == 1


def test_notices_to_one_buyer_keep_to_one_a_second(bot_settings, buyer, make_order):
    """Telegram's flood control on: three notices in a row go out a second apart, none refused.

    Without the spacing the third would be refused (a burst of two is tolerated); measured
    first to last, as one request may be held up between its reservation and the fake.
    """
    bot_settings.flood_control(FloodLimits(chat_burst=2))
    orders = [make_order() for _ in range(3)]
    assert [order_notify(order.pk, S.DELIVERED) for order in orders] == ["sent"] * 3
    assert bot_settings.flood_refused() == []
    sent = [message.at for message in bot_settings.flood_sent()]
    assert len(sent) == 3
    assert sent[-1] - sent[0] >= 2.0 - 2 * FloodLimits().jitter


def test_the_process_keeps_its_bot_between_notices(bot_settings, buyer, make_order):
    """One getMe for any number of notices: the bot and its connections are kept (bots.outgoing)."""
    for order in [make_order() for _ in range(3)]:
        assert order_notify(order.pk, S.DELIVERED) == "sent"
    assert len(bot_settings.calls("sendMessage")) == 3
    assert len(bot_settings.calls("getMe")) == 1


def test_network_failure_fails_the_task_and_a_rerun_sends(bot_settings, buyer, make_order, settings,
                                                           monkeypatch):
    monkeypatch.setattr("bots.tasks.SEND_RETRY_SECONDS", 0.01)
    order = make_order()
    settings.TELEGRAM_API_BASE_URL = "http://127.0.0.1:9/bot"  # nothing listens there
    with pytest.raises(NetworkError):
        order_notify(order.pk, S.DELIVERED)
    assert BuyerNotice.objects.get().outcome == "failed"
    settings.TELEGRAM_API_BASE_URL = bot_settings.base_url
    assert order_notify(order.pk, S.DELIVERED) == "sent"
    assert BuyerNotice.objects.get().outcome == "sent"


def test_superseded_and_foreign_notices_are_skipped(bot_settings, buyer, make_order):
    refunded = make_order(S.REFUNDED)
    assert order_notify(refunded.pk, S.REFUND_PENDING) == "skipped"  # "refunded" says it all
    assert order_notify(make_order(channel="web", buyer=None).pk, S.DELIVERED) == "skipped"
    assert order_notify(987654, S.DELIVERED) == "skipped"
    assert not bot_settings.calls("sendMessage")


def test_a_buyer_who_unblocks_the_bot_is_reachable_again(bot, make_order):
    async def scenario(session):
        chat = session.chat(BUYER, "Dana")
        await session.feed(chat.user.my_chat_member("kicked"))
        assert await _blocked()
        await session.feed(chat.user.my_chat_member("member"))
        assert not await _blocked()
        await session.feed(chat.user.my_chat_member("kicked"))
        await chat.send("/start")  # writing to the bot again means it is unblocked
        assert not await _blocked()

    from asgiref.sync import sync_to_async

    async def _blocked() -> bool:
        return await sync_to_async(
            lambda: TelegramUser.objects.get(telegram_id=BUYER).blocked_at is not None)()

    bot.run(scenario)
    assert order_notify(make_order().pk, S.DELIVERED) == "sent"


def test_notify_is_off_without_a_token(settings, make_order):
    settings.TELEGRAM_BOT_TOKEN = ""
    assert order_notify(make_order().pk, S.DELIVERED) == "disabled"

