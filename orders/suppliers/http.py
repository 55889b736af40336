"""SupplierClient for a JSON-over-HTTP Stars supplier (the sandbox speaks the same API)."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from http.cookiejar import DefaultCookiePolicy
from typing import Any
from urllib.parse import quote

import requests
import urllib3.exceptions

from orders.exceptions import (
    RESPONSE_BODY_LIMIT,
    IdempotencyConflict,
    InsufficientBalance,
    InvalidRecipient,
    OutcomeUnknown,
    RateLimited,
    SupplierAuthError,
    SupplierError,
    SupplierNotFound,
    SupplierRequestError,
    SupplierUnavailable,
)
from orders.suppliers.base import (
    RecipientInfo,
    SupplierBalance,
    SupplierOrder,
    SupplierOrderStatus,
)

PLATFORM = "telegram"
DEFAULT_RETRY_AFTER = 1.0
# Orders per page of GET /orders by date, and the most pages one listing follows: a supplier
# that kept sending cursors must not keep us reading for ever.
ORDERS_PAGE_LIMIT = 100
ORDERS_MAX_PAGES = 1000

# The supplier's error code decides the class; the HTTP status is only a fallback, because
# one supplier sends insufficient balance as HTTP 500.
_ERROR_BY_CODE: dict[str, type[SupplierError]] = {
    "invalid_recipient": InvalidRecipient,
    "insufficient_balance": InsufficientBalance,
    "unauthorized": SupplierAuthError,
    "forbidden": SupplierAuthError,
    "rate_limited": RateLimited,
    "unavailable": SupplierUnavailable,
    "idempotency_conflict": IdempotencyConflict,
    "not_found": SupplierNotFound,
    "invalid_request": SupplierRequestError,
}


_sessions = threading.local()


def thread_session(base_url: str) -> requests.Session:
    """This thread's HTTP session for one supplier address: its connections are reused.

    requests.Session is not documented as thread-safe, so each thread has its own; requests
    never retries by itself (no Retry configured), so a POST is sent at most once per call.
    """
    by_url: dict[str, requests.Session] = getattr(_sessions, "by_url", None) or {}
    _sessions.by_url = by_url
    session = by_url.get(base_url)
    if session is None:
        session = by_url[base_url] = requests.Session()
        # Each call stands alone: nothing a supplier sets as a cookie is sent back.
        session.cookies.set_policy(DefaultCookiePolicy(allowed_domains=[]))
    return session


class _MalformedResponse(Exception):
    """A 2xx answer we cannot read as what we asked for."""


@dataclass(frozen=True)
class _Exchange:
    """One HTTP request and its answer, as the audit trail records them."""

    request: dict[str, Any]
    status: int
    text: str
    retry_after_header: str | None
    elapsed_ms: int

    def payload(self) -> Any:
        """The body parsed as JSON with exact decimals, or None when it is not JSON."""
        try:
            return json.loads(self.text, parse_float=Decimal)
        except ValueError:
            return None

    def raw(self) -> dict[str, Any]:
        """The exchange as JSON-ready data for the caller's audit row."""
        try:
            body: Any = json.loads(self.text)
        except ValueError:
            body = self.text[:RESPONSE_BODY_LIMIT]
        return {
            "request": self.request,
            "status": self.status,
            "body": body,
            "elapsed_ms": self.elapsed_ms,
        }


