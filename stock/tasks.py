"""django-q2 tasks of the supplier-account watch: thin wrappers over stock.services.

balance_check runs every SUPPLIER_BALANCE_CHECK_MINUTES and at cluster start; reconcile_yesterday
daily (orders/schedules.py); balance_alert_send after a reading crossed the threshold.
"""

from __future__ import annotations

import logging
from datetime import date, timedelta
from typing import Any

from django.utils import formats, timezone
from django.utils.translation import gettext
from telegram.error import BadRequest, Forbidden, TelegramError

from bots.tasks import message_send
from stock import services
from stock.models import BalanceAlert

logger = logging.getLogger(__name__)

# Connection errors and timeouts are tried this many times, 1 s apart, then 2 s; a 429 is
# waited out by the rate limiter (as bots.tasks does for buyers' notices).


def balance_check() -> dict[str, Any]:
    """Read and record the supplier balance (a supplier error is recorded, not raised)."""
    reading = services.balance_check()
    return {"reading": reading.pk, "ok": reading.ok, "amount": str(reading.amount),
            "error": reading.error_code}


def reconcile_yesterday() -> dict[str, Any]:
    """Reconcile yesterday (in TIME_ZONE) against the supplier's list."""
    return reconcile(str(timezone.localdate() - timedelta(days=1)))


def reconcile(day: str) -> dict[str, Any]:
    """Reconcile one day, given as YYYY-MM-DD; safe to run again."""
    result = services.reconcile_day(day=date.fromisoformat(day))
    return {"day": day, "supplier_orders": result.supplier_orders,
            "our_orders": result.our_orders, "mismatches": len(result.found), "new": result.new}


def balance_alert_send(alert_id: int) -> str:
    """Tell the operators' Telegram chat about a low or restored balance; sends once."""
    claim = services.balance_alert_claim(alert_id=alert_id)
    if claim is None:
        return "skipped"
    text = alert_text(claim.alert)
    try:
        message_id = message_send(_chat(claim.chat_id), text, what="balance alert")
    except (BadRequest, Forbidden) as exc:
        # Chat not found, the bot not in the group or removed from it: sending the same
        # request again cannot help; the alert stays on the admin home and in its list.
        logger.warning("balance alert %s refused: %s", alert_id, exc.message)
        services.balance_alert_record(alert_id=alert_id, outcome=BalanceAlert.Outcome.FAILED,
                                      error=exc.message)
        return "failed"
    except TelegramError as exc:
        # Network trouble, flood control beyond the limiter's retries: recorded, and the task
        # fails so the queue shows it; running it again sends the alert.
        services.balance_alert_record(alert_id=alert_id, outcome=BalanceAlert.Outcome.FAILED,
                                      error=str(exc))
        raise
    services.balance_alert_record(alert_id=alert_id, outcome=BalanceAlert.Outcome.SENT,
                                  message_id=message_id)
    return "sent"


def alert_text(alert: BalanceAlert) -> str:
    """The operators' message for an alert, in the site's language."""
    values = {
        "supplier": alert.supplier_code, "amount": alert.amount, "currency": alert.currency,
        "threshold": alert.threshold,
        "checked_at": formats.date_format(timezone.localtime(
            alert.reading.checked_at if alert.reading else alert.created_at), "Y-m-d H:i:s T"),
    }
    if alert.kind == BalanceAlert.Kind.LOW:
        text = gettext("⚠️ Supplier %(supplier)s balance is low: %(amount)s %(currency)s, under "
                       "the threshold of %(threshold)s %(currency)s.") % values
        if alert.hours_left is not None:
            text += " " + gettext("About %(hours)s hours of sales left at the recent rate.") % {
                "hours": alert.hours_left}
        text += " " + gettext("Top up the supplier wallet; orders wait on hold meanwhile.")
    else:
        text = gettext("✅ Supplier %(supplier)s balance restored: %(amount)s %(currency)s "
                       "(threshold %(threshold)s %(currency)s).") % values
    return text + " " + gettext("Checked at %(checked_at)s.") % values


def _chat(chat_id: str) -> int | str:
    """OPERATORS_CHAT_ID as the Bot API takes it: a numeric ID, or an @channel name."""
    return int(chat_id) if chat_id.lstrip("-").isdigit() else chat_id
