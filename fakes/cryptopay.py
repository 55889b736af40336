"""Fake Crypto Pay API (@CryptoBot): a stand-in for pay.crypt.bot, for tests and demos.

Run it as its own process, as the real service would be::

    python -m fakes.cryptopay --host 127.0.0.1 --port 8003 --token fake-cryptopay-token \\
        --webhook-url http://127.0.0.1:8000/payments/cryptopay/webhook/ [--network testnet] \\
        [--state var/fake_cryptopay.json]

or in a thread with ``start_fake_cryptopay(FakeCryptoPayConfig(...), port=0)``.
Standard library only, no Django, so nothing of the shop leaks into the "provider".
State lives in memory unless ``--state`` (``FakeCryptoPayConfig.state_path``) names a JSON
file: then invoices, their updates, deliveries and the id counters are saved after every
change, and a restart keeps them (invoice ids continue after the last one). The per-method
call counts and a webhook URL set through ``/_fake/config`` are not kept.

Wire API, as Crypto Pay's (https://help.send.tg/en/articles/10279948-crypto-pay-api):

- ``/api/<method>`` by GET or POST; parameters in the query string, a JSON object body or
  a form-urlencoded body; the app token in the ``Crypto-Pay-API-Token`` header.
- Answers ``{"ok": true, "result": ...}`` or ``{"ok": false, "error": {"code": 400,
  "name": "EXPIRES_IN_INVALID"}}`` with the HTTP status of ``code``; a missing or wrong
  token is ``401 UNAUTHORIZED``, an unknown method ``405 METHOD_NOT_FOUND``.
- ``getMe``; ``createInvoice`` (``currency_type`` crypto with ``asset``, or fiat with
  ``fiat`` and optional ``accepted_assets``; ``amount`` as a decimal string, ``description``,
  ``hidden_message``, ``paid_btn_name``/``paid_btn_url``, ``payload``, ``allow_comments``,
  ``allow_anonymous``, ``expires_in`` 1-2678400 s); ``getInvoices`` (``asset``, ``fiat``,
  ``invoice_ids`` comma-separated, ``status`` active|paid, ``offset``, ``count`` 1-1000)
  returning ``{"items": [...]}``; ``deleteInvoice``.
- Invoices are active until paid or past ``expiration_date`` (then expired, as read).
  Amounts and rates are decimal strings; times are ISO 8601 in UTC with a ``Z``.
- When an invoice is paid, the fake POSTs ``{"update_id", "update_type": "invoice_paid",
  "request_date", "payload": <invoice>}`` to the webhook URL with the header
  ``crypto-pay-api-signature`` = hex HMAC-SHA-256 of the raw body keyed with SHA-256 of the
  app token, as Crypto Pay does. Crypto Pay sends no update when an invoice expires.

Unlike the real service, the invoice links (``bot_invoice_url``, ``mini_app_invoice_url``,
``web_app_invoice_url``) point at this fake's own checkout page, ``GET /_fake/checkout/<hash>``,
where a demo buyer presses "Pay with USDT/TON/BTC"; real links go to t.me and app.send.tg.

Control endpoints (no token):

- ``POST /_fake/pay/<invoice_id>`` with an optional JSON object: ``paid_asset`` (default the
  first accepted asset, or the invoice's asset), ``paid_amount`` (default converted at the
  fake's rates), ``paid_at`` (ISO 8601), ``deliver`` (false = a lost webhook), ``force``
  (pay even an expired invoice), and faults the real service never sends: ``amount`` and
  ``fiat`` replace what the invoice asked. Marks the invoice paid and POSTs the signed
  webhook; answers ``{"invoice", "update": {"update_id", "body", "signature"},
  "delivery"}``. 404 for an unknown invoice, 409 for one not active.
- ``POST /_fake/webhook/<invoice_id>`` ``{"times": 1}``: send the paid invoice's update again,
  byte for byte (a Crypto Pay retry).
- ``POST /_fake/expire/<invoice_id>``: expire an active invoice now.
- ``GET /_fake/invoices``, ``GET /_fake/deliveries``, ``GET /_fake/calls`` (API calls per
  method), ``POST /_fake/config {"webhook_url": "..."}``, ``POST /_fake/reset``.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import html
import json
import re
import secrets
import sys
import threading
import urllib.error
import urllib.request
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, urlsplit

from fakes._serving import FakeHTTPServer, ServingThread, StateFile

TOKEN_HEADER = "Crypto-Pay-API-Token"
SIGNATURE_HEADER = "crypto-pay-api-signature"
MAX_BODY_BYTES = 1_000_000
MAX_EXPIRES_IN = 2_678_400
MAX_DESCRIPTION = 1024
MAX_HIDDEN_MESSAGE = 2048
MAX_PAYLOAD_BYTES = 4096
DELIVERY_BODY_LIMIT = 2000

ASSETS = ("USDT", "TON", "BTC", "ETH", "LTC", "BNB", "TRX", "USDC")
FIATS = ("USD", "EUR", "RUB", "BYN", "UAH", "GBP", "CNY", "KZT", "UZS", "GEL", "TRY", "AMD",
         "THB", "INR", "BRL", "IDR", "AZN", "AED", "PLN", "ILS")
PAID_BUTTONS = ("viewItem", "openChannel", "openBot", "callback")
# The fake's exchange rates: USD per unit. Real rates move; fixed ones keep tests exact.
USD_PER_ASSET = {"USDT": Decimal("1"), "USDC": Decimal("1"), "TON": Decimal("3.2"),
                 "BTC": Decimal("64000"), "ETH": Decimal("3200"), "LTC": Decimal("80"),
                 "BNB": Decimal("580"), "TRX": Decimal("0.125")}
USD_PER_FIAT = {"USD": Decimal("1"), "EUR": Decimal("1.08"), "GBP": Decimal("1.27"),
                "RUB": Decimal("0.011")}
FEE_RATE = Decimal("0.03")  # Crypto Pay's 3% fee on invoice payments
ASSET_QUANTUM = Decimal("0.00000001")

PATH_RE = re.compile(r"^/_fake/(pay|webhook|expire)/([0-9]+)$")
CHECKOUT_RE = re.compile(r"^/_fake/checkout/([A-Za-z0-9]+)$")
BOT_NAMES = {"mainnet": "CryptoBot", "testnet": "CryptoTestnetBot"}


@dataclass(frozen=True)
class FakeCryptoPayConfig:
    """One fake Crypto Pay app: its token, network, and where it sends webhooks."""

    token: str = "fake-cryptopay-token"
    network: str = "testnet"
    webhook_url: str = ""
    webhook_timeout: float = 10.0
    first_invoice_id: int = 1001
    # The URL buyers' browsers reach the fake at, for the checkout links; defaults to its own.
    public_url: str = ""
    state_path: str = ""  # a JSON file the invoices survive restarts in; empty keeps them in memory


class ApiError(Exception):
    """An answer in Crypto Pay's error envelope."""

    def __init__(self, status: int, name: str) -> None:
        super().__init__(name)
        self.status = status
        self.name = name

    def body(self) -> dict[str, Any]:
        """The JSON Crypto Pay sends for this error."""
        return {"ok": False, "error": {"code": self.status, "name": self.name}}


