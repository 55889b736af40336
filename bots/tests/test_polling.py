"""Long polling: updates fetched with getUpdates from the fake Bot API, and `manage.py runbot` itself."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import CommandError, call_command

from bots.application import ALLOWED_UPDATES, application_build
from orders.tests.clusters import database_env

pytestmark = pytest.mark.django_db(transaction=True)

ROOT = Path(settings.BASE_DIR)


async def _until(predicate, timeout: float = 10.0) -> None:
    for _ in range(int(timeout / 0.02)):
        if predicate():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("timed out waiting for the bot")


def test_updates_from_get_updates_are_handled(bot_settings, catalog):
    fake = bot_settings
    ann, ben = fake.user(700000001, "Ann"), fake.user(700000002, "Ben")

    async def scenario() -> None:
        application = application_build(polling=True)
        async with application:
            assert application.updater is not None
            await application.updater.start_polling(poll_interval=0, timeout=1,
                                                    allowed_updates=ALLOWED_UPDATES)
            await application.start()
            fake.push_update(ann.text("/start"))
            fake.push_update(ben.text("/buy"))
            await _until(lambda: fake.bot_messages(ann.id) and fake.bot_messages(ben.id))
            fake.push_update(ben.tap("⭐ 50 · $1.00"))
            await _until(lambda: "Who should get them?" in (fake.last_bot_message(ben.id).text or ""))
            await application.updater.stop()
            await application.stop()

    asyncio.run(scenario())
    assert fake.last_bot_message(ann.id).text.startswith("Hi, Ann!")
    assert not fake.unanswered_queries()
    assert fake.calls("getUpdates")[0].params["allowed_updates"] == ALLOWED_UPDATES


def test_runbot_needs_a_token(settings):
    settings.TELEGRAM_BOT_TOKEN = ""
    with pytest.raises(CommandError, match="TELEGRAM_BOT_TOKEN"):
        call_command("runbot")


def test_runbot_polls_answers_and_stops_on_sigterm(bot_settings, catalog, tmp_path):
    fake = bot_settings
    user = fake.user(700000003, "Cleo")
    env = {**os.environ, **database_env(), "TELEGRAM_BOT_TOKEN": fake.token,
           "TELEGRAM_API_BASE_URL": fake.base_url, "LOG_LEVEL": "WARNING"}
    log = tmp_path / "runbot.log"
    with open(log, "wb") as output:
        process = subprocess.Popen([sys.executable, "manage.py", "runbot"], cwd=ROOT, env=env,
                                   stdout=output, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        fake.wait_for(lambda: fake.calls("getUpdates"), timeout=20)
        fake.push_update(user.text("/start"))
        fake.wait_for(lambda: fake.bot_messages(user.id), timeout=10)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            code = process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            raise
    output_text = log.read_text(errors="replace")
    assert code == 0, output_text
    assert fake.last_bot_message(user.id).text.startswith("Hi, Cleo!")
    assert fake.calls("deleteWebhook"), "polling starts by removing any webhook"
    assert fake.commands("ru"), "the command menu is registered on start"
    assert fake.token not in output_text, "the token must not reach the logs"