class HttpSupplierClient:
    """Talks to the supplier over HTTP and turns every outcome into a value or a SupplierError.

    Only POST /topup moves money, so only it raises OutcomeUnknown; any failure of a read
    (GET, validate-user) is SupplierUnavailable, as repeating a read is always safe.
    """

    def __init__(
        self,
        *,
        base_url: str,
        api_key: str,
        timeout: float = 10.0,
        connect_timeout: float = 3.0,
        session: requests.Session | None = None,
    ) -> None:
        self._base_url = base_url.rstrip("/")
        self._api_key = api_key
        self._timeout = timeout
        self._connect_timeout = connect_timeout
        self._session = session or requests.Session()

    def __repr__(self) -> str:
        # Never show the API key, e.g. in tracebacks with locals.
        return f"HttpSupplierClient(base_url={self._base_url!r}, timeout={self._timeout})"

    def validate_recipient(self, recipient: str) -> RecipientInfo:
        """Resolve a numeric ID or @username; raises InvalidRecipient if it cannot receive."""
        try:
            exchange = self._call(
                "POST",
                "/validate-user",
                json_body={"platform": PLATFORM, "user_id": recipient},
                moves_money=False,
            )
        except SupplierRequestError as error:
            if not isinstance(error, SupplierNotFound) and error.code != "invalid_request":
                raise
            # The only input that varies is the recipient, so invalid_request or not_found
            # here means the recipient is not one the supplier can resolve.
            raise InvalidRecipient(
                error.message,
                code="invalid_recipient",
                http_status=error.http_status,
                response_body=error.response_body,
                raw=error.raw,
            ) from error
        payload = exchange.payload()
        try:
            if not isinstance(payload, dict) or not isinstance(payload.get("valid"), bool):
                raise _MalformedResponse("no boolean 'valid' in the answer")
            if not payload["valid"]:
                reason = payload.get("reason")
                raise InvalidRecipient(
                    f"Supplier cannot deliver to {recipient}"
                    + (f" ({reason})" if isinstance(reason, str) and reason else ""),
                    code="invalid_recipient",
                    http_status=exchange.status,
                    response_body=exchange.text,
                    raw=exchange.raw(),
                )
            user_id = _user_id(payload.get("user_id"))
            username = payload.get("username")
            if username is not None and not isinstance(username, str):
                raise _MalformedResponse("username is not a string")
        except _MalformedResponse as error:
            raise self._malformed(exchange, str(error), moves_money=False) from None
        return RecipientInfo(user_id=user_id, username=username or None, raw=exchange.raw())

    def place_topup(self, *, user_id: str, stars: int, idempotency_key: str) -> SupplierOrder:
        """Place a top-up once per key; OutcomeUnknown means look it up, never resend blind."""
        if not idempotency_key:
            raise ValueError("idempotency_key must not be empty")
        exchange = self._call(
            "POST",
            "/topup",
            json_body={"platform": PLATFORM, "user_id": user_id, "stars": stars},
            idempotency_key=idempotency_key,
            moves_money=True,
        )
        try:
            order = _order_from(exchange)
            # An answer about some other order tells us nothing about ours.
            if order.reference != idempotency_key:
                raise _MalformedResponse(f"answer is for reference {order.reference!r}")
            if order.stars != stars:
                raise _MalformedResponse(f"answer is for {order.stars} stars, not {stars}")
        except _MalformedResponse as error:
            raise self._malformed(exchange, str(error), moves_money=True) from None
        return order

    def get_order(self, supplier_order_id: str) -> SupplierOrder:
        """Read one order by the supplier's ID; raises SupplierNotFound if there is none."""
        exchange = self._call(
            "GET", f"/orders/{quote(supplier_order_id, safe='')}", moves_money=False
        )
        try:
            order = _order_from(exchange)
            if order.order_id != supplier_order_id:
                raise _MalformedResponse(f"answer is for order {order.order_id!r}")
        except _MalformedResponse as error:
            raise self._malformed(exchange, str(error), moves_money=False) from None
        return order

    def find_by_reference(self, idempotency_key: str) -> SupplierOrder | None:
        """Find the order placed with this idempotency key; None if the supplier has none."""
        try:
            exchange = self._call(
                "GET", "/orders", params={"reference": idempotency_key}, moves_money=False
            )
        except SupplierNotFound:
            # Only the supplier's own not_found code means "no such order": a bare 404 (say,
            # a wrong base URL) stays an error, because None invites placing the order again.
            return None
        try:
            order = _order_from(exchange)
            if order.reference != idempotency_key:
                raise _MalformedResponse(f"answer is for reference {order.reference!r}")
        except _MalformedResponse as error:
            raise self._malformed(exchange, str(error), moves_money=False) from None
        return order

    def balance(self) -> SupplierBalance:
        """Read our wallet balance at the supplier."""
        exchange = self._call("GET", "/balance", moves_money=False)
        payload = exchange.payload()
        try:
            if not isinstance(payload, dict):
                raise _MalformedResponse("balance answer is not an object")
            amount = _decimal(payload.get("balance"))
            currency = payload.get("currency")
            if amount is None or not isinstance(currency, str) or not currency:
                raise _MalformedResponse("balance or currency missing")
        except _MalformedResponse as error:
            raise self._malformed(exchange, str(error), moves_money=False) from None
        return SupplierBalance(amount=amount, currency=currency, raw=exchange.raw())

    def orders_between(self, *, since: datetime, until: datetime) -> list[SupplierOrder]:
        """Every order the supplier created from `since` (inclusive) to `until` (exclusive).

        Follows GET /orders?created_after=&created_before=&limit=&cursor= page by page until
        next_cursor is null. A cursor seen twice, or more than ORDERS_MAX_PAGES pages, is an
        unreadable answer (SupplierUnavailable), never a silently short list.
        """
        params = {"created_after": _wire_time(since), "created_before": _wire_time(until),
                  "limit": str(ORDERS_PAGE_LIMIT)}
        found: list[SupplierOrder] = []
        seen_cursors: set[str] = set()
        for _page in range(ORDERS_MAX_PAGES):
            exchange = self._call("GET", "/orders", params=params, moves_money=False)
            payload = exchange.payload()
            try:
                if not isinstance(payload, dict) or not isinstance(payload.get("orders"), list):
                    raise _MalformedResponse("no 'orders' list in the answer")
                found.extend(_order_from_payload(item, raw={"body": item})
                             for item in payload["orders"])
                cursor = payload.get("next_cursor")
                if cursor is None or cursor == "":
                    return found
                if not isinstance(cursor, str):
                    raise _MalformedResponse("next_cursor is not a string")
                if cursor in seen_cursors:
                    raise _MalformedResponse(f"cursor {cursor!r} came back twice")
            except _MalformedResponse as error:
                raise self._malformed(exchange, str(error), moves_money=False) from None
            seen_cursors.add(cursor)
            params = {**params, "cursor": cursor}
        raise SupplierUnavailable(
            f"Supplier listed more than {ORDERS_MAX_PAGES} pages of orders",
            code="too_many_pages",
        )

    # --- transport -----------------------------------------------------------------------

    def _call(
        self,
        method: str,
        path: str,
        *,
        moves_money: bool,
        json_body: dict[str, Any] | None = None,
        params: dict[str, str] | None = None,
        idempotency_key: str | None = None,
    ) -> _Exchange:
        """Send one request; return a 2xx exchange or raise the matching SupplierError."""
        # What the audit row keeps of the request: never the Authorization header.
        request: dict[str, Any] = {"method": method, "path": path}
        if params:
            request["params"] = params
        if json_body is not None:
            request["json"] = json_body
        headers = {"Authorization": f"Bearer {self._api_key}", "Accept": "application/json"}
        if idempotency_key is not None:
            headers["Idempotency-Key"] = idempotency_key
            request["idempotency_key"] = idempotency_key
        started = time.monotonic()
        try:
            response = self._session.request(
                method,
                self._base_url + path,
                params=params,
                json=json_body,
                headers=headers,
                timeout=(self._connect_timeout, self._timeout),
                # A redirect would turn POST into GET; treat it as an answer instead.
                allow_redirects=False,
            )
        except requests.RequestException as error:
            raw = {
                "request": request,
                "status": None,
                "body": None,
                "error": f"{type(error).__name__}: {error}"[:RESPONSE_BODY_LIMIT],
                "elapsed_ms": _ms_since(started),
            }
            raise _transport_error(error, moves_money=moves_money, raw=raw) from error
        exchange = _Exchange(
            request=request,
            status=response.status_code,
            text=response.content.decode("utf-8", errors="replace"),
            retry_after_header=response.headers.get("Retry-After"),
            elapsed_ms=_ms_since(started),
        )
        failure = _error_from(exchange, moves_money=moves_money)
        if failure is not None:
            raise failure
        return exchange

    @staticmethod
    def _malformed(exchange: _Exchange, why: str, *, moves_money: bool) -> SupplierError:
        error_class = OutcomeUnknown if moves_money else SupplierUnavailable
        return error_class(
            f"Unreadable answer from the supplier: {why}",
            code="malformed_response",
            http_status=exchange.status,
            response_body=exchange.text,
            raw=exchange.raw(),
        )