class ControlError(Exception):
    """A control request the fake refuses (not part of Crypto Pay's wire format)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def signature_for(token: str, body: bytes) -> str:
    """Crypto Pay's webhook signature: hex HMAC-SHA-256 of the raw body, keyed with SHA-256(token)."""
    secret = hashlib.sha256(token.encode()).digest()
    return hmac.new(secret, body, hashlib.sha256).hexdigest()


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _parse_iso(value: str) -> datetime:
    moment = datetime.fromisoformat(value)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _plain(amount: Decimal) -> str:
    """A decimal as Crypto Pay writes it: no exponent, no trailing zeros."""
    return format(amount.normalize(), "f")


def _decimal(value: Any, name: str) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, (str, int, Decimal)):
        raise ApiError(400, f"{name.upper()}_INVALID")
    try:
        amount = Decimal(str(value).strip())
    except InvalidOperation:
        raise ApiError(400, f"{name.upper()}_INVALID") from None
    if not amount.is_finite() or amount <= 0:
        raise ApiError(400, f"{name.upper()}_INVALID")
    return amount


def _boolean(value: Any, name: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise ApiError(400, f"{name.upper()}_INVALID")


def _integer(value: Any, name: str, low: int, high: int) -> int:
    if isinstance(value, bool):
        raise ApiError(400, f"{name.upper()}_INVALID")
    try:
        number = int(str(value).strip())
    except ValueError:
        raise ApiError(400, f"{name.upper()}_INVALID") from None
    if not low <= number <= high:
        raise ApiError(400, f"{name.upper()}_INVALID")
    return number


def _asset_list(value: Any) -> list[str]:
    items = value if isinstance(value, list) else str(value).split(",")
    assets = [str(item).strip().upper() for item in items if str(item).strip()]
    if not assets or any(asset not in ASSETS for asset in assets):
        raise ApiError(400, "ACCEPTED_ASSETS_INVALID")
    return assets


class FakeCryptoPayState:
    """The fake app's invoices, updates and counters, changed under one lock."""

    def __init__(self, config: FakeCryptoPayConfig) -> None:
        self.config = config
        self.webhook_url = config.webhook_url
        self._lock = threading.Lock()
        self._state_file = StateFile(config.state_path, kind="cryptopay")
        self._clear()
        saved = self._state_file.load()
        if saved is not None:
            self._restore(saved)

    def reset(self) -> None:
        """Forget every invoice, update, delivery and counter."""
        with self._lock:
            self._clear()
            self._save()

    def _clear(self) -> None:
        self._invoices: dict[int, dict[str, Any]] = {}
        self._updates: dict[int, tuple[int, bytes]] = {}  # invoice_id → (update_id, body)
        self._next_invoice_id = self.config.first_invoice_id
        self._next_update_id = 1
        self._deliveries: list[dict[str, Any]] = []
        self._calls: dict[str, int] = {}

    def _save(self) -> None:
        """Write the state file, if there is one (the lock is held)."""
        # Invoice ids become JSON object keys, so lists of pairs keep them integers.
        self._state_file.save({
            "invoices": list(self._invoices.values()),
            # Update bodies are ASCII JSON, so text round-trips them byte for byte.
            "updates": [[invoice_id, update_id, body.decode()]
                        for invoice_id, (update_id, body) in self._updates.items()],
            "next_invoice_id": self._next_invoice_id, "next_update_id": self._next_update_id,
            "deliveries": self._deliveries,
        })

    def _restore(self, saved: dict[str, Any]) -> None:
        self._invoices = {invoice["invoice_id"]: invoice for invoice in saved["invoices"]}
        self._updates = {invoice_id: (update_id, body.encode())
                         for invoice_id, update_id, body in saved["updates"]}
        self._next_invoice_id = saved["next_invoice_id"]
        self._next_update_id = saved["next_update_id"]
        self._deliveries = saved["deliveries"]

    def count_call(self, method: str) -> None:
        with self._lock:
            self._calls[method] = self._calls.get(method, 0) + 1

    def calls(self) -> dict[str, int]:
        with self._lock:
            return dict(self._calls)

    def _expire_due(self, now: datetime) -> None:
        for invoice in self._invoices.values():
            expires = invoice.get("expiration_date")
            if invoice["status"] == "active" and expires and _parse_iso(expires) <= now:
                invoice["status"] = "expired"

    def me(self) -> dict[str, Any]:
        return {"app_id": 1, "name": "Fake Crypto Pay",
                "payment_processing_bot_username": BOT_NAMES.get(self.config.network, "CryptoBot")}

    def create_invoice(self, params: dict[str, Any], base_url: str) -> dict[str, Any]:
        currency_type = str(params.get("currency_type") or "crypto")
        if currency_type not in ("crypto", "fiat"):
            raise ApiError(400, "CURRENCY_TYPE_INVALID")
        invoice: dict[str, Any] = {"currency_type": currency_type}
        if currency_type == "crypto":
            asset = str(params.get("asset") or "").upper()
            if asset not in ASSETS:
                raise ApiError(400, "ASSET_INVALID")
            invoice["asset"] = asset
        else:
            fiat = str(params.get("fiat") or "").upper()
            if fiat not in FIATS:
                raise ApiError(400, "FIAT_INVALID")
            invoice["fiat"] = fiat
            accepted = params.get("accepted_assets")
            invoice["accepted_assets"] = _asset_list(accepted) if accepted else ["USDT", "TON", "BTC"]
        if "amount" not in params:
            raise ApiError(400, "AMOUNT_REQUIRED")
        invoice["amount"] = _plain(_decimal(params["amount"], "amount"))
        for name, limit in (("description", MAX_DESCRIPTION), ("hidden_message", MAX_HIDDEN_MESSAGE)):
            if params.get(name) is not None:
                text = str(params[name])
                if len(text) > limit:
                    raise ApiError(400, f"{name.upper()}_TOO_LONG")
                invoice[name] = text
        if params.get("payload") is not None:
            payload = str(params["payload"])
            if len(payload.encode()) > MAX_PAYLOAD_BYTES:
                raise ApiError(400, "PAYLOAD_TOO_LONG")
            invoice["payload"] = payload
        if params.get("paid_btn_name") is not None:
            if params["paid_btn_name"] not in PAID_BUTTONS:
                raise ApiError(400, "PAID_BTN_NAME_INVALID")
            if not str(params.get("paid_btn_url") or "").startswith(("http://", "https://")):
                raise ApiError(400, "PAID_BTN_URL_INVALID")
            invoice["paid_btn_name"] = params["paid_btn_name"]
            invoice["paid_btn_url"] = str(params["paid_btn_url"])
        allow_comments = _boolean(params.get("allow_comments", True), "allow_comments")
        allow_anonymous = _boolean(params.get("allow_anonymous", True), "allow_anonymous")
        expires_in = (_integer(params["expires_in"], "expires_in", 1, MAX_EXPIRES_IN)
                      if params.get("expires_in") is not None else None)
        now = datetime.now(UTC)
        with self._lock:
            invoice_id = self._next_invoice_id
            self._next_invoice_id += 1
            invoice_hash = f"IV{secrets.token_hex(6).upper()}"
            checkout = f"{(self.config.public_url or base_url).rstrip('/')}/_fake/checkout/{invoice_hash}"
            stored: dict[str, Any] = {
                "invoice_id": invoice_id,
                "hash": invoice_hash,
                **invoice,
                "bot_invoice_url": f"{checkout}?via=bot",
                "mini_app_invoice_url": f"{checkout}?via=mini_app",
                "web_app_invoice_url": f"{checkout}?via=web_app",
                "status": "active",
                "created_at": _iso(now),
                "allow_comments": allow_comments,
                "allow_anonymous": allow_anonymous,
            }
            if expires_in is not None:
                stored["expiration_date"] = _iso(now + timedelta(seconds=expires_in))
            self._invoices[invoice_id] = stored
            self._save()
            return dict(stored)

    def get_invoices(self, params: dict[str, Any]) -> dict[str, Any]:
        asset = str(params.get("asset") or "").upper()
        fiat = str(params.get("fiat") or "").upper()
        status = str(params.get("status") or "")
        if status and status not in ("active", "paid"):
            raise ApiError(400, "STATUS_INVALID")
        ids: set[int] | None = None
        if params.get("invoice_ids"):
            raw = params["invoice_ids"]
            parts = raw if isinstance(raw, list) else str(raw).split(",")
            try:
                ids = {int(str(part).strip()) for part in parts if str(part).strip()}
            except ValueError:
                raise ApiError(400, "INVOICE_IDS_INVALID") from None
        offset = _integer(params.get("offset", 0), "offset", 0, 10**9)
        count = _integer(params.get("count", 100), "count", 1, 1000)
        with self._lock:
            self._expire_due(datetime.now(UTC))
            items = [
                dict(invoice) for invoice_id, invoice in sorted(self._invoices.items(), reverse=True)
                if (ids is None or invoice_id in ids)
                and (not status or invoice["status"] == status)
                and (not asset or invoice.get("asset") == asset or invoice.get("paid_asset") == asset)
                and (not fiat or invoice.get("fiat") == fiat)
            ]
        return {"items": items[offset:offset + count]}

    def delete_invoice(self, params: dict[str, Any]) -> bool:
        invoice_id = _integer(params.get("invoice_id"), "invoice_id", 1, 2**63)
        with self._lock:
            if self._invoices.pop(invoice_id, None) is None:
                raise ApiError(400, "INVOICE_NOT_FOUND")
            self._save()
        return True

    def by_hash(self, invoice_hash: str) -> dict[str, Any] | None:
        with self._lock:
            self._expire_due(datetime.now(UTC))
            for invoice in self._invoices.values():
                if invoice["hash"] == invoice_hash:
                    return dict(invoice)
        return None

    def pay(self, invoice_id: int, options: dict[str, Any]) -> tuple[dict[str, Any], int, bytes]:
        """Mark an invoice paid as a buyer would; returns (invoice, update_id, signed body)."""
        now = datetime.now(UTC)
        with self._lock:
            self._expire_due(now)
            invoice = self._invoices.get(invoice_id)
            if invoice is None:
                raise ControlError(404, f"No invoice {invoice_id}.")
            if invoice["status"] == "paid" or (invoice["status"] == "expired" and not options.get("force")):
                raise ControlError(409, f"Invoice {invoice_id} is {invoice['status']}.")
            paid = dict(invoice)
            if options.get("amount") is not None:
                paid["amount"] = _plain(_decimal(options["amount"], "amount"))
            if options.get("fiat") is not None and paid["currency_type"] == "fiat":
                paid["fiat"] = str(options["fiat"]).upper()
            default_asset = paid.get("asset") or paid.get("accepted_assets", ["USDT"])[0]
            paid_asset = str(options.get("paid_asset") or default_asset).upper()
            if paid_asset not in USD_PER_ASSET:
                raise ControlError(400, f"Unknown asset {paid_asset}.")
            usd_rate = USD_PER_ASSET[paid_asset]
            if paid["currency_type"] == "fiat":
                fiat_usd = USD_PER_FIAT.get(paid["fiat"], Decimal("1"))
                fiat_rate = usd_rate / fiat_usd
                computed = Decimal(paid["amount"]) / fiat_rate
            else:
                fiat_rate = usd_rate
                computed = Decimal(paid["amount"]) * USD_PER_ASSET[paid["asset"]] / usd_rate
            paid_amount = (_decimal(options["paid_amount"], "paid_amount")
                           if options.get("paid_amount") is not None
                           else computed.quantize(ASSET_QUANTUM, rounding=ROUND_HALF_UP))
            fee = (paid_amount * FEE_RATE).quantize(ASSET_QUANTUM, rounding=ROUND_HALF_UP)
            paid_at = _parse_iso(options["paid_at"]) if options.get("paid_at") else now
            paid.update({
                "status": "paid",
                "paid_asset": paid_asset,
                "paid_amount": _plain(paid_amount),
                "paid_fiat_rate": _plain(fiat_rate.quantize(ASSET_QUANTUM)),
                "paid_usd_rate": _plain(usd_rate),
                "fee_asset": paid_asset,
                "fee_amount": _plain(fee),
                "fee_in_usd": _plain((fee * usd_rate).quantize(Decimal("0.01"))),
                "paid_at": _iso(paid_at),
                "paid_anonymously": bool(options.get("anonymously", False)),
            })
            self._invoices[invoice_id] = paid
            update_id = self._next_update_id
            self._next_update_id += 1
            update = {"update_id": update_id, "update_type": "invoice_paid",
                      "request_date": _iso(now), "payload": paid}
            body = json.dumps(update).encode()
            self._updates[invoice_id] = (update_id, body)
            self._save()
            return dict(paid), update_id, body

    def update_for(self, invoice_id: int) -> tuple[int, bytes]:
        with self._lock:
            if invoice_id not in self._updates:
                raise ControlError(409, f"Invoice {invoice_id} has not been paid.")
            return self._updates[invoice_id]

    def expire(self, invoice_id: int) -> dict[str, Any]:
        now = datetime.now(UTC)
        with self._lock:
            invoice = self._invoices.get(invoice_id)
            if invoice is None:
                raise ControlError(404, f"No invoice {invoice_id}.")
            if invoice["status"] == "paid":
                raise ControlError(409, f"Invoice {invoice_id} is paid.")
            invoice["status"] = "expired"
            if not invoice.get("expiration_date") or _parse_iso(invoice["expiration_date"]) > now:
                invoice["expiration_date"] = _iso(now)
            self._save()
            return dict(invoice)

    def list_invoices(self) -> list[dict[str, Any]]:
        with self._lock:
            self._expire_due(datetime.now(UTC))
            return [dict(invoice) for _, invoice in sorted(self._invoices.items())]

    def record_delivery(self, delivery: dict[str, Any]) -> None:
        with self._lock:
            self._deliveries.append(delivery)
            self._save()

    def deliveries(self) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(delivery) for delivery in self._deliveries]

    def deliver(self, invoice_id: int, update_id: int, body: bytes) -> dict[str, Any]:
        """POST one signed update to the webhook URL, as Crypto Pay does, and record the answer."""
        delivery: dict[str, Any] = {"invoice_id": invoice_id, "update_id": update_id,
                                    "url": self.webhook_url, "status": None, "error": "", "body": ""}
        if not self.webhook_url:
            delivery["error"] = "no webhook URL configured"
            self.record_delivery(delivery)
            return delivery
        request = urllib.request.Request(
            self.webhook_url, data=body, method="POST",
            headers={"Content-Type": "application/json",
                     SIGNATURE_HEADER: signature_for(self.config.token, body)},
        )
        try:
            with urllib.request.urlopen(request, timeout=self.config.webhook_timeout) as response:
                delivery["status"] = response.status
                delivery["body"] = response.read(DELIVERY_BODY_LIMIT).decode("utf-8", "replace")
        except urllib.error.HTTPError as error:
            delivery["status"] = error.code
            delivery["body"] = error.read(DELIVERY_BODY_LIMIT).decode("utf-8", "replace")
        except (urllib.error.URLError, OSError) as error:
            # Crypto Pay would retry later; the fake records it and /_fake/webhook resends.
            delivery["error"] = str(error)
        self.record_delivery(delivery)
        return delivery


