"""stock.tasks: the alert through the fake Bot API, sent once whatever re-runs it; the balance job."""

from __future__ import annotations

from decimal import Decimal

import pytest
from telegram.error import NetworkError

from stock import tasks
from stock.models import BalanceAlert, BalanceReading
from stock.tests.conftest import OPERATORS_CHAT

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def alert(db) -> BalanceAlert:
    reading = BalanceReading.objects.create(supplier_code="sandbox", amount=Decimal("12.30"),
                                            currency="USD", spent_in_window=Decimal("24.60"))
    return BalanceAlert.objects.create(supplier_code="sandbox", kind=BalanceAlert.Kind.LOW,
                                       reading=reading, amount=Decimal("12.30"), currency="USD",
                                       threshold=Decimal("50.00"), hours_left=Decimal("12.0"))


def test_an_alert_is_sent_once_however_often_its_task_runs(operators_chat, alert):
    assert tasks.balance_alert_send(alert.pk) == "sent"
    assert tasks.balance_alert_send(alert.pk) == "skipped"
    sent = operators_chat.calls("sendMessage")
    assert len(sent) == 1 and int(sent[0].params["chat_id"]) == OPERATORS_CHAT
    text = operators_chat.last_bot_message(OPERATORS_CHAT).text
    assert text.startswith("⚠️ Supplier sandbox balance is low: 12.30 USD, under the threshold "
                           "of 50.00 USD. About 12.0 hours of sales left at the recent rate.")
    assert "Checked at 20" in text
    alert.refresh_from_db()
    assert (alert.outcome, alert.message_id) == ("sent", operators_chat.last_bot_message(OPERATORS_CHAT).message_id)


def test_a_chat_the_bot_cannot_write_to_fails_the_alert_for_good(operators_chat, alert, settings):
    settings.OPERATORS_CHAT_ID = "-100999"  # the bot is not in this group
    assert tasks.balance_alert_send(alert.pk) == "failed"
    alert.refresh_from_db()
    assert alert.outcome == "failed"
    assert alert.error == "Forbidden: bot can't initiate conversation with a user"
    assert tasks.balance_alert_send(alert.pk) == "failed"  # claimed again: still refused


def test_network_trouble_fails_the_task_and_a_rerun_sends(operators_chat, alert, settings,
                                                          monkeypatch):
    monkeypatch.setattr("bots.tasks.SEND_RETRY_SECONDS", 0.01)
    settings.TELEGRAM_API_BASE_URL = "http://127.0.0.1:9/bot"  # nothing listens there
    with pytest.raises(NetworkError):
        tasks.balance_alert_send(alert.pk)
    alert.refresh_from_db()
    assert alert.outcome == "failed"
    settings.TELEGRAM_API_BASE_URL = operators_chat.base_url
    assert tasks.balance_alert_send(alert.pk) == "sent"
    assert len(operators_chat.bot_messages(OPERATORS_CHAT)) == 1


def test_flood_control_is_waited_out(operators_chat, alert):
    operators_chat.fail_next("sendMessage", error_code=429, retry_after=1)
    assert tasks.balance_alert_send(alert.pk) == "sent"
    assert len(operators_chat.bot_messages(OPERATORS_CHAT)) == 1


@pytest.mark.parametrize("unset", ["OPERATORS_CHAT_ID", "TELEGRAM_BOT_TOKEN"])
def test_nothing_is_sent_without_a_chat_or_a_token(operators_chat, alert, settings, unset):
    setattr(settings, unset, "")
    assert tasks.balance_alert_send(alert.pk) == "skipped"
    alert.refresh_from_db()
    assert alert.outcome == "skipped"
    assert operators_chat.calls("sendMessage") == []


def test_the_restored_message(alert):
    alert.kind = BalanceAlert.Kind.RESTORED
    alert.amount = Decimal("120.00")
    assert tasks.alert_text(alert).startswith(
        "✅ Supplier sandbox balance restored: 120.00 USD (threshold 50.00 USD).")


def test_the_balance_job_reports_a_failed_read_without_failing(supplier, settings):
    settings.SUPPLIER_API_KEY = "wrong"
    summary = tasks.balance_check()
    assert summary["ok"] is False and summary["error"] == "unauthorized"
    settings.SUPPLIER_API_KEY = supplier.api_key
    assert tasks.balance_check()["amount"] == "1000.00"
