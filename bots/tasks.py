"""django-q2 tasks of the bot: telling buyers how their order ended.

order_transition enqueues order_notify on commit of a move to delivered, refund_pending or
refunded (settings.ORDER_NOTICE_TASKS), so the notice reaches buyers whatever process runs
the bot, or none. A notice row per order and status makes a re-run harmless.
"""

from __future__ import annotations

import logging
import time

from django.conf import settings
from django.utils import translation
from telegram.error import BadRequest, Forbidden, NetworkError, TelegramError

from bots import messages, services
from bots.models import BuyerNotice
from bots.outgoing import outgoing_bot
from reseller.logging import order_task

logger = logging.getLogger(__name__)

# Connection errors and timeouts are tried this many times in the task, 1 s apart, then 2 s;
# a 429 is waited out by the rate limiter.
SEND_ATTEMPTS = 3
SEND_RETRY_SECONDS = 1.0


@order_task
def order_notify(order_id: int, status: str, resend: int | None = None) -> str:
    """Tell the buyer on Telegram that their order reached `status`; running it twice sends once.

    `resend`: an operator's resend note; the notice goes out once more for it.
    """
    if not settings.TELEGRAM_BOT_TOKEN:
        return "disabled"
    claim = services.notice_claim(order_id=order_id, status=status, resend=resend)
    if claim is None:
        return "skipped"
    with translation.override(claim.language):
        text = messages.notice_text(claim.order)
    try:
        message_id = message_send(claim.chat_id, text)
    except Forbidden as exc:
        # Blocked the bot (or deleted their account): mark them so nobody tries again.
        logger.info("order %s: buyer %s blocked the bot: %s", order_id, claim.chat_id, exc.message)
        services.buyer_reachability_set(telegram_id=claim.chat_id, blocked=True)
        services.notice_record(notice_id=claim.notice_id, outcome=BuyerNotice.Outcome.BLOCKED,
                               error=exc.message)
        return "blocked"
    except BadRequest as exc:
        # Chat not found and the like: sending the same request again cannot help.
        logger.warning("order %s: notice to %s refused: %s", order_id, claim.chat_id, exc.message)
        services.notice_record(notice_id=claim.notice_id, outcome=BuyerNotice.Outcome.FAILED,
                               error=exc.message)
        return "failed"
    except TelegramError as exc:
        # Network trouble or rate limit beyond our retries: recorded, and the task fails so
        # the queue shows it; running it again sends the notice.
        services.notice_record(notice_id=claim.notice_id, outcome=BuyerNotice.Outcome.FAILED,
                               error=str(exc))
        raise
    services.notice_record(notice_id=claim.notice_id, outcome=BuyerNotice.Outcome.SENT,
                           message_id=message_id)
    return "sent"


def message_send(chat_id: int | str, text: str, *, what: str = "notice") -> int:
    """Send one message through the Bot API, rate limited; returns its message ID.

    Sent by this process's kept bot (bots.outgoing). Connection errors are retried
    (SEND_ATTEMPTS, SEND_RETRY_SECONDS apart, growing); a 429 is waited out by the shared rate
    limiter (every process pauses); a refusal (BadRequest, Forbidden) is raised at once.
    Buyer notices and operator alerts both send through here.
    """
    for attempt in range(1, SEND_ATTEMPTS + 1):
        try:
            message = outgoing_bot.run(lambda bot: bot.send_message(chat_id, text))
            return message.message_id
        except BadRequest:
            raise
        except NetworkError as exc:
            if attempt == SEND_ATTEMPTS:
                raise
            logger.info("%s to %s: %s, retrying", what, chat_id, exc)
            time.sleep(attempt * SEND_RETRY_SECONDS)
    raise AssertionError("unreachable")
