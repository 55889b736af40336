"""A fake Telegram Bot API server for tests: the Bot API's JSON over HTTP on 127.0.0.1.

Point python-telegram-bot at it with ``base_url=f"{fake.url}/bot"``; requests arrive as
``POST /bot<token>/<method>``, form-encoded as python-telegram-bot sends them (JSON bodies
work too). Standard library only, no Django and no telegram package, so nothing of the bot
leaks into "Telegram".

What it does:

- answers getMe, sendMessage, sendPhoto (an uploaded PNG or JPEG, or a file_id),
  sendInvoice, editMessageText, editMessageReplyMarkup, deleteMessage, answerCallbackQuery,
  answerPreCheckoutQuery, sendChatAction, setMyCommands, getMyCommands, deleteMyCommands,
  setWebhook, deleteWebhook, getWebhookInfo and getUpdates (long polling); anything else is
  404 "Not Found", as Telegram answers unknown methods; a wrong token is 401; requests come
  form-encoded, as JSON, or as multipart/form-data when they upload a file;
- keeps each private chat as its user sees it: every message in order, edits applied, so a
  test reads the last screen and taps its buttons;
- checks what Telegram checks and the bot could get wrong: text 1–4096 characters, button
  callback data 1–64 bytes, message entities inside the text (UTF-16 offsets), editing a
  message that exists and belongs to the bot, "message is not modified", each callback query
  and pre-checkout query answered once and only for queries it issued, an invoice's title,
  description, payload, prices and provider token (none for Stars, XTR);
- plays the user's side: ``user(...)`` returns a ``FakeUser`` that builds updates exactly as
  Telegram sends them (text, commands, stickers, photos, button taps, my_chat_member, and
  paying an invoice: ``pre_checkout(...)`` then ``successful_payment(...)``);
- misbehaves on request: ``block(chat_id)`` makes every call to that chat 403 "Forbidden:
  bot was blocked by the user"; ``fail_next(method, error_code=429, retry_after=1)`` makes
  the next call(s) of a method fail as Telegram's flood control does;
- records every call (``calls(method)``) for assertions.
"""

from __future__ import annotations

import email.parser
import email.policy
import itertools
import json
import re
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

DEFAULT_TOKEN = "123456789:TEST-fake-telegram-token_0123456789ab"
BOT_ID = 123456789
BOT_USERNAME = "stars_shop_test_bot"
MAX_TEXT_LENGTH = 4096
MAX_CALLBACK_DATA_BYTES = 64
MAX_ANSWER_TEXT_LENGTH = 200
MAX_BODY_BYTES = 1_000_000
MAX_CAPTION_LENGTH = 1024
MAX_INVOICE_TITLE = 32
MAX_INVOICE_DESCRIPTION = 255
MAX_INVOICE_PAYLOAD_BYTES = 128
STARS_CURRENCY = "XTR"
ENTITY_TYPES = frozenset({
    "mention", "hashtag", "cashtag", "bot_command", "url", "email", "phone_number", "bold",
    "italic", "underline", "strikethrough", "spoiler", "blockquote", "expandable_blockquote",
    "code", "pre", "text_link", "text_mention", "custom_emoji",
})
# Form fields sent as plain strings; every other field python-telegram-bot JSON-encodes.
STRING_FIELDS = frozenset({
    "text", "callback_query_id", "url", "secret_token", "parse_mode", "language_code",
    "caption", "action", "inline_message_id", "ip_address", "business_connection_id",
    "title", "description", "payload", "currency", "provider_token", "start_parameter",
    "pre_checkout_query_id", "error_message", "photo",
})
SECRET_TOKEN_RE = re.compile(r"^[A-Za-z0-9_-]{1,256}$")
_PATH_RE = re.compile(r"^/bot(?P<token>[^/]+)/(?P<method>[A-Za-z]+)$")
BLOCKED = "Forbidden: bot was blocked by the user"


class ApiError(Exception):
    """An error answer, in the Bot API's shape."""

    def __init__(self, code: int, description: str, retry_after: int | None = None) -> None:
        super().__init__(description)
        self.code = code
        self.description = description
        self.retry_after = retry_after

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"ok": False, "error_code": self.code, "description": self.description}
        if self.retry_after is not None:
            body["parameters"] = {"retry_after": self.retry_after}
        return body


@dataclass(frozen=True)
class ApiCall:
    """One Bot API request as the fake received it."""

    method: str
    params: dict[str, Any]
    at: float


