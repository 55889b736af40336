"""Fake Stripe: the slice of Stripe's API and hosted Checkout the shop uses, for tests and demos.

Run it as its own process, as Stripe would be::

    python -m fakes.stripe --host 127.0.0.1 --port 8004 --api-key sk_test_fake \\
        --webhook-secret whsec_fake \\
        --webhook-url http://127.0.0.1:8000/payments/stripe/webhook/ \\
        [--state var/fake_stripe.json]

or in a thread with ``start_fake_stripe(FakeStripeConfig(...), port=0)``. Standard library
only, no Django and not the ``stripe`` package: the shop's real ``stripe`` client talks to it
over HTTP exactly as it talks to api.stripe.com. State lives in memory unless ``--state``
(``FakeStripeConfig.state_path``) names a JSON file: then sessions, payment intents, refunds,
events, deliveries and stored idempotent answers are saved after every change, and a restart
keeps them (old sessions can still be read and paid). The request log and a webhook URL set
through ``/_fake/config`` are not kept.

Wire API (``Authorization: Bearer <key>``, or HTTP basic with the key as user name; requests
form-encoded with Stripe's nested brackets, ``line_items[0][price_data][currency]=usd``;
answers JSON; errors ``{"error": {"type", "code", "message", "param"}}`` with Stripe's HTTP
statuses; a wrong key is 401; livemode is true for ``sk_live_`` keys, false for ``sk_test_``):

- ``POST /v1/checkout/sessions`` (mode=payment with price_data line items),
  ``GET /v1/checkout/sessions/<id>``, ``POST /v1/checkout/sessions/<id>/expire``
- ``POST /v1/refunds`` (payment_intent or charge, optional amount), ``GET /v1/refunds/<id>``
- ``GET /v1/payment_intents/<id>``

Every POST honours ``Idempotency-Key`` as Stripe does: the same key with the same method, path
and parameters replays the first answer (``Idempotent-Replayed: true``); with anything else it
is a 400 ``idempotency_error``. Validation errors are not stored, so a corrected retry may
reuse the key. Keys are kept 24 h.

Hosted checkout: a session's ``url`` is ``<server>/checkout/<id>``, a small HTML page with a
"Pay (fake Stripe)" button (card, paid at once) and a delayed-method button (completes
``unpaid``, like SEPA debits); both redirect to ``success_url``.

Events: each state change creates an Event (``checkout.session.completed``,
``checkout.session.async_payment_succeeded`` / ``_failed``, ``checkout.session.expired``,
``refund.created``) and POSTs it to the webhook URL with ``Stripe-Signature:
t=<unix>,v1=<hex HMAC-SHA256 of "<t>.<body>" keyed with the webhook secret>``, re-signed at
every delivery, as Stripe does. There are no automatic retries: resend by hand.

Control endpoints (no auth, JSON answers):

- ``POST /_fake/complete/<session_id>`` pay the session by card (or ``{"payment_status":
  "unpaid"}`` for a delayed method) and deliver ``checkout.session.completed``
- ``POST /_fake/async-succeed/<session_id>``, ``POST /_fake/async-fail/<session_id>``
- ``POST /_fake/expire/<session_id>`` expire an open session and deliver
  ``checkout.session.expired``
- ``POST /_fake/resend/<event_id>`` deliver an event again (freshly signed)
- ``GET /_fake/events[?type=...]``, ``GET /_fake/events/<event_id>`` (with its exact body),
  ``GET /_fake/sessions``, ``GET /_fake/refunds``, ``GET /_fake/deliveries``,
  ``GET /_fake/requests`` (every API request as received: method, path, params,
  idempotency key, Stripe-Version, status, replayed)
- ``POST /_fake/config {"webhook_url": "..."}``, ``POST /_fake/reset``

Control answers carry ``delivery``: ``{"status": <HTTP status>}`` or ``{"error": "..."}``, or
null when no webhook URL is configured. Sessions past ``expires_at`` expire (and send their
event from a background thread) the next time anything touches them.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import html
import json
import re
import secrets
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field, replace
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from fakes._serving import FakeHTTPServer, ServingThread, StateFile

API_VERSION = "2026-10-28.endive"
MAX_BODY_BYTES = 1_000_000
IDEMPOTENCY_TTL_SECONDS = 24 * 3600
MAX_IDEMPOTENCY_KEY_LENGTH = 255
SESSION_MIN_LIFETIME = 30 * 60
SESSION_MAX_LIFETIME = 24 * 3600
# Stripe's smallest chargeable totals, in minor units, for the currencies the shop prices in.
MINIMUM_AMOUNTS = {"usd": 50, "eur": 50, "gbp": 30}
DEFAULT_MINIMUM_AMOUNT = 50
ZERO_DECIMAL_CURRENCIES = {"bif", "clp", "djf", "gnf", "jpy", "kmf", "krw", "mga", "pyg", "rwf",
                           "ugx", "vnd", "vuv", "xaf", "xof", "xpf"}
REFUND_REASONS = {"duplicate", "fraudulent", "requested_by_customer"}
SESSION_PARAMS = {
    "adaptive_pricing", "allow_promotion_codes", "billing_address_collection", "cancel_url",
    "client_reference_id", "customer", "customer_creation", "customer_email", "expand",
    "expires_at", "line_items", "locale", "metadata", "mode", "payment_intent_data",
    "payment_method_types", "submit_type", "success_url", "ui_mode",
}
REFUND_PARAMS = {"amount", "charge", "expand", "metadata", "payment_intent", "reason"}
DOC_URL = "https://stripe.com/docs/error-codes/"
USER_AGENT = "Stripe/1.0 (+https://stripe.com/docs/webhooks)"

SESSION_PATH_RE = re.compile(r"^/v1/checkout/sessions/([A-Za-z0-9_]+)$")
SESSION_EXPIRE_PATH_RE = re.compile(r"^/v1/checkout/sessions/([A-Za-z0-9_]+)/expire$")
REFUND_PATH_RE = re.compile(r"^/v1/refunds/([A-Za-z0-9_]+)$")
INTENT_PATH_RE = re.compile(r"^/v1/payment_intents/([A-Za-z0-9_]+)$")
HOSTED_PATH_RE = re.compile(r"^/checkout/([A-Za-z0-9_]+)(/pay)?$")
CONTROL_ACTION_RE = re.compile(
    r"^/_fake/(complete|async-succeed|async-fail|expire|resend)/([A-Za-z0-9_]+)$")
EVENT_PATH_RE = re.compile(r"^/_fake/events/([A-Za-z0-9_]+)$")
FORM_KEY_RE = re.compile(r"^([^\[\]]+)((?:\[[^\[\]]*\])*)$")


@dataclass(frozen=True)
class FakeStripeConfig:
    """One fake Stripe account: its secret key, webhook endpoint and signing secret."""

    api_key: str = "sk_test_fake"
    webhook_secret: str = "whsec_fake"
    webhook_url: str | None = None
    # Base of hosted checkout URLs when the fake sits behind another address; default its own.
    public_url: str | None = None
    delivery_timeout: float = 10.0
    state_path: str = ""  # a JSON file the account survives restarts in; empty keeps it in memory

    @property
    def livemode(self) -> bool:
        return self.api_key.startswith(("sk_live_", "rk_live_"))


class StripeApiError(Exception):
    """An error answer in Stripe's envelope."""

    def __init__(self, status: int, message: str, *, type: str = "invalid_request_error",
                 code: str | None = None, param: str | None = None,
                 headers: dict[str, str] | None = None, executed: bool = False) -> None:
        super().__init__(message)
        # Stripe stores an answer for an idempotency key only once the call began executing;
        # a request that failed validation can be corrected and retried with the same key.
        self.executed = executed
        self.status = status
        self.message = message
        self.type = type
        self.code = code
        self.param = param
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        """The JSON Stripe sends for this error (code and param only when Stripe has them)."""
        error: dict[str, Any] = {"type": self.type, "message": self.message}
        if self.code:
            error["code"] = self.code
            error["doc_url"] = DOC_URL + self.code
        if self.param:
            error["param"] = self.param
        return {"error": error}