def _ms_since(started: float) -> int:
    return int((time.monotonic() - started) * 1000)


def _failed_before_sending(error: requests.ConnectionError) -> bool:
    """Whether the connection never opened (refused, DNS, connect timeout): nothing was sent."""
    reason: Any = error.args[0] if error.args else None
    if isinstance(reason, urllib3.exceptions.MaxRetryError):
        reason = reason.reason
    # NewConnectionError (refused, DNS failure) subclasses ConnectTimeoutError in urllib3.
    return isinstance(reason, urllib3.exceptions.ConnectTimeoutError)


def _transport_error(
    error: requests.RequestException, *, moves_money: bool, raw: dict[str, Any]
) -> SupplierError:
    """Classify a request that got no HTTP answer."""
    message = f"{type(error).__name__}: {error}"
    if isinstance(error, requests.ConnectTimeout):
        return SupplierUnavailable(message, code="connect_timeout", raw=raw)
    if isinstance(error, requests.exceptions.SSLError):
        # TLS fails during the handshake, before the request is written.
        return SupplierUnavailable(message, code="tls_error", raw=raw)
    if isinstance(error, requests.ConnectionError) and _failed_before_sending(error):
        return SupplierUnavailable(message, code="connect_failed", raw=raw)
    if isinstance(error, requests.ReadTimeout):
        code = "read_timeout"
    elif isinstance(error, requests.ConnectionError):
        code = "connection_lost"
    else:
        code = "transport_error"
    # The request left us and the answer did not come back: the supplier may have acted.
    error_class = OutcomeUnknown if moves_money else SupplierUnavailable
    return error_class(message, code=code, raw=raw)