@dataclass
class ChatMessage:
    """A message in a private chat as its user sees it now (edits applied)."""

    chat_id: int
    message_id: int
    from_bot: bool
    date: int
    text: str | None = None
    reply_markup: dict[str, Any] | None = None
    edit_date: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def buttons(self) -> list[dict[str, Any]]:
        """The inline keyboard's buttons, row after row."""
        rows = (self.reply_markup or {}).get("inline_keyboard", [])
        return [button for row in rows for button in row]

    @property
    def button_texts(self) -> list[str]:
        return [button["text"] for button in self.buttons]


@dataclass
class _Failure:
    method: str
    code: int
    description: str
    retry_after: int | None
    remaining: int


class FakeTelegramState:
    """Chats, updates and recorded calls, shared by the server's request threads."""

    def __init__(self, token: str) -> None:
        self.token = token
        self.lock = threading.Condition()
        self.bot_user = {
            "id": BOT_ID, "is_bot": True, "first_name": "Stars Shop (test)",
            "username": BOT_USERNAME, "can_join_groups": False,
            "can_read_all_group_messages": False, "supports_inline_queries": False,
            "can_connect_to_business": False, "has_main_web_app": False,
        }
        self.users: dict[int, dict[str, Any]] = {}
        self.chats: dict[int, list[ChatMessage]] = {}
        self.message_ids: dict[int, itertools.count[int]] = {}
        self.calls: list[ApiCall] = []
        self.blocked: set[int] = set()
        self.failures: list[_Failure] = []
        self.open_queries: dict[str, int] = {}
        self.answered_queries: dict[str, dict[str, Any]] = {}
        self.open_checkouts: dict[str, int] = {}
        self.answered_checkouts: dict[str, dict[str, Any]] = {}
        self.photos: dict[tuple[int, int], bytes] = {}
        self.updates: list[dict[str, Any]] = []
        self.update_ids = itertools.count(1000)
        self.webhook: dict[str, Any] = {}
        self.commands: dict[str, list[dict[str, Any]]] = {}
        self.stopping = False

    # --- helpers used under the lock ---------------------------------------------------------

    def next_message_id(self, chat_id: int) -> int:
        return next(self.message_ids.setdefault(chat_id, itertools.count(1)))

    def chat_json(self, chat_id: int) -> dict[str, Any]:
        user = self.users.get(chat_id, {"id": chat_id, "first_name": "User"})
        chat = {"id": chat_id, "type": "private", "first_name": user["first_name"]}
        if user.get("username"):
            chat["username"] = user["username"]
        return chat

    def message_json(self, message: ChatMessage) -> dict[str, Any]:
        sender = self.bot_user if message.from_bot else self.users[message.chat_id]
        body: dict[str, Any] = {
            "message_id": message.message_id,
            "from": sender,
            "chat": self.chat_json(message.chat_id),
            "date": message.date,
            **message.extra,
        }
        if message.text is not None:
            body["text"] = message.text
        if message.reply_markup:
            body["reply_markup"] = message.reply_markup
        if message.edit_date is not None:
            body["edit_date"] = message.edit_date
        return body

    def find_message(self, chat_id: int, message_id: int) -> ChatMessage | None:
        for message in self.chats.get(chat_id, []):
            if message.message_id == message_id:
                return message
        return None


# --- the Bot API methods ---------------------------------------------------------------------


def _int(params: dict[str, Any], name: str, *, required: bool = True) -> int | None:
    value = params.get(name)
    if value is None:
        if required:
            raise ApiError(400, f"Bad Request: {name} is empty")
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        raise ApiError(400, f"Bad Request: invalid {name} specified") from None


def _chat_id(state: FakeTelegramState, params: dict[str, Any]) -> int:
    chat_id = _int(params, "chat_id")
    assert chat_id is not None
    if chat_id in state.blocked:
        raise ApiError(403, BLOCKED)
    if chat_id not in state.users:
        raise ApiError(403, "Forbidden: bot can't initiate conversation with a user")
    return chat_id


def _text(params: dict[str, Any]) -> str:
    text = params.get("text")
    if not isinstance(text, str) or not text.strip():
        raise ApiError(400, "Bad Request: message text is empty")
    if len(text) > MAX_TEXT_LENGTH:
        raise ApiError(400, "Bad Request: message is too long")
    return text