@dataclass
class Reply:
    """What the handler sends back."""

    status: int
    body: Any
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str = "application/json"


@dataclass
class _StoredAnswer:
    fingerprint: str
    reply: Reply
    stored_at: float


def sign_webhook_payload(payload: bytes | str, secret: str, timestamp: int | None = None) -> str:
    """The Stripe-Signature header for a body: t=<ts>,v1=<hex HMAC-SHA256 of "<ts>.<body>">."""
    text = payload.decode("utf-8") if isinstance(payload, bytes) else payload
    ts = int(time.time()) if timestamp is None else timestamp
    digest = hmac.new(secret.encode(), f"{ts}.{text}".encode(), hashlib.sha256).hexdigest()
    return f"t={ts},v1={digest}"


def parse_form(pairs: list[tuple[str, str]]) -> dict[str, Any]:
    """Stripe's bracket form encoding → nested dicts and lists (``a[0][b]=c`` → {"a": [{"b": "c"}]})."""
    root: dict[str, Any] = {}
    for raw_key, value in pairs:
        match = FORM_KEY_RE.match(raw_key)
        if not match:
            raise StripeApiError(400, f"Invalid parameter name: {raw_key}", code="parameter_unknown",
                                 param=raw_key)
        parts = [match.group(1)] + re.findall(r"\[([^\[\]]*)\]", match.group(2))
        node = root
        for position, part in enumerate(parts):
            last = position == len(parts) - 1
            if part == "":
                # "a[]=x": append; the dict is turned into a list below.
                part = str(len(node))
            if last:
                node[part] = value
            else:
                child = node.setdefault(part, {})
                if not isinstance(child, dict):
                    raise StripeApiError(400, f"Invalid nesting of parameter {raw_key}",
                                         code="parameter_invalid_empty", param=raw_key)
                node = child
    return _listify(root)


def _listify(node: Any) -> Any:
    """Dicts keyed 0..n-1 are arrays in Stripe's encoding."""
    if not isinstance(node, dict):
        return node
    converted = {key: _listify(value) for key, value in node.items()}
    if converted and all(key.isdigit() for key in converted):
        indexes = sorted(int(key) for key in converted)
        if indexes == list(range(len(indexes))):
            return [converted[str(index)] for index in indexes]
    return converted


def _json_object(body: bytes) -> dict[str, Any]:
    """A control endpoint's optional JSON object body."""
    if not body.strip():
        return {}
    try:
        value = json.loads(body)
    except ValueError:
        raise StripeApiError(400, "Send a JSON object.") from None
    if not isinstance(value, dict):
        raise StripeApiError(400, "Send a JSON object.")
    return value


def _new_id(prefix: str, length: int = 24) -> str:
    alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
    return prefix + "".join(secrets.choice(alphabet) for _ in range(length))


def _int_param(value: Any, name: str, *, minimum: int | None = None) -> int:
    if not isinstance(value, str) or not re.fullmatch(r"-?[0-9]{1,18}", value):
        raise StripeApiError(400, f"Invalid integer: {value}", code="parameter_invalid_integer",
                             param=name)
    number = int(value)
    if minimum is not None and number < minimum:
        raise StripeApiError(400, f"This value must be greater than or equal to {minimum}.",
                             code="parameter_invalid_integer", param=name)
    return number


def _string_param(params: dict[str, Any], name: str, *, required: bool = False,
                  max_length: int = 5000) -> str | None:
    value = params.get(name)
    if value is None or value == "":
        if required:
            raise StripeApiError(400, f"Missing required param: {name}.", code="parameter_missing",
                                 param=name)
        return None
    if not isinstance(value, str):
        raise StripeApiError(400, f"Invalid string: {name}", code="parameter_invalid_string",
                             param=name)
    if len(value) > max_length:
        raise StripeApiError(400, f"Invalid string: {value[:20]}...; must be at most "
                             f"{max_length} characters", code="parameter_invalid_string", param=name)
    return value