def _error_from(exchange: _Exchange, *, moves_money: bool) -> SupplierError | None:
    """The SupplierError an answer stands for, or None for a plain success."""
    payload = exchange.payload()
    envelope = payload.get("error") if isinstance(payload, dict) else None
    code = ""
    message = ""
    retry_after: Any = None
    if isinstance(envelope, dict):
        code = envelope["code"] if isinstance(envelope.get("code"), str) else ""
        message = envelope["message"] if isinstance(envelope.get("message"), str) else ""
        retry_after = envelope.get("retry_after")
    status = exchange.status
    if 200 <= status < 300 and not code:
        return None

    error_class = _ERROR_BY_CODE.get(code)
    if error_class is None:
        if status in (401, 403):
            error_class = SupplierAuthError
        elif status == 429:
            error_class = RateLimited
        elif status >= 500 or 200 <= status < 300:
            # A server-side failure (internal_error, 502, 504, an HTML error page, an error
            # envelope we do not know) may come after the top-up was committed.
            error_class = OutcomeUnknown if moves_money else SupplierUnavailable
        else:
            error_class = SupplierRequestError
    kwargs: dict[str, Any] = {
        "code": code or f"http_{status}",
        "http_status": status,
        "response_body": exchange.text,
        "raw": exchange.raw(),
    }
    text = message or f"Supplier answered HTTP {status}"
    if error_class is RateLimited:
        return RateLimited(
            text, retry_after=_retry_after(retry_after, exchange.retry_after_header), **kwargs
        )
    return error_class(text, **kwargs)


def _retry_after(from_body: Any, from_header: str | None) -> float:
    for value in (from_body, from_header):
        if isinstance(value, bool) or value is None:
            continue
        try:
            seconds = float(value)
        except (TypeError, ValueError):
            continue  # an HTTP-date Retry-After; fall back to the default pause
        if seconds >= 0:
            return seconds
    return DEFAULT_RETRY_AFTER


def _order_from(exchange: _Exchange) -> SupplierOrder:
    return _order_from_payload(exchange.payload(), raw=exchange.raw())


def _order_from_payload(payload: Any, *, raw: dict[str, Any]) -> SupplierOrder:
    if not isinstance(payload, dict):
        raise _MalformedResponse("order answer is not a JSON object")
    order_id = payload.get("order_id")
    status = payload.get("status")
    reference = payload.get("reference")
    stars = payload.get("stars")
    if not isinstance(order_id, str) or not order_id:
        raise _MalformedResponse("order_id missing")
    if not isinstance(status, str) or not status:
        raise _MalformedResponse("status missing")
    if not isinstance(reference, str):
        raise _MalformedResponse("reference missing")
    if isinstance(stars, bool) or not isinstance(stars, int):
        raise _MalformedResponse("stars is not an integer")
    failure_reason = payload.get("failure_reason")
    return SupplierOrder(
        order_id=order_id,
        status=SupplierOrderStatus.from_supplier(status),
        reference=reference,
        user_id=_user_id(payload.get("user_id")),
        stars=stars,
        cost=_decimal(payload.get("cost")),
        failure_reason=failure_reason if isinstance(failure_reason, str) else "",
        created_at=_timestamp(payload.get("created_at")),
        raw=raw,
    )


def _wire_time(moment: datetime) -> str:
    """An aware datetime as the supplier's UTC ISO 8601 form, e.g. 2026-11-30T00:00:00Z."""
    if moment.tzinfo is None:
        raise ValueError("orders_between needs timezone-aware datetimes")
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _timestamp(value: Any) -> datetime | None:
    """An ISO 8601 time from the wire, made aware (UTC when it names no zone); None if absent."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise _MalformedResponse("created_at is not a string")
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise _MalformedResponse(f"created_at {value!r} is not an ISO 8601 time") from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _user_id(value: Any) -> str:
    # Some suppliers send Telegram IDs as JSON numbers; we keep them as digit strings.
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not value.isdigit():
        raise _MalformedResponse("user_id is not numeric")
    return value


def _decimal(value: Any) -> Decimal | None:
    """Money from the wire: a decimal string or number, never via float."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int, Decimal)):
        raise _MalformedResponse(f"amount {value!r} is not a decimal")
    try:
        amount = Decimal(value)
    except InvalidOperation:
        raise _MalformedResponse(f"amount {value!r} is not a decimal") from None
    if not amount.is_finite():
        raise _MalformedResponse(f"amount {value!r} is not finite")
    return amount