def _markup(params: dict[str, Any]) -> dict[str, Any] | None:
    markup = params.get("reply_markup")
    if markup is None:
        return None
    if not isinstance(markup, dict):
        raise ApiError(400, "Bad Request: can't parse reply keyboard markup JSON object")
    for row in markup.get("inline_keyboard", []):
        for button in row:
            if not button.get("text"):
                raise ApiError(400, "Bad Request: text buttons are unallowed in the inline keyboard")
            if "callback_data" in button:
                size = len(str(button["callback_data"]).encode())
                if not 1 <= size <= MAX_CALLBACK_DATA_BYTES:
                    raise ApiError(400, "Bad Request: BUTTON_DATA_INVALID")
            elif "url" in button:
                if not str(button["url"]).startswith(("https://", "http://", "tg://")):
                    raise ApiError(400, "Bad Request: BUTTON_URL_INVALID")
            else:
                raise ApiError(400, "Bad Request: can't parse inline keyboard button")
    return markup or None


def _entities(params: dict[str, Any], name: str, text: str) -> list[dict[str, Any]] | None:
    """Formatting entities, each inside the text as Telegram measures it (UTF-16 code units)."""
    entities = params.get(name)
    if entities is None:
        return None
    if not isinstance(entities, list):
        raise ApiError(400, f"Bad Request: can't parse {name} JSON object")
    size = len(text.encode("utf-16-le")) // 2
    for entity in entities:
        offset, length = entity.get("offset"), entity.get("length")
        if (entity.get("type") not in ENTITY_TYPES or not isinstance(offset, int)
                or not isinstance(length, int) or offset < 0 or length < 1 or offset + length > size):
            raise ApiError(400, "Bad Request: can't parse entities")
    return entities or None


def _with_entities(extra: dict[str, Any], name: str, entities: list[dict[str, Any]] | None) -> None:
    if entities:
        extra[name] = entities
    else:
        extra.pop(name, None)


def get_me(state: FakeTelegramState, params: dict[str, Any]) -> Any:
    return state.bot_user


def send_message(state: FakeTelegramState, params: dict[str, Any]) -> Any:
    chat_id = _chat_id(state, params)
    text = _text(params)
    message = ChatMessage(
        chat_id=chat_id, message_id=state.next_message_id(chat_id), from_bot=True,
        date=int(time.time()), text=text, reply_markup=_markup(params),
    )
    _with_entities(message.extra, "entities", _entities(params, "entities", text))
    state.chats.setdefault(chat_id, []).append(message)
    return state.message_json(message)


_IMAGE_SIGNATURES = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff")


def send_photo(state: FakeTelegramState, params: dict[str, Any]) -> Any:
    chat_id = _chat_id(state, params)
    photo = params.get("photo")
    if isinstance(photo, bytes):
        if not photo.startswith(_IMAGE_SIGNATURES):
            raise ApiError(400, "Bad Request: IMAGE_PROCESS_FAILED")
        file_id = f"AgACAgIAAxkBAAEBsent{uuid.uuid4().hex[:12]}"
    elif isinstance(photo, str) and photo:
        file_id = photo
    else:
        raise ApiError(400, "Bad Request: there is no photo in the request")
    caption = params.get("caption")
    if caption is not None and len(str(caption)) > MAX_CAPTION_LENGTH:
        raise ApiError(400, "Bad Request: message caption is too long")
    message = ChatMessage(
        chat_id=chat_id, message_id=state.next_message_id(chat_id), from_bot=True,
        date=int(time.time()), reply_markup=_markup(params),
        extra={"photo": [{"file_id": file_id, "file_unique_id": file_id[-12:], "width": 320,
                          "height": 320, "file_size": len(photo) if isinstance(photo, bytes) else 0}]},
    )
    if caption:
        message.extra["caption"] = str(caption)
        _with_entities(message.extra, "caption_entities",
                       _entities(params, "caption_entities", str(caption)))
    if isinstance(photo, bytes):
        state.photos[(chat_id, message.message_id)] = photo
    state.chats.setdefault(chat_id, []).append(message)
    return state.message_json(message)


