"""The fake Bot API's wire behaviour, over real HTTP on 127.0.0.1, as Telegram answers."""

from __future__ import annotations

import json

import requests

from fakes.telegram import DEFAULT_TOKEN

TIMEOUT = 5.0


def call(fake, method: str, *, token: str = DEFAULT_TOKEN, **params):
    """POST a method form-encoded, as python-telegram-bot does (non-strings JSON-encoded)."""
    form = {name: value if isinstance(value, str) else json.dumps(value)
            for name, value in params.items()}
    return requests.post(f"{fake.url}/bot{token}/{method}", data=form, timeout=TIMEOUT)


def test_get_me_and_errors_in_the_bot_api_shape(fake_telegram):
    me = call(fake_telegram, "getMe").json()
    assert me["ok"] and me["result"]["is_bot"] and me["result"]["username"]
    assert call(fake_telegram, "getMe", token="1:wrong").json() == {
        "ok": False, "error_code": 401, "description": "Unauthorized"}
    assert call(fake_telegram, "sendDice").status_code == 404


def test_messages_edits_and_what_telegram_refuses(fake_telegram):
    user = fake_telegram.user(42, "Ann")
    keyboard = {"inline_keyboard": [[{"text": "Go", "callback_data": "go"}]]}
    sent = call(fake_telegram, "sendMessage", chat_id=42, text="Hello", reply_markup=keyboard).json()
    message_id = sent["result"]["message_id"]
    assert fake_telegram.last_bot_message(42).button_texts == ["Go"]
    assert call(fake_telegram, "sendMessage", chat_id=42, text="").json()["description"] == (
        "Bad Request: message text is empty")
    assert call(fake_telegram, "sendMessage", chat_id=42, text="x" * 4097).status_code == 400
    too_long = {"inline_keyboard": [[{"text": "Go", "callback_data": "x" * 65}]]}
    assert call(fake_telegram, "sendMessage", chat_id=42, text="Hi", reply_markup=too_long).json()[
        "description"] == "Bad Request: BUTTON_DATA_INVALID"
    assert call(fake_telegram, "sendMessage", chat_id=43, text="Hi").status_code == 403
    edit = {"chat_id": 42, "message_id": message_id, "text": "Hello", "reply_markup": keyboard}
    assert "message is not modified" in call(fake_telegram, "editMessageText", **edit).json()["description"]
    assert call(fake_telegram, "editMessageText", **{**edit, "text": "Bye"}).json()["result"]["text"] == "Bye"
    assert fake_telegram.last_bot_message(42).text == "Bye"
    assert call(fake_telegram, "editMessageText", **{**edit, "message_id": 999}).status_code == 400
    user.text("mine")
    mine = fake_telegram.messages(42)[-1].message_id
    assert call(fake_telegram, "editMessageText", **{**edit, "message_id": mine}).json()[
        "description"] == "Bad Request: message can't be edited"


def test_callback_queries_are_answered_once(fake_telegram):
    user = fake_telegram.user(42, "Ann")
    call(fake_telegram, "sendMessage", chat_id=42, text="Pick",
         reply_markup={"inline_keyboard": [[{"text": "A", "callback_data": "a"}]]})
    update = user.tap("A")
    query_id = update["callback_query"]["id"]
    assert update["callback_query"]["data"] == "a"
    assert fake_telegram.unanswered_queries() == [query_id]
    assert call(fake_telegram, "answerCallbackQuery", callback_query_id=query_id, text="ok").json()["ok"]
    assert fake_telegram.answered(query_id)["text"] == "ok"
    assert call(fake_telegram, "answerCallbackQuery", callback_query_id=query_id).status_code == 400
    assert call(fake_telegram, "answerCallbackQuery", callback_query_id="made-up").status_code == 400


def test_blocked_chats_and_flood_control(fake_telegram):
    fake_telegram.user(42, "Ann")
    fake_telegram.block(42)
    assert call(fake_telegram, "sendMessage", chat_id=42, text="Hi").json() == {
        "ok": False, "error_code": 403, "description": "Forbidden: bot was blocked by the user"}
    fake_telegram.unblock(42)
    fake_telegram.fail_next("sendMessage", retry_after=3)
    assert call(fake_telegram, "sendMessage", chat_id=42, text="Hi").json() == {
        "ok": False, "error_code": 429, "description": "Too Many Requests: retry after 3",
        "parameters": {"retry_after": 3}}
    assert call(fake_telegram, "sendMessage", chat_id=42, text="Hi").json()["ok"]


def test_get_updates_and_webhook_exclude_each_other(fake_telegram):
    user = fake_telegram.user(42, "Ann")
    fake_telegram.push_update(user.text("/start"))
    updates = call(fake_telegram, "getUpdates", timeout=0).json()["result"]
    assert [u["message"]["text"] for u in updates] == ["/start"]
    assert updates[0]["message"]["entities"] == [{"offset": 0, "length": 6, "type": "bot_command"}]
    confirmed = call(fake_telegram, "getUpdates", offset=updates[0]["update_id"] + 1, timeout=0)
    assert confirmed.json()["result"] == []
    assert call(fake_telegram, "setWebhook", url="https://shop.example.com/hook",
                secret_token="bad secret!").status_code == 400
    assert call(fake_telegram, "setWebhook", url="https://shop.example.com/hook",
                secret_token="good_secret-1").json()["ok"]
    assert call(fake_telegram, "getUpdates", timeout=0).status_code == 409
    assert call(fake_telegram, "deleteWebhook").json()["ok"]
    assert call(fake_telegram, "getUpdates", timeout=0).json()["ok"]


def test_flood_control_refuses_like_telegram_when_switched_on(fake_telegram):
    from fakes.telegram import FloodLimits

    fake_telegram.user(42, "Ann")
    fake_telegram.user(43, "Bob")
    for n in range(5):  # off by default: any pace goes
        assert call(fake_telegram, "sendMessage", chat_id=42, text=f"free {n}").json()["ok"]
    fake_telegram.flood_control(FloodLimits(overall_per_second=1, overall_burst=4, chat_burst=3))
    for text in ("1", "2", "3"):
        assert call(fake_telegram, "sendMessage", chat_id=42, text=text).json()["ok"]
    refused = call(fake_telegram, "sendMessage", chat_id=42, text="4")
    assert refused.status_code == 429
    assert refused.json() == {"ok": False, "error_code": 429,
                              "description": "Too Many Requests: retry after 1",
                              "parameters": {"retry_after": 1}}
    # Another chat still has room, until the bot's overall burst is used up; a refused edit
    # (no such message) does not count.
    assert call(fake_telegram, "editMessageText", chat_id=43, message_id=1, text="x").status_code == 400
    assert call(fake_telegram, "sendMessage", chat_id=43, text="a").json()["ok"]
    overall = call(fake_telegram, "sendMessage", chat_id=43, text="b").json()
    assert overall["error_code"] == 429 and overall["parameters"]["retry_after"] >= 1
    assert call(fake_telegram, "getMe").json()["ok"]  # only messages count
    assert [c.params["text"] for c in fake_telegram.flood_refused()] == ["4", "b"]
    assert [m.chat_id for m in fake_telegram.flood_sent()] == ["42", "42", "42", "43"]