def _metadata_param(value: Any, name: str = "metadata") -> dict[str, str]:
    if value is None or value == "":
        return {}
    if not isinstance(value, dict):
        raise StripeApiError(400, "Invalid object", code="parameter_invalid_empty", param=name)
    if len(value) > 50:
        raise StripeApiError(400, "Metadata can have at most 50 keys.", param=name)
    metadata: dict[str, str] = {}
    for key, item in value.items():
        if not isinstance(item, str) or len(key) > 40 or len(item) > 500:
            raise StripeApiError(400, f"Invalid metadata entry {key}.", param=f"{name}[{key}]")
        if item != "":  # Stripe unsets a key sent empty
            metadata[key] = item
    return metadata


def _url_param(params: dict[str, Any], name: str) -> str | None:
    url = _string_param(params, name)
    if url is not None and not re.match(r"^https?://", url):
        raise StripeApiError(400, "Not a valid URL", code="url_invalid", param=name)
    return url


class FakeStripeState:
    """The account's objects, events and idempotency keys, changed under one lock."""

    def __init__(self, config: FakeStripeConfig) -> None:
        self.config = config
        self.lock = threading.RLock()
        self._state_file = StateFile(config.state_path, kind="stripe")
        self._clear()
        saved = self._state_file.load()
        if saved is not None:
            self._restore(saved)

    def reset(self) -> None:
        """Forget everything."""
        with self.lock:
            self._clear()
            self._save()

    def _clear(self) -> None:
        self.sessions: dict[str, dict[str, Any]] = {}
        self.line_items: dict[str, list[dict[str, Any]]] = {}
        self.intent_data: dict[str, dict[str, Any]] = {}
        self.intents: dict[str, dict[str, Any]] = {}
        self.charges: dict[str, dict[str, Any]] = {}  # id → {"intent", "amount_refunded"}
        self.refunds: dict[str, dict[str, Any]] = {}
        self.events: dict[str, dict[str, Any]] = {}  # id → {"event", "body"}
        self.idempotency: dict[str, _StoredAnswer] = {}
        self.in_flight: set[str] = set()
        self.requests: list[dict[str, Any]] = []
        self.deliveries: list[dict[str, Any]] = []

    def _save(self) -> None:
        """Write the state file, if there is one (the lock is held)."""
        self._state_file.save({
            "sessions": self.sessions, "line_items": self.line_items,
            "intent_data": self.intent_data, "intents": self.intents,
            "charges": self.charges, "refunds": self.refunds, "events": self.events,
            "idempotency": {key: {"fingerprint": stored.fingerprint,
                                  "stored_at": stored.stored_at,
                                  "status": stored.reply.status, "body": stored.reply.body,
                                  "headers": stored.reply.headers,
                                  "content_type": stored.reply.content_type}
                            for key, stored in self.idempotency.items()},
            "deliveries": self.deliveries,
        })

    def _restore(self, saved: dict[str, Any]) -> None:
        for name in ("sessions", "line_items", "intent_data", "intents", "charges", "refunds",
                     "events", "deliveries"):
            setattr(self, name, saved[name])
        self.idempotency = {
            key: _StoredAnswer(stored["fingerprint"],
                               Reply(stored["status"], stored["body"], stored["headers"],
                                     stored["content_type"]),
                               stored["stored_at"])
            for key, stored in saved["idempotency"].items()}

    # --- helpers ---------------------------------------------------------------------

    @property
    def livemode(self) -> bool:
        return self.config.livemode

    def _emit(self, event_type: str, obj: dict[str, Any]) -> str:
        """Record an event with a snapshot of the object, as Stripe does; returns its id."""
        event = {
            "id": _new_id("evt_"),
            "object": "event",
            "api_version": API_VERSION,
            "created": int(time.time()),
            "data": {"object": json.loads(json.dumps(obj))},
            "livemode": self.livemode,
            "pending_webhooks": 1 if self.config.webhook_url else 0,
            "request": {"id": None, "idempotency_key": None},
            "type": event_type,
        }
        # Stripe pretty-prints webhook bodies; the signature covers these exact bytes.
        self.events[event["id"]] = {"event": event, "body": json.dumps(event, indent=2)}
        return str(event["id"])

    def _session(self, session_id: str, expired_events: list[str]) -> dict[str, Any]:
        session = self.sessions.get(session_id)
        if session is None:
            raise StripeApiError(404, f"No such checkout.session: '{session_id}'",
                                 code="resource_missing", param="session")
        if session["status"] == "open" and session["expires_at"] <= time.time():
            expired_events.append(self._expire(session))
            self._save()
        return session

    def _expire(self, session: dict[str, Any]) -> str:
        session["status"] = "expired"
        session["url"] = None
        return self._emit("checkout.session.expired", session)

    # --- API -------------------------------------------------------------------------

    def session_create(self, params: dict[str, Any], base_url: str) -> dict[str, Any]:
        """Validate like Stripe does (the parts the shop uses) and open a session."""
        unknown = sorted(set(params) - SESSION_PARAMS)
        if unknown:
            raise StripeApiError(400, f"Received unknown parameter: {unknown[0]}",
                                 code="parameter_unknown", param=unknown[0])
        mode = _string_param(params, "mode", required=True)
        if mode != "payment":
            raise StripeApiError(400, "This fake supports mode=payment only.",
                                 code="parameter_invalid_empty", param="mode")
        line_items = params.get("line_items")
        if not isinstance(line_items, list) or not line_items:
            raise StripeApiError(400, "You must provide at least one line item in `payment` mode.",
                                 code="parameter_missing", param="line_items")
        items: list[dict[str, Any]] = []
        currency: str | None = None
        total = 0
        for index, item in enumerate(line_items):
            where = f"line_items[{index}]"
            if not isinstance(item, dict):
                raise StripeApiError(400, "Invalid object", param=where)
            if "price" in item:
                raise StripeApiError(400, f"No such price: '{item['price']}'",
                                     code="resource_missing", param=f"{where}[price]")
            price_data = item.get("price_data")
            if not isinstance(price_data, dict):
                raise StripeApiError(400, f"Missing required param: {where}[price_data].",
                                     code="parameter_missing", param=f"{where}[price_data]")
            item_currency = _string_param(price_data, "currency", required=True)
            assert item_currency is not None
            if not re.fullmatch(r"[a-zA-Z]{3}", item_currency):
                raise StripeApiError(400, f"Invalid currency: {item_currency}.",
                                     code="parameter_invalid_empty",
                                     param=f"{where}[price_data][currency]")
            item_currency = item_currency.lower()
            if currency is not None and item_currency != currency:
                raise StripeApiError(400, "All line items must use the same currency.",
                                     param=f"{where}[price_data][currency]")
            currency = item_currency
            if "unit_amount" not in price_data:
                raise StripeApiError(400, f"Missing required param: {where}[price_data][unit_amount].",
                                     code="parameter_missing",
                                     param=f"{where}[price_data][unit_amount]")
            unit_amount = _int_param(price_data["unit_amount"], f"{where}[price_data][unit_amount]",
                                     minimum=0)
            product_data = price_data.get("product_data")
            name = product_data.get("name") if isinstance(product_data, dict) else None
            if not isinstance(name, str) or not name:
                raise StripeApiError(400, f"Missing required param: {where}[price_data][product_data][name].",
                                     code="parameter_missing",
                                     param=f"{where}[price_data][product_data][name]")
            if "quantity" not in item:
                raise StripeApiError(400, f"Missing required param: {where}[quantity].",
                                     code="parameter_missing", param=f"{where}[quantity]")
            quantity = _int_param(item["quantity"], f"{where}[quantity]", minimum=1)
            total += unit_amount * quantity
            items.append({
                "id": _new_id("li_"), "object": "item", "amount_subtotal": unit_amount * quantity,
                "amount_total": unit_amount * quantity, "currency": item_currency,
                "description": name, "quantity": quantity,
                "price": {"object": "price", "currency": item_currency, "unit_amount": unit_amount,
                          "product_data": {"name": name}},
            })
        assert currency is not None
        minimum = 0 if currency in ZERO_DECIMAL_CURRENCIES else MINIMUM_AMOUNTS.get(
            currency, DEFAULT_MINIMUM_AMOUNT)
        if total < minimum:
            raise StripeApiError(400, f"The Checkout Session's total amount due must add up to at "
                                 f"least {minimum} {currency} (minor units).",
                                 code="amount_too_small")
        now = int(time.time())
        expires_at = now + SESSION_MAX_LIFETIME
        if params.get("expires_at") not in (None, ""):
            expires_at = _int_param(params["expires_at"], "expires_at")
            if expires_at < now + SESSION_MIN_LIFETIME:
                raise StripeApiError(400, "The `expires_at` timestamp must be at least 30 minutes "
                                     "from Checkout Session creation.", param="expires_at")
            if expires_at > now + SESSION_MAX_LIFETIME:
                raise StripeApiError(400, "The `expires_at` timestamp must be less than 24 hours "
                                     "from Checkout Session creation.", param="expires_at")
        client_reference_id = _string_param(params, "client_reference_id", max_length=200)
        metadata = _metadata_param(params.get("metadata"))
        intent_data = params.get("payment_intent_data") or {}
        if not isinstance(intent_data, dict):
            raise StripeApiError(400, "Invalid object", param="payment_intent_data")
        intent_metadata = _metadata_param(intent_data.get("metadata"), "payment_intent_data[metadata]")
        adaptive = params.get("adaptive_pricing")
        adaptive_enabled = not (isinstance(adaptive, dict) and adaptive.get("enabled") == "false")
        session_id = _new_id("cs_live_" if self.livemode else "cs_test_", 58)
        session = {
            "id": session_id,
            "object": "checkout.session",
            "adaptive_pricing": {"enabled": adaptive_enabled},
            "after_expiration": None,
            "allow_promotion_codes": None,
            "amount_subtotal": total,
            "amount_total": total,
            "automatic_tax": {"enabled": False, "liability": None, "status": None},
            "billing_address_collection": None,
            "cancel_url": _url_param(params, "cancel_url"),
            "client_reference_id": client_reference_id,
            "client_secret": None,
            "created": now,
            "currency": currency,
            "customer": None,
            "customer_creation": "if_required",
            "customer_details": None,
            "customer_email": _string_param(params, "customer_email"),
            "expires_at": expires_at,
            "invoice": None,
            "livemode": self.livemode,
            "locale": _string_param(params, "locale"),
            "metadata": metadata,
            "mode": "payment",
            "payment_intent": None,
            "payment_method_types": ["card"],
            "payment_status": "unpaid",
            "status": "open",
            "submit_type": _string_param(params, "submit_type"),
            "success_url": _url_param(params, "success_url"),
            "total_details": {"amount_discount": 0, "amount_shipping": 0, "amount_tax": 0},
            "ui_mode": "hosted",
            "url": f"{base_url}/checkout/{session_id}",
        }
        with self.lock:
            self.sessions[session_id] = session
            self.line_items[session_id] = items
            self.intent_data[session_id] = {
                "metadata": intent_metadata, "description": intent_data.get("description")}
            self._save()
            return dict(session)

    def session_get(
        self, session_id: str, expand: list[str] | None = None
    ) -> tuple[dict[str, Any], list[str]]:
        """A session as Stripe shows it now; also the ids of events that became due."""
        expired: list[str] = []
        with self.lock:
            session = dict(self._session(session_id, expired))
            if expand and "line_items" in expand:
                session["line_items"] = {
                    "object": "list", "data": self.line_items[session_id], "has_more": False,
                    "url": f"/v1/checkout/sessions/{session_id}/line_items"}
        return session, expired

    def session_expire(self, session_id: str) -> tuple[dict[str, Any], list[str]]:
        """Expire an open session (API and control); anything else is a 400."""
        events: list[str] = []
        with self.lock:
            session = self._session(session_id, events)
            if events:  # it has just lapsed by itself
                return dict(session), events
            if session["status"] != "open":
                raise StripeApiError(400, 'Only Checkout Sessions with a status in ["open"] can be '
                                     "expired.", param="session")
            events.append(self._expire(session))
            self._save()
            return dict(session), events

    def session_pay(self, session_id: str, *, delayed: bool = False) -> tuple[dict[str, Any], list[str]]:
        """The buyer pays: by card (paid at once) or by a delayed method (completed, unpaid)."""
        events: list[str] = []
        with self.lock:
            session = self._session(session_id, events)
            if session["status"] != "open":
                raise StripeApiError(400, f"This Checkout Session is {session['status']} and can no "
                                     "longer be paid.", param="session")
            intent_id = _new_id("pi_")
            charge_id = _new_id("ch_")
            extra = self.intent_data.get(session_id, {})
            self.intents[intent_id] = {
                "id": intent_id, "object": "payment_intent", "amount": session["amount_total"],
                "amount_received": 0 if delayed else session["amount_total"],
                "currency": session["currency"], "created": int(time.time()),
                "description": extra.get("description"), "latest_charge": charge_id,
                "livemode": self.livemode, "metadata": extra.get("metadata", {}),
                "status": "processing" if delayed else "succeeded",
            }
            self.charges[charge_id] = {"intent": intent_id, "amount_refunded": 0}
            session.update({
                "status": "complete", "payment_status": "unpaid" if delayed else "paid",
                "payment_intent": intent_id, "url": None,
                "customer_details": {"email": "buyer@example.com", "name": "Fake Buyer",
                                     "address": {"country": "US"}, "phone": None,
                                     "tax_exempt": "none", "tax_ids": []},
            })
            events.append(self._emit("checkout.session.completed", session))
            self._save()
            return dict(session), events

    def session_settle(self, session_id: str, *, succeeded: bool) -> tuple[dict[str, Any], list[str]]:
        """A delayed payment clears (async_payment_succeeded) or fails (async_payment_failed)."""
        events: list[str] = []
        with self.lock:
            session = self._session(session_id, events)
            intent = self.intents.get(session.get("payment_intent") or "")
            if session["status"] != "complete" or intent is None or intent["status"] != "processing":
                raise StripeApiError(400, "This Checkout Session has no delayed payment pending.",
                                     param="session")
            if succeeded:
                intent.update(status="succeeded", amount_received=intent["amount"])
                session["payment_status"] = "paid"
                events.append(self._emit("checkout.session.async_payment_succeeded", session))
            else:
                intent["status"] = "requires_payment_method"
                events.append(self._emit("checkout.session.async_payment_failed", session))
            self._save()
            return dict(session), events

    def refund_create(self, params: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
        """Refund a succeeded PaymentIntent or charge, fully unless an amount is given."""
        unknown = sorted(set(params) - REFUND_PARAMS)
        if unknown:
            raise StripeApiError(400, f"Received unknown parameter: {unknown[0]}",
                                 code="parameter_unknown", param=unknown[0])
        intent_id = _string_param(params, "payment_intent")
        charge_id = _string_param(params, "charge")
        if not intent_id and not charge_id:
            raise StripeApiError(400, "One of `charge` or `payment_intent` is required.",
                                 code="parameter_missing", param="payment_intent")
        amount = None
        if params.get("amount") not in (None, ""):
            amount = _int_param(params["amount"], "amount", minimum=1)
        reason = _string_param(params, "reason")
        if reason is not None and reason not in REFUND_REASONS:
            raise StripeApiError(400, f"Invalid reason: must be one of {', '.join(sorted(REFUND_REASONS))}",
                                 code="parameter_invalid_empty", param="reason")
        metadata = _metadata_param(params.get("metadata"))
        with self.lock:
            if charge_id:
                charge = self.charges.get(charge_id)
                if charge is None:
                    raise StripeApiError(400, f"No such charge: '{charge_id}'",
                                         code="resource_missing", param="charge")
                intent_id = charge["intent"]
            intent = self.intents.get(intent_id or "")
            if intent is None:
                raise StripeApiError(400, f"No such payment_intent: '{intent_id}'",
                                     code="resource_missing", param="payment_intent")
            charge_id = intent["latest_charge"]
            charge = self.charges[charge_id]
            if intent["status"] != "succeeded":
                raise StripeApiError(400, f"This PaymentIntent ({intent_id}) does not have a "
                                     "successful charge to refund.",
                                     code="charge_not_refundable", param="payment_intent", executed=True)
            remaining = intent["amount_received"] - charge["amount_refunded"]
            if remaining <= 0:
                raise StripeApiError(400, f"Charge {charge_id} has already been refunded.",
                                     code="charge_already_refunded", param="payment_intent", executed=True)
            amount = remaining if amount is None else amount
            if amount > remaining:
                raise StripeApiError(400, f"Refund amount ({amount}) is greater than unrefunded "
                                     f"amount on charge ({remaining})", code="amount_too_large",
                                     param="amount", executed=True)
            charge["amount_refunded"] += amount
            refund = {
                "id": _new_id("re_"), "object": "refund", "amount": amount,
                "balance_transaction": _new_id("txn_"), "charge": charge_id,
                "created": int(time.time()), "currency": intent["currency"],
                "destination_details": {"card": {"type": "refund"}, "type": "card"},
                "metadata": metadata, "payment_intent": intent_id, "reason": reason,
                "receipt_number": None, "source_transfer_reversal": None, "status": "succeeded",
                "transfer_reversal": None,
            }
            self.refunds[refund["id"]] = refund
            event_id = self._emit("refund.created", refund)
            self._save()
            return dict(refund), [event_id]

    def refund_get(self, refund_id: str) -> dict[str, Any]:
        with self.lock:
            refund = self.refunds.get(refund_id)
            if refund is None:
                raise StripeApiError(404, f"No such refund: '{refund_id}'", code="resource_missing",
                                     param="id")
            return dict(refund)

    def intent_get(self, intent_id: str) -> dict[str, Any]:
        with self.lock:
            intent = self.intents.get(intent_id)
            if intent is None:
                raise StripeApiError(404, f"No such payment_intent: '{intent_id}'",
                                     code="resource_missing", param="intent")
            return dict(intent)

    # --- idempotency -----------------------------------------------------------------

    def claim(self, key: str, fingerprint: str) -> Reply | None:
        """The stored answer for a key, or None after marking the key in flight.

        A key reused for another request is a 400; a key whose first request is still
        running is a 409 (the client retries it and then gets the replay).
        """
        with self.lock:
            now = time.time()
            for old in [k for k, v in self.idempotency.items()
                        if now - v.stored_at > IDEMPOTENCY_TTL_SECONDS]:
                del self.idempotency[old]
            stored = self.idempotency.get(key)
            if stored is None:
                if key in self.in_flight:
                    raise StripeApiError(
                        409, "There is currently another in-progress request using this "
                        f"Idempotency-Key ('{key}'). Please try again later.",
                        type="idempotency_error", code="idempotency_key_in_use")
                self.in_flight.add(key)
                return None
            if stored.fingerprint != fingerprint:
                raise StripeApiError(
                    400, "Keys for idempotent requests can only be used with the same parameters "
                    "they were first used with. Try using a key other than "
                    f"'{key}' if you meant to execute a different request.",
                    type="idempotency_error", headers={"Stripe-Should-Retry": "false"})
            return replace(stored.reply, headers={**stored.reply.headers,
                                                  "Idempotent-Replayed": "true"})

    def remember(self, key: str, fingerprint: str, reply: Reply) -> None:
        with self.lock:
            self.idempotency.setdefault(key, _StoredAnswer(fingerprint, reply, time.time()))
            self._save()

    def release(self, key: str) -> None:
        with self.lock:
            self.in_flight.discard(key)

    # --- events and webhooks ---------------------------------------------------------

    def event(self, event_id: str) -> dict[str, Any]:
        with self.lock:
            stored = self.events.get(event_id)
            if stored is None:
                raise StripeApiError(404, f"No such event: '{event_id}'", code="resource_missing",
                                     param="id")
            return {"event": stored["event"], "body": stored["body"]}

    def deliver(self, event_id: str) -> dict[str, Any] | None:
        """POST one event to the webhook URL, freshly signed; never under the lock."""
        url = self.config.webhook_url
        if not url:
            return None
        body = self.event(event_id)["body"].encode()
        request = urllib.request.Request(url, data=body, method="POST", headers={
            "Content-Type": "application/json; charset=utf-8",
            "User-Agent": USER_AGENT,
            "Stripe-Signature": sign_webhook_payload(body, self.config.webhook_secret),
        })
        record: dict[str, Any] = {"event_id": event_id, "url": url, "at": int(time.time())}
        try:
            with urllib.request.urlopen(request, timeout=self.config.delivery_timeout) as response:
                record["status"] = response.status
        except urllib.error.HTTPError as exc:
            record["status"] = exc.code
            record["response"] = exc.read(2000).decode("utf-8", "replace")
        except (urllib.error.URLError, OSError) as exc:
            record["error"] = str(exc)
        with self.lock:
            self.deliveries.append(record)
            self._save()
        return record

    def deliver_later(self, event_ids: list[str]) -> None:
        """Deliver events a plain API call caused from a thread, as Stripe does, after the answer."""
        if event_ids and self.config.webhook_url:
            threading.Thread(target=lambda: [self.deliver(e) for e in event_ids],
                             name="fake-stripe-webhook", daemon=True).start()


class FakeStripeHandler(BaseHTTPRequestHandler):
    """Routes one request to the API, the hosted checkout page or the control endpoints."""

    server: FakeStripeServer
    server_version = "FakeStripe/1.0"
    timeout = 30

    def do_GET(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def do_DELETE(self) -> None:
        self._dispatch()

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        sys.stderr.write(f"{self.command} {self.path} {code}\n")

    def log_message(self, format: str, *args: Any) -> None:
        sys.stderr.write(f"fake-stripe: {format % args}\n")

    @property
    def state(self) -> FakeStripeState:
        return self.server.state

    def _dispatch(self) -> None:
        url = urlsplit(self.path)
        try:
            body = self._read_body()
            if url.path.startswith("/v1/"):
                reply = self._api(url.path, url.query, body)
            elif url.path.startswith("/checkout/"):
                reply = self._hosted(url.path, body)
            elif url.path.startswith("/_fake/"):
                reply = self._control(url.path, url.query, body)
            else:
                raise StripeApiError(404, f"Unrecognized request URL ({self.command}: {url.path}).")
        except StripeApiError as error:
            reply = Reply(error.status, error.body(), headers=error.headers)
        self._send(reply)

    def _read_body(self) -> bytes:
        try:
            length = int(self.headers.get("Content-Length") or "0")
        except ValueError:
            raise StripeApiError(400, "Bad Content-Length.") from None
        if length < 0 or length > MAX_BODY_BYTES:
            raise StripeApiError(400, "Request body too large.")
        return self.rfile.read(length) if length else b""

    # --- API -------------------------------------------------------------------------

    def _check_auth(self) -> None:
        header = self.headers.get("Authorization") or ""
        given = ""
        if header.startswith("Bearer "):
            given = header[len("Bearer "):].strip()
        elif header.startswith("Basic "):
            try:
                given = base64.b64decode(header[len("Basic "):]).decode().split(":", 1)[0]
            except (ValueError, UnicodeDecodeError):
                given = ""
        if not given:
            raise StripeApiError(401, "You did not provide an API key. You need to provide your API "
                                 "key in the Authorization header, using Bearer auth.")
        if not hmac.compare_digest(given.encode(), self.state.config.api_key.encode()):
            masked = f"{given[:8]}{'*' * max(len(given) - 12, 0)}{given[-4:]}"
            raise StripeApiError(401, f"Invalid API Key provided: {masked}")

    def _api(self, path: str, query: str, body: bytes) -> Reply:
        self._check_auth()
        if self.command == "POST":
            content_type = (self.headers.get("Content-Type") or "").split(";")[0].strip()
            if body and content_type != "application/x-www-form-urlencoded":
                raise StripeApiError(400, "Invalid request: expected form-encoded parameters.")
            pairs = parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True)
        else:
            pairs = parse_qsl(query, keep_blank_values=True)
        params = parse_form(pairs)
        key = self.headers.get("Idempotency-Key")
        log: dict[str, Any] = {
            "method": self.command, "path": path, "params": params, "idempotency_key": key,
            "stripe_version": self.headers.get("Stripe-Version"),
            "content_type": self.headers.get("Content-Type"), "replayed": False,
        }
        with self.state.lock:
            self.state.requests.append(log)
        try:
            reply = self._api_call(path, params, key, sorted(pairs))
        except StripeApiError as error:
            log["status"] = error.status
            raise
        log["status"] = reply.status
        log["replayed"] = reply.headers.get("Idempotent-Replayed") == "true"
        reply.headers.setdefault("Request-Id", _new_id("req_", 14))
        reply.headers.setdefault("Stripe-Version", log["stripe_version"] or API_VERSION)
        return reply

    def _api_call(self, path: str, params: dict[str, Any], key: str | None,
                  pairs: list[tuple[str, str]]) -> Reply:
        if self.command != "POST":
            return self._api_read(path, params)
        if key is not None and not 0 < len(key) <= MAX_IDEMPOTENCY_KEY_LENGTH:
            raise StripeApiError(400, "Idempotency-Key must be 1-255 characters.")
        fingerprint = json.dumps([self.command, path, pairs])
        if not key:
            return self._api_write(path, params, key, fingerprint)
        stored = self.state.claim(key, fingerprint)
        if stored is not None:
            return stored
        try:
            return self._api_write(path, params, key, fingerprint)
        finally:
            self.state.release(key)

    def _api_write(self, path: str, params: dict[str, Any], key: str | None,
                   fingerprint: str) -> Reply:
        base_url = self.server.public_url
        events: list[str] = []
        try:
            if path == "/v1/checkout/sessions":
                result = self.state.session_create(params, base_url)
            elif path == "/v1/refunds":
                result, events = self.state.refund_create(params)
            elif match := SESSION_EXPIRE_PATH_RE.match(path):
                result, events = self.state.session_expire(match.group(1))
            else:
                raise StripeApiError(404, f"Unrecognized request URL (POST: {path}).")
        except StripeApiError as error:
            if key and error.executed:
                self.state.remember(key, fingerprint, Reply(error.status, error.body()))
            raise
        reply = Reply(200, result, headers={"Idempotency-Key": key} if key else {})
        if key:
            self.state.remember(key, fingerprint, reply)
        self.state.deliver_later(events)
        return reply

    def _api_read(self, path: str, params: dict[str, Any]) -> Reply:
        if self.command != "GET":
            raise StripeApiError(404, f"Unrecognized request URL ({self.command}: {path}).")
        if match := SESSION_PATH_RE.match(path):
            expand = params.get("expand")
            session, events = self.state.session_get(
                match.group(1), expand if isinstance(expand, list) else None)
            self.state.deliver_later(events)
            return Reply(200, session)
        if match := REFUND_PATH_RE.match(path):
            return Reply(200, self.state.refund_get(match.group(1)))
        if match := INTENT_PATH_RE.match(path):
            return Reply(200, self.state.intent_get(match.group(1)))
        raise StripeApiError(404, f"Unrecognized request URL (GET: {path}).")

    # --- hosted checkout -------------------------------------------------------------

    def _hosted(self, path: str, body: bytes) -> Reply:
        match = HOSTED_PATH_RE.match(path)
        if not match:
            raise StripeApiError(404, "No such page.")
        session_id, pay = match.group(1), bool(match.group(2))
        if pay:
            if self.command != "POST":
                raise StripeApiError(405, "POST to pay.")
            form = dict(parse_qsl(body.decode("utf-8", "replace")))
            try:
                session, events = self.state.session_pay(
                    session_id, delayed=form.get("method") == "delayed")
            except StripeApiError as error:
                return Reply(error.status, _page("Checkout", f"<p>{html.escape(error.message)}</p>")
                             .encode(), content_type="text/html; charset=utf-8")
            for event_id in events:
                self.state.deliver(event_id)
            success = (session.get("success_url") or f"{self.server.public_url}/checkout/{session_id}")
            return Reply(303, b"", headers={
                "Location": success.replace("{CHECKOUT_SESSION_ID}", session_id)}, content_type="text/html")
        if self.command != "GET":
            raise StripeApiError(405, "GET the page, POST to pay.")
        try:
            session, events = self.state.session_get(session_id)
        except StripeApiError:
            return Reply(404, _page("Not found", "<p>No such checkout session.</p>").encode(),
                         content_type="text/html; charset=utf-8")
        self.state.deliver_later(events)
        with self.state.lock:
            items = list(self.state.line_items.get(session_id, []))
        return Reply(200, _checkout_page(session, items).encode(),
                     content_type="text/html; charset=utf-8")

    # --- control ---------------------------------------------------------------------

    def _control(self, path: str, query: str, body: bytes) -> Reply:
        state = self.state
        if match := CONTROL_ACTION_RE.match(path):
            if self.command != "POST":
                raise StripeApiError(405, "Control actions are POSTs.")
            action, target = match.groups()
            if action == "resend":
                stored = state.event(target)
                return Reply(200, {"event": stored["event"], "delivery": state.deliver(target)})
            if action == "complete":
                options = {**dict(parse_qsl(query)), **_json_object(body)}
                delayed = options.get("payment_status") == "unpaid"
                session, events = state.session_pay(target, delayed=delayed)
            elif action == "expire":
                session, events = state.session_expire(target)
            else:
                session, events = state.session_settle(target, succeeded=action == "async-succeed")
            deliveries = [state.deliver(event_id) for event_id in events]
            return Reply(200, {"session": session, "event_id": events[-1],
                               "events": events, "delivery": deliveries[-1]})
        if match := EVENT_PATH_RE.match(path):
            return Reply(200, state.event(match.group(1)))
        reads = {
            "/_fake/sessions": lambda: list(state.sessions.values()),
            "/_fake/refunds": lambda: list(state.refunds.values()),
            "/_fake/deliveries": lambda: list(state.deliveries),
            "/_fake/requests": lambda: list(state.requests),
        }
        if path in reads and self.command == "GET":
            with state.lock:
                return Reply(200, reads[path]())
        if path == "/_fake/events" and self.command == "GET":
            wanted = dict(parse_qsl(query)).get("type")
            with state.lock:
                events = [stored["event"] for stored in state.events.values()]
            return Reply(200, [
                {"id": e["id"], "type": e["type"], "created": e["created"],
                 "object_id": e["data"]["object"].get("id")}
                for e in events if wanted in (None, e["type"])])
        if path == "/_fake/config" and self.command == "POST":
            options = _json_object(body)
            state.config = replace(state.config, webhook_url=options.get("webhook_url"))
            return Reply(200, {"webhook_url": state.config.webhook_url})
        if path == "/_fake/reset" and self.command == "POST":
            state.reset()
            return Reply(200, {"reset": True})
        raise StripeApiError(404, f"No control endpoint {self.command} {path}.")

    def _send(self, reply: Reply) -> None:
        payload = reply.body if isinstance(reply.body, bytes) else json.dumps(reply.body, indent=2).encode()
        try:
            self.send_response(reply.status)
            self.send_header("Content-Type", reply.content_type)
            self.send_header("Content-Length", str(len(payload)))
            for name, value in reply.headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError):
            self.log_message("%s %s client went away before the answer", self.command, self.path)