def send_invoice(state: FakeTelegramState, params: dict[str, Any]) -> Any:
    chat_id = _chat_id(state, params)
    title, description = params.get("title"), params.get("description")
    payload, currency = params.get("payload"), params.get("currency")
    if not isinstance(title, str) or not 1 <= len(title) <= MAX_INVOICE_TITLE:
        raise ApiError(400, "Bad Request: INVOICE_TITLE_INVALID" if title else
                       "Bad Request: title is empty")
    if not isinstance(description, str) or not 1 <= len(description) <= MAX_INVOICE_DESCRIPTION:
        raise ApiError(400, "Bad Request: INVOICE_DESCRIPTION_INVALID")
    if not isinstance(payload, str) or not 1 <= len(payload.encode()) <= MAX_INVOICE_PAYLOAD_BYTES:
        raise ApiError(400, "Bad Request: INVOICE_PAYLOAD_INVALID")
    if not isinstance(currency, str) or not re.fullmatch(r"[A-Z]{3}", currency):
        raise ApiError(400, "Bad Request: CURRENCY_INVALID")
    token = params.get("provider_token") or ""
    if currency == STARS_CURRENCY and token:
        raise ApiError(400, "Bad Request: PAYMENT_PROVIDER_INVALID")
    if currency != STARS_CURRENCY and not token:
        raise ApiError(400, "Bad Request: PAYMENT_PROVIDER_INVALID")
    prices = params.get("prices")
    if (not isinstance(prices, list) or not prices
            or any(not isinstance(price, dict) or not price.get("label")
                   or not isinstance(price.get("amount"), int) for price in prices)):
        raise ApiError(400, "Bad Request: can't parse prices JSON object")
    total = sum(price["amount"] for price in prices)
    if total <= 0:
        raise ApiError(400, "Bad Request: CURRENCY_TOTAL_AMOUNT_INVALID")
    message = ChatMessage(
        chat_id=chat_id, message_id=state.next_message_id(chat_id), from_bot=True,
        date=int(time.time()), reply_markup=_markup(params),
        extra={"invoice": {"title": title, "description": description,
                           "start_parameter": params.get("start_parameter") or "",
                           "currency": currency, "total_amount": total}},
    )
    state.chats.setdefault(chat_id, []).append(message)
    return state.message_json(message)


def answer_pre_checkout_query(state: FakeTelegramState, params: dict[str, Any]) -> Any:
    query_id = params.get("pre_checkout_query_id")
    if not isinstance(query_id, str) or query_id not in state.open_checkouts:
        raise ApiError(400, "Bad Request: query is too old and response timeout expired or query "
                            "ID is invalid")
    ok = params.get("ok")
    if not isinstance(ok, bool):
        raise ApiError(400, "Bad Request: ok is empty")
    if not ok and not params.get("error_message"):
        raise ApiError(400, "Bad Request: ERROR_MESSAGE_EMPTY")
    del state.open_checkouts[query_id]
    state.answered_checkouts[query_id] = params
    return True


def _editable(state: FakeTelegramState, params: dict[str, Any]) -> ChatMessage:
    if params.get("inline_message_id"):
        raise ApiError(400, "Bad Request: inline messages are not supported by this fake")
    chat_id = _chat_id(state, params)
    message_id = _int(params, "message_id")
    assert message_id is not None
    message = state.find_message(chat_id, message_id)
    if message is None:
        raise ApiError(400, "Bad Request: message to edit not found")
    if not message.from_bot:
        raise ApiError(400, "Bad Request: message can't be edited")
    return message


_NOT_MODIFIED = ("Bad Request: message is not modified: specified new message content and reply "
                 "markup are exactly the same as a current content and reply markup of the message")


def edit_message_text(state: FakeTelegramState, params: dict[str, Any]) -> Any:
    message = _editable(state, params)
    text, markup = _text(params), _markup(params)
    entities = _entities(params, "entities", text)
    if message.text is None:
        raise ApiError(400, "Bad Request: there is no text in the message to edit")
    if text == message.text and markup == message.reply_markup and entities == message.extra.get("entities"):
        raise ApiError(400, _NOT_MODIFIED)
    message.text, message.reply_markup, message.edit_date = text, markup, int(time.time())
    _with_entities(message.extra, "entities", entities)
    return state.message_json(message)


def edit_message_reply_markup(state: FakeTelegramState, params: dict[str, Any]) -> Any:
    message = _editable(state, params)
    markup = _markup(params)
    if markup == message.reply_markup:
        raise ApiError(400, _NOT_MODIFIED)
    message.reply_markup, message.edit_date = markup, int(time.time())
    return state.message_json(message)


def delete_message(state: FakeTelegramState, params: dict[str, Any]) -> Any:
    chat_id = _chat_id(state, params)
    message = state.find_message(chat_id, _int(params, "message_id") or 0)
    if message is None:
        raise ApiError(400, "Bad Request: message to delete not found")
    state.chats[chat_id].remove(message)
    return True


def answer_callback_query(state: FakeTelegramState, params: dict[str, Any]) -> Any:
    query_id = params.get("callback_query_id")
    if not isinstance(query_id, str) or query_id not in state.open_queries:
        raise ApiError(400, "Bad Request: query is too old and response timeout expired or query "
                            "ID is invalid")
    text = params.get("text")
    if text is not None and len(str(text)) > MAX_ANSWER_TEXT_LENGTH:
        raise ApiError(400, "Bad Request: MESSAGE_TOO_LONG")
    del state.open_queries[query_id]
    state.answered_queries[query_id] = params
    return True