CHECKOUT_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Fake Crypto Pay · invoice {invoice_id}</title>
<style>body{{font-family:sans-serif;max-width:32rem;margin:3rem auto;padding:0 1rem}}
button{{margin:.25rem;padding:.5rem 1rem}}</style></head>
<body><h1>Fake Crypto Pay</h1><p><em>Test checkout: no real money moves.</em></p>
<p>Invoice {invoice_id}: <strong>{amount}</strong></p><p>{description}</p>
<p>Status: <strong>{status}</strong></p>
{actions}</body></html>
"""


class FakeCryptoPayHandler(BaseHTTPRequestHandler):
    """Routes one request to the fake's state and writes Crypto Pay's answer."""

    server: FakeCryptoPayServer
    server_version = "FakeCryptoPay/1.0"
    timeout = 30

    def do_GET(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        sys.stderr.write(f"fake-cryptopay: {self.command} {self.path} {code}\n")

    def log_message(self, format: str, *args: Any) -> None:
        sys.stderr.write(f"fake-cryptopay: {format % args}\n")

    def _dispatch(self) -> None:
        url = urlsplit(self.path)
        try:
            body = self._read_body()
        except ControlError as error:
            self._send_json(error.status, {"error": error.message})
            return
        if url.path.startswith("/api/"):
            try:
                result = self._api(url.path[len("/api/"):], url.query, body)
            except ApiError as error:
                self._send_json(error.status, error.body())
                return
            self._send_json(200, {"ok": True, "result": result})
            return
        checkout = CHECKOUT_RE.match(url.path)
        if checkout:
            self._checkout(checkout.group(1), body)
            return
        try:
            status, answer = self._control(url.path, body)
        except ControlError as error:
            status, answer = error.status, {"error": error.message}
        except ApiError as error:
            status, answer = error.status, {"error": error.name}
        self._send_json(status, answer)

    def _read_body(self) -> bytes:
        try:
            length = int(self.headers.get("Content-Length") or "0")
        except ValueError:
            raise ControlError(400, "Bad Content-Length.") from None
        if length < 0 or length > MAX_BODY_BYTES:
            raise ControlError(413, "Body too large.")
        return self.rfile.read(length) if length else b""

    def _params(self, query: str, body: bytes) -> dict[str, Any]:
        """Crypto Pay's parameters from the query string and a JSON or form body."""
        params: dict[str, Any] = {key: values[-1] for key, values in parse_qs(query).items()}
        if not body:
            return params
        content_type = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if content_type == "application/x-www-form-urlencoded":
            params.update({key: values[-1] for key, values in
                           parse_qs(body.decode("utf-8", "replace")).items()})
            return params
        try:
            parsed = json.loads(body.decode("utf-8"), parse_float=Decimal)
        except (UnicodeDecodeError, ValueError):
            raise ApiError(400, "REQUEST_BODY_INVALID") from None
        if not isinstance(parsed, dict):
            raise ApiError(400, "REQUEST_BODY_INVALID")
        params.update(parsed)
        return params

    def _api(self, method: str, query: str, body: bytes) -> Any:
        state = self.server.state
        given = (self.headers.get(TOKEN_HEADER) or "").encode()
        if not given or not hmac.compare_digest(given, state.config.token.encode()):
            raise ApiError(401, "UNAUTHORIZED")
        params = self._params(query, body)
        handlers = {
            "getMe": lambda: state.me(),
            "createInvoice": lambda: state.create_invoice(params, self.server.url),
            "getInvoices": lambda: state.get_invoices(params),
            "deleteInvoice": lambda: state.delete_invoice(params),
        }
        if method not in handlers:
            raise ApiError(405, "METHOD_NOT_FOUND")
        state.count_call(method)
        return handlers[method]()

    def _control(self, path: str, body: bytes) -> tuple[int, Any]:
        state = self.server.state
        options = self._control_options(body)
        match = PATH_RE.match(path)
        if match and self.command == "POST":
            action, invoice_id = match.group(1), int(match.group(2))
            if action == "pay":
                invoice, update_id, update_body = state.pay(invoice_id, options)
                delivery = (state.deliver(invoice_id, update_id, update_body)
                            if options.get("deliver", True) else None)
                return 200, {
                    "invoice": invoice,
                    "update": {"update_id": update_id, "body": update_body.decode(),
                               "signature": signature_for(state.config.token, update_body)},
                    "delivery": delivery,
                }
            if action == "webhook":
                update_id, update_body = state.update_for(invoice_id)
                times = options.get("times", 1)
                if isinstance(times, bool) or not isinstance(times, int) or not 1 <= times <= 100:
                    raise ControlError(400, "times must be 1-100.")
                return 200, {"deliveries": [state.deliver(invoice_id, update_id, update_body)
                                            for _ in range(times)]}
            return 200, state.expire(invoice_id)
        routes = {("GET", "/_fake/invoices"): state.list_invoices,
                  ("GET", "/_fake/deliveries"): state.deliveries,
                  ("GET", "/_fake/calls"): state.calls}
        if (self.command, path) in routes:
            return 200, routes[(self.command, path)]()
        if (self.command, path) == ("POST", "/_fake/reset"):
            state.reset()
            return 200, {"reset": True}
        if (self.command, path) == ("POST", "/_fake/config"):
            if "webhook_url" in options:
                state.webhook_url = str(options["webhook_url"] or "")
            return 200, {"webhook_url": state.webhook_url}
        raise ControlError(404, f"No endpoint {self.command} {path}.")

    def _control_options(self, body: bytes) -> dict[str, Any]:
        if not body:
            return {}
        try:
            options = json.loads(body.decode("utf-8"), parse_float=Decimal)
        except (UnicodeDecodeError, ValueError):
            raise ControlError(400, "Body is not valid JSON.") from None
        if not isinstance(options, dict):
            raise ControlError(400, "Body must be a JSON object.")
        return options

    def _checkout(self, invoice_hash: str, body: bytes) -> None:
        """The demo buyer's page: the invoice and one Pay button per accepted asset."""
        state = self.server.state
        invoice = state.by_hash(invoice_hash)
        if invoice is None:
            self._send(404, b"No such invoice.", "text/plain; charset=utf-8")
            return
        note = ""
        if self.command == "POST":
            asset = parse_qs(body.decode("utf-8", "replace")).get("asset", [""])[-1]
            try:
                _, update_id, update_body = state.pay(invoice["invoice_id"], {"paid_asset": asset})
                delivery = state.deliver(invoice["invoice_id"], update_id, update_body)
                note = f"<p>Paid. Webhook: {html.escape(str(delivery['status'] or delivery['error']))}</p>"
            except (ControlError, ApiError) as error:
                note = f"<p>Not paid: {html.escape(str(error))}</p>"
            invoice = state.by_hash(invoice_hash) or invoice
        currency = invoice.get("fiat") or invoice.get("asset", "")
        assets = invoice.get("accepted_assets") or [invoice.get("asset", "USDT")]
        actions = note + ("".join(
            f'<form method="post"><input type="hidden" name="asset" value="{html.escape(a)}">'
            f'<button>Pay with {html.escape(a)}</button></form>' for a in assets)
            if invoice["status"] == "active" else "")
        page = CHECKOUT_PAGE.format(
            invoice_id=invoice["invoice_id"], amount=html.escape(f"{invoice['amount']} {currency}"),
            description=html.escape(invoice.get("description", "")),
            status=html.escape(invoice["status"]), actions=actions,
        )
        self._send(200, page.encode(), "text/html; charset=utf-8")

    def _send_json(self, status: int, payload: Any) -> None:
        self._send(status, json.dumps(payload).encode(), "application/json")

    def _send(self, status: int, payload: bytes, content_type: str) -> None:
        try:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError):
            self.log_message("%s %s client went away before the answer", self.command, self.path)


