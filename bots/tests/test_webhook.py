"""Webhook mode: the Django view checks path and secret, the per-process runtime runs the handlers."""

from __future__ import annotations

import json

import pytest
from django.core.management import CommandError, call_command
from django.urls import reverse

from bots.application import ALLOWED_UPDATES
from bots.runtime import webhook_runtime

pytestmark = pytest.mark.django_db(transaction=True)

PATH_SECRET = "p4th-s3cret-9f8e7d"
HEADER_SECRET = "h3ader_secret-0a1b2c"


@pytest.fixture
def webhook_settings(settings, bot_settings, catalog, stop_webhook_runtime):
    settings.TELEGRAM_WEBHOOK_PATH = PATH_SECRET
    settings.TELEGRAM_WEBHOOK_SECRET = HEADER_SECRET
    settings.TELEGRAM_WEBHOOK_URL = "https://shop.example.com"
    return bot_settings


def _post(client, update, *, secret: str | None = HEADER_SECRET, path: str = PATH_SECRET,
          body: str | None = None):
    headers = {"X-Telegram-Bot-Api-Secret-Token": secret} if secret is not None else {}
    return client.post(reverse("bots:webhook", args=[path]),
                       body if body is not None else json.dumps(update),
                       content_type="application/json", headers=headers)


def test_webhook_refuses_requests_without_the_secret_and_serves_telegram(client, webhook_settings):
    fake = webhook_settings
    user = fake.user(600000001, "Eve", language_code="en")
    start = user.text("/start")
    assert _post(client, start, secret=None).status_code == 403
    assert _post(client, start, secret="h3ader_secret-0a1b2X").status_code == 403
    assert _post(client, start, path="p4th-s3cret-9f8e7X").status_code == 404
    assert _post(client, start, path="p4th-s3cret-9f8e7X", secret=None).status_code == 404
    assert _post(client, start, body="{not json").status_code == 400
    assert _post(client, start, body="[1, 2]").status_code == 400
    assert _post(client, start, body='{"update_id": "1"}').status_code == 400
    assert client.get(reverse("bots:webhook", args=[PATH_SECRET])).status_code == 405
    assert not fake.calls(), "nothing reached the bot"

    assert _post(client, start).status_code == 200
    assert fake.last_bot_message(user.id).text.startswith("Hi, Eve! ⭐")
    assert _post(client, user.text("/buy")).status_code == 200
    assert _post(client, user.tap("⭐ 500 · $8.50")).status_code == 200
    assert fake.last_bot_message(user.id).text == "500 Stars for $8.50.\n\nWho should get them?"
    assert not fake.unanswered_queries()
    sent = len(fake.calls())
    # Updates the bot has no handler for, or cannot even read, are acknowledged and dropped:
    # an error answer would make Telegram send them again and again.
    edited = {**user.text("/buy"), "edited_message": user.text("/buy")["message"]}
    del edited["message"]
    assert _post(client, edited).status_code == 200
    assert _post(client, {"update_id": 99, "poll": {"id": "1"}}).status_code == 200
    assert len(fake.calls()) == sent


def test_webhook_is_off_until_configured(client, settings, bot_settings):
    settings.TELEGRAM_WEBHOOK_PATH = PATH_SECRET
    settings.TELEGRAM_WEBHOOK_SECRET = ""
    assert _post(client, {"update_id": 1}).status_code == 404
    settings.TELEGRAM_WEBHOOK_SECRET = HEADER_SECRET
    settings.TELEGRAM_BOT_TOKEN = ""
    assert _post(client, {"update_id": 1}).status_code == 404


def test_webhook_answers_503_while_telegram_is_unreachable(client, webhook_settings, settings):
    settings.TELEGRAM_API_BASE_URL = "http://127.0.0.1:9/bot"
    assert _post(client, {"update_id": 1}).status_code == 503


def test_one_runtime_per_process(webhook_settings):
    runtime = webhook_runtime()
    assert webhook_runtime() is runtime and runtime.alive
    assert len(webhook_settings.calls("getMe")) == 1


def test_setwebhook_registers_url_secret_updates_and_commands(webhook_settings, client):
    fake = webhook_settings
    call_command("setwebhook")
    url = f"https://shop.example.com/bot/webhook/{PATH_SECRET}"
    assert fake.webhook == {"url": url, "secret_token": HEADER_SECRET,
                            "allowed_updates": ALLOWED_UPDATES}
    assert [c["command"] for c in fake.commands()] == ["buy", "orders", "cancel", "language", "help"]
    assert fake.commands()[0]["description"] == "Buy Stars"
    assert fake.commands("ru")[0]["description"] == "Купить звёзды"
    # What Telegram then sends to that URL, with that secret, is served.
    user = fake.user(600000002, "Finn")
    path = url.rsplit("/", 1)[1]
    assert _post(client, user.text("/help"), secret=fake.webhook["secret_token"], path=path).status_code == 200
    assert fake.last_bot_message(user.id).text.startswith("How it works:")

    call_command("setwebhook", "--delete")
    assert fake.webhook == {}


def test_setwebhook_needs_its_settings(settings, bot_settings):
    settings.TELEGRAM_WEBHOOK_URL = ""
    with pytest.raises(CommandError, match="TELEGRAM_WEBHOOK_URL"):
        call_command("setwebhook")