def send_chat_action(state: FakeTelegramState, params: dict[str, Any]) -> Any:
    _chat_id(state, params)
    return True


def _commands_key(params: dict[str, Any]) -> str:
    scope = params.get("scope") or {"type": "default"}
    return f"{json.dumps(scope, sort_keys=True)}|{params.get('language_code') or ''}"


def set_my_commands(state: FakeTelegramState, params: dict[str, Any]) -> Any:
    commands = params.get("commands")
    if not isinstance(commands, list):
        raise ApiError(400, "Bad Request: can't parse commands JSON object")
    for command in commands:
        if not re.fullmatch(r"[a-z0-9_]{1,32}", str(command.get("command", ""))):
            raise ApiError(400, "Bad Request: BOT_COMMAND_INVALID")
        if not 1 <= len(str(command.get("description", ""))) <= 256:
            raise ApiError(400, "Bad Request: BOT_COMMAND_DESCRIPTION_INVALID")
    state.commands[_commands_key(params)] = commands
    return True


def get_my_commands(state: FakeTelegramState, params: dict[str, Any]) -> Any:
    return state.commands.get(_commands_key(params), [])


def delete_my_commands(state: FakeTelegramState, params: dict[str, Any]) -> Any:
    state.commands.pop(_commands_key(params), None)
    return True


def set_webhook(state: FakeTelegramState, params: dict[str, Any]) -> Any:
    url = params.get("url") or ""
    secret = params.get("secret_token")
    if secret is not None and not SECRET_TOKEN_RE.match(str(secret)):
        raise ApiError(400, "Bad Request: secret token contains unallowed characters")
    if not url:
        state.webhook = {}
        return True
    if not str(url).startswith(("https://", "http://127.0.0.1", "http://localhost")):
        raise ApiError(400, "Bad Request: bad webhook: An HTTPS URL must be provided for webhook")
    state.webhook = {key: params[key] for key in ("url", "secret_token", "allowed_updates",
                                                  "max_connections") if key in params}
    if params.get("drop_pending_updates"):
        state.updates.clear()
    return True


def delete_webhook(state: FakeTelegramState, params: dict[str, Any]) -> Any:
    state.webhook = {}
    if params.get("drop_pending_updates"):
        state.updates.clear()
    return True


def get_webhook_info(state: FakeTelegramState, params: dict[str, Any]) -> Any:
    return {"url": state.webhook.get("url", ""), "has_custom_certificate": False,
            "pending_update_count": len(state.updates),
            **({"allowed_updates": state.webhook["allowed_updates"]}
               if "allowed_updates" in state.webhook else {})}


LONG_POLL_CAP = 2.0  # seconds: a test's getUpdates never hangs longer, whatever it asks


def get_updates(state: FakeTelegramState, params: dict[str, Any]) -> Any:
    if state.webhook.get("url"):
        raise ApiError(409, "Conflict: can't use getUpdates method while webhook is active; use "
                            "deleteWebhook to delete the webhook first")
    offset = _int(params, "offset", required=False) or 0
    limit = _int(params, "limit", required=False) or 100
    timeout = min(float(_int(params, "timeout", required=False) or 0), LONG_POLL_CAP)
    # Updates below the offset are confirmed: Telegram forgets them.
    state.updates = [update for update in state.updates if update["update_id"] >= offset]
    deadline = time.monotonic() + timeout
    while not state.updates and not state.stopping:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        state.lock.wait(remaining)
    allowed = params.get("allowed_updates")
    ready = [update for update in state.updates
             if not allowed or any(kind in update for kind in allowed)]
    return ready[:limit]


METHODS: dict[str, Callable[[FakeTelegramState, dict[str, Any]], Any]] = {
    "getme": get_me,
    "sendmessage": send_message,
    "sendphoto": send_photo,
    "sendinvoice": send_invoice,
    "answerprecheckoutquery": answer_pre_checkout_query,
    "editmessagetext": edit_message_text,
    "editmessagereplymarkup": edit_message_reply_markup,
    "deletemessage": delete_message,
    "answercallbackquery": answer_callback_query,
    "sendchataction": send_chat_action,
    "setmycommands": set_my_commands,
    "getmycommands": get_my_commands,
    "deletemycommands": delete_my_commands,
    "setwebhook": set_webhook,
    "deletewebhook": delete_webhook,
    "getwebhookinfo": get_webhook_info,
    "getupdates": get_updates,
}


# --- HTTP --------------------------------------------------------------------------------