def _amount_text(amount: int, currency: str) -> str:
    if currency in ZERO_DECIMAL_CURRENCIES:
        return f"{amount} {currency.upper()}"
    return f"{amount // 100}.{amount % 100:02d} {currency.upper()}"


def _page(title: str, content: str) -> str:
    return (f"<!doctype html><html lang=en><head><meta charset=utf-8><title>{html.escape(title)}"
            "</title><meta name=viewport content='width=device-width'><style>body{font-family:"
            "system-ui,sans-serif;max-width:28rem;margin:3rem auto;padding:0 1rem}"
            "button{font-size:1.1rem;padding:.6rem 1.2rem;margin:.3rem 0;width:100%}"
            ".muted{color:#666;font-size:.9rem}</style></head>"
            f"<body><p class=muted>Fake Stripe Checkout — test mode, no real money</p>{content}"
            "</body></html>")


def _checkout_page(session: dict[str, Any], items: list[dict[str, Any]]) -> str:
    rows = "".join(f"<li>{html.escape(item['description'])} × {item['quantity']}: "
                   f"{_amount_text(item['amount_total'], item['currency'])}</li>" for item in items)
    total = _amount_text(session["amount_total"], session["currency"])
    session_id = html.escape(session["id"])
    if session["status"] != "open":
        return _page("Checkout", f"<h1>This checkout is {html.escape(session['status'])}</h1>"
                     f"<ul>{rows}</ul>")
    cancel = session.get("cancel_url")
    cancel_link = f"<p><a href='{html.escape(cancel)}'>Cancel and go back</a></p>" if cancel else ""
    return _page("Checkout", (
        f"<h1>Pay {total}</h1><ul>{rows}</ul>"
        f"<form method=post action='/checkout/{session_id}/pay'>"
        "<button name=method value=card type=submit>Pay (fake Stripe)</button>"
        "<button name=method value=delayed type=submit>Pay with a delayed method "
        "(completes unpaid)</button></form>"
        f"{cancel_link}<p class=muted>Session {session_id}</p>"))