class FakeCryptoPayServer(FakeHTTPServer):
    """A threaded HTTP server carrying one fake Crypto Pay app."""

    def __init__(self, address: tuple[str, int], config: FakeCryptoPayConfig) -> None:
        self.config = config
        self.state = FakeCryptoPayState(config)
        super().__init__(address, FakeCryptoPayHandler)


class RunningFakeCryptoPay(ServingThread[FakeCryptoPayServer]):
    """A fake Crypto Pay serving from a background thread."""

    @property
    def config(self) -> FakeCryptoPayConfig:
        return self.server.config


def start_fake_cryptopay(
    config: FakeCryptoPayConfig, *, host: str = "127.0.0.1", port: int = 0
) -> RunningFakeCryptoPay:
    """Start a fake Crypto Pay in a daemon thread; port 0 picks a free port."""
    return RunningFakeCryptoPay(FakeCryptoPayServer((host, port), config), name="fake-cryptopay")


def main(argv: list[str] | None = None) -> None:
    """Serve the fake Crypto Pay until interrupted."""
    parser = argparse.ArgumentParser(prog="python -m fakes.cryptopay", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8003)
    parser.add_argument("--token", default="fake-cryptopay-token")
    parser.add_argument("--network", choices=sorted(BOT_NAMES), default="testnet")
    parser.add_argument("--webhook-url", default="")
    parser.add_argument("--public-url", default="",
                        help="URL browsers reach this fake at, for checkout links")
    parser.add_argument("--state", default="",
                        help="a JSON file to keep invoices in across restarts (default: memory)")
    args = parser.parse_args(argv)
    config = FakeCryptoPayConfig(token=args.token, network=args.network,
                                 webhook_url=args.webhook_url, public_url=args.public_url,
                                 state_path=args.state)
    server = FakeCryptoPayServer((args.host, args.port), config)
    sys.stderr.write(f"fake Crypto Pay ({args.network}) listening on {server.url}, "
                     f"webhooks to {args.webhook_url or '(none)'}, "
                     f"state {args.state or 'in memory'}\n")
    sys.stderr.flush()
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