class TelegramRequestHandler(BaseHTTPRequestHandler):
    """Routes one Bot API request to the fake's state."""

    server: FakeTelegramServer
    server_version = "FakeTelegramBotAPI/1.0"
    protocol_version = "HTTP/1.1"
    timeout = 30
    # Headers and body go out in two writes; with Nagle's algorithm the body waits for the
    # client's delayed ACK of the headers (40 ms on Linux) on a kept-alive connection.
    disable_nagle_algorithm = True

    def do_GET(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def log_message(self, format: str, *args: Any) -> None:
        if self.server.verbose:
            sys.stderr.write(f"fake-telegram: {format % args}\n")

    def _dispatch(self) -> None:
        url = urlsplit(self.path)
        try:
            params = self._params(url.query)
            match = _PATH_RE.match(url.path)
            if match is None:
                raise ApiError(404, "Not Found")
            if match["token"] != self.server.state.token:
                raise ApiError(401, "Unauthorized")
            result = self.server.call(match["method"], params)
            self._reply(200, {"ok": True, "result": result})
        except ApiError as exc:
            self._reply(exc.code, exc.body())

    def _params(self, query: str) -> dict[str, Any]:
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY_BYTES:
            raise ApiError(413, "Request Entity Too Large")
        raw = self.rfile.read(length) if length else b""
        content_type = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if content_type == "application/json":
            try:
                body = json.loads(raw or b"{}")
            except ValueError:
                raise ApiError(400, "Bad Request: can't parse JSON") from None
            if not isinstance(body, dict):
                raise ApiError(400, "Bad Request: can't parse JSON")
            return body
        if content_type == "multipart/form-data":
            return self._multipart(raw)
        fields = parse_qsl(query, keep_blank_values=True)
        fields += parse_qsl(raw.decode(), keep_blank_values=True)
        params: dict[str, Any] = {}
        for name, value in fields:
            if name in STRING_FIELDS:
                params[name] = value
                continue
            try:
                params[name] = json.loads(value)
            except ValueError:
                params[name] = value
        return params

    def _multipart(self, raw: bytes) -> dict[str, Any]:
        """A file upload: files as bytes, other fields as in a form-encoded request."""
        head = f"Content-Type: {self.headers.get('Content-Type')}\r\n\r\n".encode()
        parsed = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + raw)
        if not parsed.is_multipart():
            raise ApiError(400, "Bad Request: can't parse multipart/form-data")
        params: dict[str, Any] = {}
        for part in parsed.iter_parts():
            name = part.get_param("name", header="content-disposition")
            if not name:
                continue
            content = part.get_payload(decode=True) or b""
            if part.get_filename() is not None:
                params[str(name)] = content
                continue
            value = content.decode()
            if name in STRING_FIELDS:
                params[str(name)] = value
                continue
            try:
                params[str(name)] = json.loads(value)
            except ValueError:
                params[str(name)] = value
        # An attach:// reference names the part that holds the file.
        for name, value in list(params.items()):
            if isinstance(value, str) and value.startswith("attach://"):
                params[name] = params.get(value.removeprefix("attach://"), value)
        return params

    def _reply(self, status: int, body: dict[str, Any]) -> None:
        payload = json.dumps(body, ensure_ascii=False).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