class FakeStripeServer(FakeHTTPServer):
    """A threaded HTTP server carrying the fake account."""

    def __init__(self, address: tuple[str, int], config: FakeStripeConfig) -> None:
        self.state = FakeStripeState(config)
        super().__init__(address, FakeStripeHandler)

    @property
    def public_url(self) -> str:
        return (self.state.config.public_url or self.url).rstrip("/")


class RunningFakeStripe(ServingThread[FakeStripeServer]):
    """A fake Stripe serving from a background thread."""

    @property
    def state(self) -> FakeStripeState:
        return self.server.state


def start_fake_stripe(config: FakeStripeConfig, *, host: str = "127.0.0.1",
                      port: int = 0) -> RunningFakeStripe:
    """Start a fake Stripe in a daemon thread; port 0 picks a free port."""
    return RunningFakeStripe(FakeStripeServer((host, port), config), name="fake-stripe")


def main(argv: list[str] | None = None) -> None:
    """Serve the fake Stripe until interrupted."""
    parser = argparse.ArgumentParser(prog="python -m fakes.stripe", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8004)
    parser.add_argument("--api-key", default="sk_test_fake")
    parser.add_argument("--webhook-secret", default="whsec_fake")
    parser.add_argument("--webhook-url", default="http://127.0.0.1:8000/payments/stripe/webhook/",
                        help="where events are POSTed; an empty string turns delivery off")
    parser.add_argument("--public-url", default=None,
                        help="base of hosted checkout URLs, if not this server's own address")
    parser.add_argument("--state", default="",
                        help="a JSON file to keep the account in across restarts (default: memory)")
    args = parser.parse_args(argv)
    config = FakeStripeConfig(api_key=args.api_key, webhook_secret=args.webhook_secret,
                              webhook_url=args.webhook_url or None, public_url=args.public_url,
                              state_path=args.state)
    server = FakeStripeServer((args.host, args.port), config)
    sys.stderr.write(f"fake stripe listening on {server.url} "
                     f"(livemode {str(config.livemode).lower()}, webhooks to "
                     f"{config.webhook_url or 'nowhere'}, state "
                     f"{config.state_path or 'in memory'})\n")
    sys.stderr.flush()
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