class FakeTelegramServer(ThreadingHTTPServer):
    """A threaded HTTP server carrying the fake's state."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], token: str, *, verbose: bool = False) -> None:
        self.state = FakeTelegramState(token)
        self.verbose = verbose
        super().__init__(address, TelegramRequestHandler)

    def call(self, method: str, params: dict[str, Any]) -> Any:
        """Record the call, apply a planned failure or a block, then run the method."""
        state = self.state
        with state.lock:
            state.calls.append(ApiCall(method=method, params=params, at=time.monotonic()))
            for failure in state.failures:
                if failure.method.lower() == method.lower() and failure.remaining > 0:
                    failure.remaining -= 1
                    raise ApiError(failure.code, failure.description, failure.retry_after)
            handler = METHODS.get(method.lower())
            if handler is None:
                raise ApiError(404, "Not Found")
            return handler(state, params)


# --- the test's side -----------------------------------------------------------------------


class FakeUser:
    """A Telegram user of the fake: builds the updates Telegram would send for their actions."""

    def __init__(self, fake: FakeTelegram, user_json: dict[str, Any]) -> None:
        self.fake = fake
        self.json = user_json
        self.id: int = user_json["id"]

    def _update(self, **content: Any) -> dict[str, Any]:
        state = self.fake.state
        with state.lock:
            return {"update_id": next(state.update_ids), **content}

    def _message(self, **content: Any) -> dict[str, Any]:
        state = self.fake.state
        with state.lock:
            message = ChatMessage(chat_id=self.id, message_id=state.next_message_id(self.id),
                                  from_bot=False, date=int(time.time()),
                                  text=content.pop("text", None), extra=content)
            state.chats.setdefault(self.id, []).append(message)
            return state.message_json(message)

    def text(self, text: str) -> dict[str, Any]:
        """The update for a text message (a command if it starts with "/")."""
        extra: dict[str, Any] = {}
        if text.startswith("/"):
            extra["entities"] = [{"offset": 0, "length": len(text.split()[0]), "type": "bot_command"}]
        return self._update(message=self._message(text=text, **extra))

    def sticker(self) -> dict[str, Any]:
        return self._update(message=self._message(sticker={
            "file_id": "CAACAgIAAxkBAAEBsticker", "file_unique_id": "AgADsticker", "type": "regular",
            "width": 512, "height": 512, "is_animated": False, "is_video": False, "emoji": "👍",
        }))

    def photo(self, caption: str | None = None) -> dict[str, Any]:
        sizes = [{"file_id": f"AgACAgIAAxkBAAEBphoto{n}", "file_unique_id": f"AQADphoto{n}",
                  "width": 90 * n, "height": 90 * n, "file_size": 1000 * n} for n in (1, 4)]
        extra: dict[str, Any] = {"photo": sizes}
        if caption:
            extra["caption"] = caption
        return self._update(message=self._message(**extra))

    def callback(self, data: str, message: ChatMessage | None = None) -> dict[str, Any]:
        """A tap on a button with this callback data, on `message` (default: the last bot message)."""
        state = self.fake.state
        message = message or self.fake.last_bot_message(self.id)
        query_id = str(uuid.uuid4().int)[:19]
        with state.lock:
            state.open_queries[query_id] = self.id
            message_json = state.message_json(message)
        return self._update(callback_query={
            "id": query_id, "from": self.json, "message": message_json,
            "chat_instance": f"-{self.id}42", "data": data,
        })

    def tap(self, label: str) -> dict[str, Any]:
        """A tap on the button labelled `label` in the newest bot message that shows it."""
        for message in reversed(self.fake.bot_messages(self.id)):
            for button in message.buttons:
                if button["text"] == label and "callback_data" in button:
                    return self.callback(button["callback_data"], message)
        seen = [message.button_texts for message in self.fake.bot_messages(self.id)]
        raise AssertionError(f"no button {label!r} in chat {self.id}; buttons seen: {seen}")

    def pre_checkout(self, payload: str, currency: str, total_amount: int) -> dict[str, Any]:
        """The update Telegram sends when the user confirms an invoice's payment form."""
        state = self.fake.state
        query_id = str(uuid.uuid4().int)[:19]
        with state.lock:
            state.open_checkouts[query_id] = self.id
        return self._update(pre_checkout_query={
            "id": query_id, "from": self.json, "currency": currency,
            "total_amount": total_amount, "invoice_payload": payload,
        })

    def successful_payment(self, payload: str, currency: str, total_amount: int, *,
                           charge_id: str | None = None,
                           provider_charge_id: str | None = None) -> dict[str, Any]:
        """The service message Telegram posts in the chat once it charged the user."""
        return self._update(message=self._message(successful_payment={
            "currency": currency, "total_amount": total_amount, "invoice_payload": payload,
            "telegram_payment_charge_id": charge_id or f"tg-charge-{uuid.uuid4().hex[:16]}",
            "provider_payment_charge_id": provider_charge_id or f"ch_{uuid.uuid4().hex[:24]}",
        }))

    def my_chat_member(self, status: str) -> dict[str, Any]:
        """The update Telegram sends when the user blocks ("kicked") or unblocks ("member") the bot."""
        old = "member" if status == "kicked" else "kicked"
        state = self.fake.state
        return self._update(my_chat_member={
            "chat": state.chat_json(self.id), "from": self.json, "date": int(time.time()),
            "old_chat_member": {"user": state.bot_user, "status": old, **_until(old)},
            "new_chat_member": {"user": state.bot_user, "status": status, **_until(status)},
        })


def _until(status: str) -> dict[str, Any]:
    return {"until_date": 0} if status == "kicked" else {}


class FakeTelegram:
    """A running fake Bot API and what the test needs from it."""

    def __init__(self, server: FakeTelegramServer, thread: threading.Thread) -> None:
        self.server = server
        self.state = server.state
        self.thread = thread
        host, port = server.server_address[:2]
        host = host.decode() if isinstance(host, bytes) else host
        self.url = f"http://{host}:{port}"
        self.token = server.state.token
        self._stopped = False

    @property
    def base_url(self) -> str:
        """What python-telegram-bot takes as base_url (it appends the token)."""
        return f"{self.url}/bot"

    def user(self, user_id: int, first_name: str = "Test", *, username: str | None = None,
             language_code: str | None = "en") -> FakeUser:
        """A user who has started a private chat with the bot."""
        user_json: dict[str, Any] = {"id": user_id, "is_bot": False, "first_name": first_name}
        if username:
            user_json["username"] = username
        if language_code:
            user_json["language_code"] = language_code
        with self.state.lock:
            self.state.users[user_id] = user_json
        return FakeUser(self, user_json)

    # --- reading what happened -----------------------------------------------------------

    def calls(self, method: str | None = None) -> list[ApiCall]:
        """Every request so far, or those of one method (case-insensitive)."""
        with self.state.lock:
            return [call for call in self.state.calls
                    if method is None or call.method.lower() == method.lower()]

    def messages(self, chat_id: int) -> list[ChatMessage]:
        """The chat as its user sees it, oldest first."""
        with self.state.lock:
            return list(self.state.chats.get(chat_id, []))

    def bot_messages(self, chat_id: int) -> list[ChatMessage]:
        return [message for message in self.messages(chat_id) if message.from_bot]

    def last_bot_message(self, chat_id: int) -> ChatMessage:
        messages = self.bot_messages(chat_id)
        assert messages, f"the bot has not written to chat {chat_id}"
        return messages[-1]

    def answered(self, query_id: str) -> dict[str, Any] | None:
        """The bot's answerCallbackQuery parameters for a query, None if it never answered."""
        with self.state.lock:
            return self.state.answered_queries.get(query_id)

    def unanswered_queries(self) -> list[str]:
        with self.state.lock:
            return list(self.state.open_queries)

    def checkout_answer(self, query_id: str) -> dict[str, Any] | None:
        """The bot's answerPreCheckoutQuery parameters for a query, None if it never answered."""
        with self.state.lock:
            return self.state.answered_checkouts.get(query_id)

    def unanswered_checkouts(self) -> list[str]:
        with self.state.lock:
            return list(self.state.open_checkouts)

    def photo(self, message: ChatMessage) -> bytes | None:
        """The bytes the bot uploaded for a photo message, None if it sent a file_id."""
        with self.state.lock:
            return self.state.photos.get((message.chat_id, message.message_id))

    @property
    def webhook(self) -> dict[str, Any]:
        with self.state.lock:
            return dict(self.state.webhook)

    def commands(self, language_code: str = "") -> list[dict[str, Any]]:
        with self.state.lock:
            return self.state.commands.get(_commands_key({"language_code": language_code}), [])

    def wait_for(self, predicate: Callable[[], Any], timeout: float = 5.0) -> Any:
        """Poll until predicate() is truthy; returns its value or raises AssertionError."""
        deadline = time.monotonic() + timeout
        while True:
            value = predicate()
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError("timed out waiting for the bot")
            time.sleep(0.02)

    # --- steering --------------------------------------------------------------------------

    def block(self, chat_id: int) -> None:
        """From now on every call to this chat is 403 "bot was blocked by the user"."""
        with self.state.lock:
            self.state.blocked.add(chat_id)

    def unblock(self, chat_id: int) -> None:
        with self.state.lock:
            self.state.blocked.discard(chat_id)

    def fail_next(self, method: str, *, error_code: int = 429, count: int = 1,
                  retry_after: int | None = 1, description: str | None = None) -> None:
        """Make the next `count` calls of a method fail (default: 429 flood control)."""
        if description is None:
            description = (f"Too Many Requests: retry after {retry_after}" if error_code == 429
                           else "Internal Server Error")
        with self.state.lock:
            self.state.failures.append(_Failure(method, error_code, description,
                                                retry_after if error_code == 429 else None, count))

    def push_update(self, update: dict[str, Any]) -> None:
        """Queue an update for getUpdates, as Telegram does while no webhook is set."""
        with self.state.lock:
            self.state.updates.append(update)
            self.state.lock.notify_all()

    def stop(self) -> None:
        """Stop serving and release the port; safe to call twice."""
        if self._stopped:
            return
        self._stopped = True
        with self.state.lock:
            self.state.stopping = True
            self.state.lock.notify_all()
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)


def start_fake_telegram(*, token: str = DEFAULT_TOKEN, host: str = "127.0.0.1", port: int = 0,
                        verbose: bool = False) -> FakeTelegram:
    """Start the fake Bot API in a daemon thread; port 0 picks a free port."""
    server = FakeTelegramServer((host, port), token, verbose=verbose)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              name=f"fake-telegram-{server.server_address[1]}", daemon=True)
    thread.start()
    return FakeTelegram(server, thread)
