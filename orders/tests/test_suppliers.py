"""The HTTP supplier client against the real sandbox supplier (and a few canned servers).

No Django database is needed: these tests talk HTTP to 127.0.0.1 only.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import SimpleNamespace
from typing import Any

import pytest
import requests

from fakes.fixtures import SandboxSupplier
from orders.exceptions import (
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
from orders.suppliers import get_supplier_client
from orders.suppliers.base import RecipientInfo, SupplierBalance, SupplierOrderStatus
from orders.suppliers.http import HttpSupplierClient

API_KEY = "sandbox-key"


@pytest.fixture
def sandbox_supplier_options() -> dict[str, Any]:
    """Hang 2 s against 0.5 s client timeouts, and a short slow phase, keep this file fast."""
    return {
        "api_key": API_KEY,
        "hang_seconds": 2.0,
        "slow_seconds": 0.5,
        "balance": Decimal("10000"),
        "cost_per_star": Decimal("0.0165"),
    }


@pytest.fixture
def impatient_client(sandbox_supplier: SandboxSupplier) -> HttpSupplierClient:
    """A client that gives up long before @sandbox_timeout answers."""
    return HttpSupplierClient(base_url=sandbox_supplier.url, api_key=API_KEY, timeout=0.5)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


# --- validate_recipient ------------------------------------------------------------------


def test_validate_by_numeric_id(supplier_client: HttpSupplierClient) -> None:
    info = supplier_client.validate_recipient("100000001")
    assert info == RecipientInfo(user_id="100000001", username="@sandbox_ok")
    assert info.raw["request"] == {"method": "POST", "path": "/validate-user",
                                   "json": {"platform": "telegram", "user_id": "100000001"}}
    assert info.raw["status"] == 200
    assert info.raw["body"]["valid"] is True


def test_validate_by_username(supplier_client: HttpSupplierClient) -> None:
    assert supplier_client.validate_recipient("@SANDBOX_SLOW") == RecipientInfo(
        user_id="100000002", username="@sandbox_slow")
    plain = supplier_client.validate_recipient("@a_buyer")
    assert plain.username == "@a_buyer" and plain.user_id.isdigit()


@pytest.mark.parametrize("recipient", ["100000003", "@sandbox_invalid"])
def test_validate_invalid_recipient(supplier_client: HttpSupplierClient, recipient: str) -> None:
    with pytest.raises(InvalidRecipient) as caught:
        supplier_client.validate_recipient(recipient)
    assert caught.value.code == "invalid_recipient"
    assert caught.value.http_status == 200
    assert "not_found" in caught.value.response_body
    assert caught.value.raw["request"]["json"]["user_id"] == recipient


def test_validate_malformed_recipient_is_invalid(supplier_client: HttpSupplierClient) -> None:
    with pytest.raises(InvalidRecipient) as caught:
        supplier_client.validate_recipient("@no")
    assert caught.value.http_status == 400
    assert isinstance(caught.value.__cause__, SupplierRequestError)


def test_validate_sees_a_username_change_owners(supplier_client: HttpSupplierClient) -> None:
    assert supplier_client.validate_recipient("@sandbox_renamed").user_id == "100000009"
    assert supplier_client.validate_recipient("@sandbox_renamed").user_id == "100000010"
    assert supplier_client.validate_recipient("100000009").username is None


# --- place_topup and reads ---------------------------------------------------------------


def test_topup_completed_at_once(
    supplier_client: HttpSupplierClient, sandbox_supplier: SandboxSupplier
) -> None:
    order = supplier_client.place_topup(user_id="100000001", stars=500, idempotency_key="ok-1")
    assert order.order_id == "SUP-000001"
    assert order.status is SupplierOrderStatus.COMPLETED
    assert order.reference == "ok-1"
    assert order.user_id == "100000001"
    assert order.stars == 500
    assert order.cost == Decimal("8.25")
    assert order.failure_reason == ""
    assert order.raw["request"] == {
        "method": "POST", "path": "/topup", "idempotency_key": "ok-1",
        "json": {"platform": "telegram", "user_id": "100000001", "stars": 500}}
    assert order.raw["status"] == 201
    assert order.raw["body"]["order_id"] == "SUP-000001"
    # The audit trail must be storable as JSON and must not carry our credentials.
    assert API_KEY not in json.dumps(order.raw)
    assert API_KEY not in repr(supplier_client)
    assert sandbox_supplier.calls("ok-1") == {"topup_calls": 1, "orders_created": 1}


def test_topup_by_username(supplier_client: HttpSupplierClient) -> None:
    order = supplier_client.place_topup(user_id="@sandbox_ok", stars=50, idempotency_key="u")
    assert order.user_id == "100000001"
    assert order.raw["body"]["username"] == "@sandbox_ok"


def test_balance(supplier_client: HttpSupplierClient) -> None:
    assert supplier_client.balance() == SupplierBalance(amount=Decimal("10000.00"),
                                                        currency="USD")
    supplier_client.place_topup(user_id="100000001", stars=500, idempotency_key="b")
    balance = supplier_client.balance()
    assert balance.amount == Decimal("9991.75")
    assert balance.raw["request"] == {"method": "GET", "path": "/balance"}


def test_replay_returns_the_same_order_and_charges_once(
    supplier_client: HttpSupplierClient, sandbox_supplier: SandboxSupplier
) -> None:
    first = supplier_client.place_topup(user_id="100000001", stars=500, idempotency_key="r")
    second = supplier_client.place_topup(user_id="100000001", stars=500, idempotency_key="r")
    assert second == first
    assert (first.raw["status"], second.raw["status"]) == (201, 200)
    assert sandbox_supplier.calls("r") == {"topup_calls": 2, "orders_created": 1}
    assert supplier_client.balance().amount == Decimal("9991.75")


def test_same_key_different_body_is_a_conflict(supplier_client: HttpSupplierClient) -> None:
    supplier_client.place_topup(user_id="100000001", stars=500, idempotency_key="c")
    with pytest.raises(IdempotencyConflict) as caught:
        supplier_client.place_topup(user_id="100000001", stars=100, idempotency_key="c")
    assert caught.value.code == "idempotency_conflict"
    assert caught.value.http_status == 409
    assert caught.value.raw["request"]["json"]["stars"] == 100


def test_get_order_and_find_by_reference(supplier_client: HttpSupplierClient) -> None:
    placed = supplier_client.place_topup(user_id="100000001", stars=10, idempotency_key="g")
    assert supplier_client.get_order(placed.order_id) == placed
    found = supplier_client.find_by_reference("g")
    assert found == placed
    assert found is not None
    assert found.raw["request"] == {"method": "GET", "path": "/orders",
                                    "params": {"reference": "g"}}


def test_unknown_order_and_reference(supplier_client: HttpSupplierClient) -> None:
    with pytest.raises(SupplierNotFound) as caught:
        supplier_client.get_order("SUP-999999")
    assert isinstance(caught.value, SupplierRequestError)
    assert caught.value.http_status == 404
    assert supplier_client.find_by_reference("never-placed") is None


def test_slow_recipient_is_processing_then_completed(supplier_client: HttpSupplierClient) -> None:
    order = supplier_client.place_topup(user_id="@sandbox_slow", stars=500, idempotency_key="s")
    assert order.status is SupplierOrderStatus.PROCESSING
    time.sleep(0.6)
    assert supplier_client.get_order(order.order_id).status is SupplierOrderStatus.COMPLETED


def test_fail_recipient_fails_and_is_refunded(supplier_client: HttpSupplierClient) -> None:
    order = supplier_client.place_topup(user_id="100000004", stars=500, idempotency_key="f")
    assert order.status is SupplierOrderStatus.PROCESSING
    assert supplier_client.balance().amount == Decimal("9991.75")
    time.sleep(0.6)
    failed = supplier_client.get_order(order.order_id)
    assert failed.status is SupplierOrderStatus.FAILED
    assert failed.failure_reason == "recipient_cannot_receive"
    assert supplier_client.balance().amount == Decimal("10000.00")


def test_hold_recipient_answers_within_the_timeout(supplier_client: HttpSupplierClient) -> None:
    started = time.monotonic()
    order = supplier_client.place_topup(user_id="@sandbox_hold", stars=5, idempotency_key="h")
    assert time.monotonic() - started >= 0.5
    assert order.status is SupplierOrderStatus.COMPLETED


# --- errors from the sandbox -------------------------------------------------------------


def test_read_timeout_after_commit_is_outcome_unknown_and_resolved_by_lookup(
    impatient_client: HttpSupplierClient, sandbox_supplier: SandboxSupplier
) -> None:
    started = time.monotonic()
    with pytest.raises(OutcomeUnknown) as caught:
        impatient_client.place_topup(user_id="@sandbox_timeout", stars=500,
                                     idempotency_key="t")
    assert time.monotonic() - started < 1.5
    assert caught.value.code == "read_timeout"
    assert caught.value.http_status is None
    assert caught.value.raw["request"]["idempotency_key"] == "t"
    assert caught.value.raw["status"] is None
    found = impatient_client.find_by_reference("t")
    assert found is not None and found.status is SupplierOrderStatus.COMPLETED
    assert sandbox_supplier.calls("t") == {"topup_calls": 1, "orders_created": 1}
    # Re-placing with the same key is answered at once from the supplier's records.
    assert impatient_client.place_topup(user_id="@sandbox_timeout", stars=500,
                                        idempotency_key="t") == found
    assert sandbox_supplier.calls("t") == {"topup_calls": 2, "orders_created": 1}
    assert impatient_client.balance().amount == Decimal("9991.75")


def test_flaky_supplier_internal_error_then_success(
    supplier_client: HttpSupplierClient, sandbox_supplier: SandboxSupplier
) -> None:
    with pytest.raises(OutcomeUnknown) as caught:
        supplier_client.place_topup(user_id="@sandbox_flaky", stars=500, idempotency_key="fl")
    assert caught.value.code == "internal_error"
    assert caught.value.http_status == 500
    assert supplier_client.find_by_reference("fl") is None
    order = supplier_client.place_topup(user_id="@sandbox_flaky", stars=500,
                                        idempotency_key="fl")
    assert order.status is SupplierOrderStatus.COMPLETED
    with pytest.raises(SupplierUnavailable) as unavailable:
        supplier_client.get_order(order.order_id)
    assert unavailable.value.code == "unavailable"
    assert unavailable.value.http_status == 503
    assert supplier_client.get_order(order.order_id) == order
    assert sandbox_supplier.calls("fl") == {"topup_calls": 2, "orders_created": 1}


def test_insufficient_balance_sent_as_http_500(
    supplier_client: HttpSupplierClient, sandbox_supplier: SandboxSupplier
) -> None:
    sandbox_supplier.set_balance("1.00")
    with pytest.raises(InsufficientBalance) as caught:
        supplier_client.place_topup(user_id="100000001", stars=500, idempotency_key="p")
    assert caught.value.http_status == 500
    assert caught.value.code == "insufficient_balance"
    assert sandbox_supplier.calls("p") == {"topup_calls": 1, "orders_created": 0}


def test_broke_supplier_until_the_balance_is_topped_up(
    supplier_client: HttpSupplierClient, sandbox_supplier: SandboxSupplier
) -> None:
    with pytest.raises(InsufficientBalance):
        supplier_client.place_topup(user_id="@sandbox_broke", stars=500, idempotency_key="bk")
    sandbox_supplier.set_balance("10000")
    order = supplier_client.place_topup(user_id="@sandbox_broke", stars=500,
                                        idempotency_key="bk")
    assert order.status is SupplierOrderStatus.COMPLETED


def test_rate_limited_then_accepted(supplier_client: HttpSupplierClient) -> None:
    with pytest.raises(RateLimited) as caught:
        supplier_client.place_topup(user_id="100000008", stars=500, idempotency_key="rl")
    assert caught.value.retry_after == 1.0
    assert caught.value.http_status == 429
    order = supplier_client.place_topup(user_id="100000008", stars=500, idempotency_key="rl")
    assert order.status is SupplierOrderStatus.COMPLETED


def test_topup_to_invalid_recipient(
    supplier_client: HttpSupplierClient, sandbox_supplier: SandboxSupplier
) -> None:
    with pytest.raises(InvalidRecipient) as caught:
        supplier_client.place_topup(user_id="@sandbox_invalid", stars=5, idempotency_key="i")
    assert caught.value.http_status == 400
    assert sandbox_supplier.orders() == []


def test_invalid_request(supplier_client: HttpSupplierClient) -> None:
    with pytest.raises(SupplierRequestError) as caught:
        supplier_client.place_topup(user_id="not a user", stars=5, idempotency_key="x")
    assert type(caught.value) is SupplierRequestError
    assert caught.value.code == "invalid_request"
    assert caught.value.http_status == 400


@pytest.mark.parametrize("call", [
    lambda c: c.validate_recipient("100000001"),
    lambda c: c.place_topup(user_id="100000001", stars=5, idempotency_key="a"),
    lambda c: c.get_order("SUP-000001"),
    lambda c: c.find_by_reference("a"),
    lambda c: c.balance(),
], ids=["validate", "topup", "get_order", "find_by_reference", "balance"])
def test_wrong_api_key(
    sandbox_supplier: SandboxSupplier, call: Callable[[HttpSupplierClient], Any]
) -> None:
    client = HttpSupplierClient(base_url=sandbox_supplier.url, api_key="wrong", timeout=2)
    with pytest.raises(SupplierAuthError) as caught:
        call(client)
    assert caught.value.code == "unauthorized"
    assert caught.value.http_status == 401
    assert sandbox_supplier.orders() == []


def test_malformed_answer_after_commit_is_outcome_unknown(
    supplier_client: HttpSupplierClient, sandbox_supplier: SandboxSupplier
) -> None:
    sandbox_supplier.fault("malformed")
    with pytest.raises(OutcomeUnknown) as caught:
        supplier_client.place_topup(user_id="100000001", stars=500, idempotency_key="m")
    assert caught.value.code == "malformed_response"
    assert caught.value.http_status == 201
    assert caught.value.raw["body"] == '{"order_id": "SUP-'
    found = supplier_client.find_by_reference("m")
    assert found is not None and found.status is SupplierOrderStatus.COMPLETED


def test_connection_reset_after_commit_is_outcome_unknown(
    supplier_client: HttpSupplierClient, sandbox_supplier: SandboxSupplier
) -> None:
    sandbox_supplier.fault("reset")
    with pytest.raises(OutcomeUnknown) as caught:
        supplier_client.place_topup(user_id="100000001", stars=500, idempotency_key="rs")
    assert caught.value.code == "connection_lost"
    assert supplier_client.find_by_reference("rs") is not None
    assert sandbox_supplier.calls("rs") == {"topup_calls": 1, "orders_created": 1}


def test_connection_refused_is_unavailable() -> None:
    client = HttpSupplierClient(base_url=f"http://127.0.0.1:{free_port()}", api_key="k",
                                timeout=1)
    for call in (lambda: client.place_topup(user_id="1", stars=5, idempotency_key="k"),
                 lambda: client.balance(),
                 lambda: client.get_order("SUP-1"),
                 lambda: client.find_by_reference("k"),
                 lambda: client.validate_recipient("1")):
        with pytest.raises(SupplierUnavailable) as caught:
            call()
        assert caught.value.code == "connect_failed"
        assert caught.value.raw["status"] is None


def test_stopped_sandbox_is_unavailable(sandbox_supplier: SandboxSupplier,
                                        supplier_client: HttpSupplierClient) -> None:
    sandbox_supplier.stop()
    with pytest.raises(SupplierUnavailable):
        supplier_client.place_topup(user_id="100000001", stars=5, idempotency_key="k")


@pytest.fixture
def silent_server() -> Iterator[str]:
    """A port that accepts connections (kernel backlog) but never answers."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        listener.close()


def test_read_timeouts_unknown_for_topup_unavailable_for_reads(silent_server: str) -> None:
    client = HttpSupplierClient(base_url=silent_server, api_key="k", timeout=0.3)
    with pytest.raises(OutcomeUnknown) as caught:
        client.place_topup(user_id="1", stars=5, idempotency_key="k")
    assert caught.value.code == "read_timeout"
    for read in (client.balance, lambda: client.get_order("SUP-1"),
                 lambda: client.find_by_reference("k"),
                 lambda: client.validate_recipient("1")):
        with pytest.raises(SupplierUnavailable) as unavailable:
            read()
        assert unavailable.value.code == "read_timeout"


# --- canned answers a real supplier might give -------------------------------------------


Canned = Callable[..., HttpSupplierClient]


@pytest.fixture
def canned() -> Iterator[Canned]:
    """Start servers that give one fixed answer to every request; returns clients for them."""
    servers: list[ThreadingHTTPServer] = []

    def start(status: int, body: Any = b"", headers: dict[str, str] | None = None) -> (
        HttpSupplierClient
    ):
        payload = body if isinstance(body, bytes) else (
            body.encode() if isinstance(body, str) else json.dumps(body).encode())

        class Handler(BaseHTTPRequestHandler):
            def answer(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                self.send_response(status)
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = answer

            def log_message(self, format: str, *args: Any) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                         daemon=True).start()
        servers.append(server)
        return HttpSupplierClient(base_url=f"http://127.0.0.1:{server.server_address[1]}",
                                  api_key="k", timeout=2)

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def order_body(**overrides: Any) -> dict[str, Any]:
    return {"order_id": "SUP-000001", "status": "completed", "reference": "key",
            "user_id": "100000001", "stars": 500, "cost": "8.25", **overrides}


def topup(client: HttpSupplierClient) -> Any:
    return client.place_topup(user_id="100000001", stars=500, idempotency_key="key")


@pytest.mark.parametrize("status,body,headers", [
    (502, "<html>Bad Gateway</html>", {"Content-Type": "text/html"}),
    (504, "", {}),
    (503, "Service Unavailable", {}),
    (500, {"error": {"code": "internal_error", "message": "boom"}}, {}),
    (500, {"error": {"code": "something_new", "message": "?"}}, {}),
    (200, {"error": {"code": "something_new", "message": "?"}}, {}),
    (200, "not json", {}),
    (201, ["a", "list"], {}),
    (201, order_body(reference="someone-else"), {}),
    (201, order_body(stars=5), {}),
    (201, order_body(stars="500"), {}),
    (201, order_body(order_id=None), {}),
    (201, order_body(cost="lots"), {}),
    (201, order_body(user_id="@name"), {}),
])
def test_topup_answers_that_may_hide_a_placed_order(
    canned: Canned, status: int, body: Any, headers: dict[str, str]
) -> None:
    with pytest.raises(OutcomeUnknown) as caught:
        topup(canned(status, body, headers))
    assert caught.value.http_status == status


@pytest.mark.parametrize("status,body", [
    (502, "<html>Bad Gateway</html>"),
    (500, {"error": {"code": "internal_error", "message": "boom"}}),
    (200, "not json"),
    (200, {"balance": 12.5}),
    (200, {"currency": "USD"}),
])
def test_read_answers_that_are_broken_are_unavailable(
    canned: Canned, status: int, body: Any
) -> None:
    client = canned(status, body)
    with pytest.raises(SupplierUnavailable):
        client.balance()
    with pytest.raises(SupplierUnavailable):
        client.get_order("SUP-000001")


@pytest.mark.parametrize("status,body,headers,error_class", [
    (503, {"error": {"code": "unavailable", "message": "maintenance"}}, {}, SupplierUnavailable),
    (500, {"error": {"code": "insufficient_balance", "message": "x"}}, {}, InsufficientBalance),
    (200, {"error": {"code": "insufficient_balance", "message": "x"}}, {}, InsufficientBalance),
    (400, {"error": {"code": "invalid_recipient", "message": "x"}}, {}, InvalidRecipient),
    (404, {"error": {"code": "invalid_recipient", "message": "x"}}, {}, InvalidRecipient),
    (403, "", {}, SupplierAuthError),
    (401, "<html>no</html>", {}, SupplierAuthError),
    (409, {"error": {"code": "idempotency_conflict", "message": "x"}}, {},
     IdempotencyConflict),
    (418, "teapot", {}, SupplierRequestError),
    (302, "", {"Location": "/elsewhere"}, SupplierRequestError),
    (429, "", {"Retry-After": "7"}, RateLimited),
])
def test_topup_errors_are_classified_by_code_then_status(
    canned: Canned, status: int, body: Any, headers: dict[str, str],
    error_class: type[SupplierError],
) -> None:
    with pytest.raises(error_class) as caught:
        topup(canned(status, body, headers))
    assert type(caught.value) is error_class
    assert caught.value.http_status == status


def test_retry_after_comes_from_the_header_when_the_body_has_none(canned: Canned) -> None:
    with pytest.raises(RateLimited) as caught:
        topup(canned(429, "", {"Retry-After": "7"}))
    assert caught.value.retry_after == 7.0
    with pytest.raises(RateLimited) as dated:
        topup(canned(429, "", {"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}))
    assert dated.value.retry_after == 1.0


def test_a_bare_404_on_lookup_is_not_taken_as_no_order(canned: Canned) -> None:
    # Only the supplier's not_found code may say "no order", or we might place it twice.
    with pytest.raises(SupplierRequestError) as caught:
        canned(404, "<html>Not Found</html>").find_by_reference("key")
    assert type(caught.value) is SupplierRequestError


def test_response_body_is_truncated_to_10_kb(canned: Canned) -> None:
    with pytest.raises(OutcomeUnknown) as caught:
        topup(canned(500, "x" * 25_000))
    assert len(caught.value.response_body) == 10_000
    assert len(caught.value.raw["body"]) == 10_000


@pytest.mark.parametrize("status,expected", [
    ("reversed", SupplierOrderStatus.REVERSED),
    ("created", SupplierOrderStatus.PENDING),
    ("Submitted", SupplierOrderStatus.PROCESSING),
    ("awaiting_manual_review", SupplierOrderStatus.PROCESSING),
])
def test_status_mapping(canned: Canned, status: str, expected: SupplierOrderStatus) -> None:
    assert topup(canned(200, order_body(status=status))).status is expected


def test_numbers_on_the_wire_become_exact_values(canned: Canned) -> None:
    order = topup(canned(200, b'{"order_id": "SUP-1", "status": "completed", '
                              b'"reference": "key", "user_id": 100000001, "stars": 500, '
                              b'"cost": 8.2500000000000001}'))
    assert order.user_id == "100000001"
    assert order.cost == Decimal("8.2500000000000001")
    balance = canned(200, b'{"balance": 0.1, "currency": "USD"}').balance()
    assert balance.amount == Decimal("0.1")


@pytest.mark.parametrize("error", [
    requests.ConnectTimeout("connect timed out"),
    requests.exceptions.SSLError("handshake failed"),
])
def test_failures_before_sending_are_unavailable_even_for_topup(error: Exception) -> None:
    class FailingSession(requests.Session):
        def request(self, *args: Any, **kwargs: Any) -> requests.Response:  # type: ignore[override]
            raise error

    client = HttpSupplierClient(base_url="http://127.0.0.1:9", api_key="k",
                                session=FailingSession())
    with pytest.raises(SupplierUnavailable):
        topup(client)


def test_a_broken_body_stream_is_outcome_unknown() -> None:
    class FailingSession(requests.Session):
        def request(self, *args: Any, **kwargs: Any) -> requests.Response:  # type: ignore[override]
            raise requests.exceptions.ChunkedEncodingError("stream cut")

    client = HttpSupplierClient(base_url="http://127.0.0.1:9", api_key="k",
                                session=FailingSession())
    with pytest.raises(OutcomeUnknown) as caught:
        topup(client)
    assert caught.value.code == "transport_error"


def test_every_call_sends_the_configured_timeouts_and_bearer_key(
    sandbox_supplier: SandboxSupplier
) -> None:
    seen: list[dict[str, Any]] = []

    class RecordingSession(requests.Session):
        def request(self, *args: Any, **kwargs: Any) -> requests.Response:  # type: ignore[override]
            seen.append(kwargs)
            return super().request(*args, **kwargs)

    client = HttpSupplierClient(base_url=sandbox_supplier.url + "/", api_key=API_KEY,
                                timeout=4.0, connect_timeout=1.5, session=RecordingSession())
    client.place_topup(user_id="100000001", stars=5, idempotency_key="hdr")
    client.balance()
    assert [call["timeout"] for call in seen] == [(1.5, 4.0), (1.5, 4.0)]
    assert seen[0]["headers"]["Authorization"] == f"Bearer {API_KEY}"
    assert seen[0]["headers"]["Idempotency-Key"] == "hdr"
    assert "Idempotency-Key" not in seen[1]["headers"]


def test_get_supplier_client_reads_settings(
    monkeypatch: pytest.MonkeyPatch, sandbox_supplier: SandboxSupplier
) -> None:
    monkeypatch.setattr("django.conf.settings", SimpleNamespace(
        SUPPLIER_BASE_URL=sandbox_supplier.url, SUPPLIER_API_KEY=API_KEY, SUPPLIER_TIMEOUT="3"))
    client = get_supplier_client()
    assert isinstance(client, HttpSupplierClient)
    assert client.balance().amount == Decimal("10000.00")


def test_unknown_status_strings_keep_the_order_in_processing() -> None:
    assert SupplierOrderStatus.from_supplier("completed") is SupplierOrderStatus.COMPLETED
    assert SupplierOrderStatus.from_supplier("unknown") is SupplierOrderStatus.PROCESSING
    assert not SupplierOrderStatus.PROCESSING.is_final
    assert SupplierOrderStatus.REVERSED.is_final


# --- orders_between (the daily reconciliation) ---------------------------------------------


def test_orders_between_reads_every_page_of_the_window(
    supplier_client: HttpSupplierClient, sandbox_supplier: SandboxSupplier,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from datetime import UTC, datetime

    monkeypatch.setattr("orders.suppliers.http.ORDERS_PAGE_LIMIT", 2)
    for number in range(5):
        sandbox_supplier.seed_order(reference=f"k{number}", user_id="100000001", stars=50 + number,
                                    created_at=f"2026-11-29T12:00:0{number}Z", cost="0.83")
    sandbox_supplier.seed_order(reference="next-day", user_id="100000001", stars=50,
                                created_at="2026-11-30T00:00:00Z")
    orders = supplier_client.orders_between(since=datetime(2026, 11, 29, tzinfo=UTC),
                                            until=datetime(2026, 11, 30, tzinfo=UTC))
    assert [order.reference for order in orders] == ["k0", "k1", "k2", "k3", "k4"]
    first = orders[0]
    assert (first.stars, first.user_id, first.cost) == (50, "100000001", Decimal("0.83"))
    assert first.status is SupplierOrderStatus.COMPLETED
    assert first.created_at == datetime(2026, 11, 29, 12, 0, 0, tzinfo=UTC)


def test_orders_between_needs_aware_times(supplier_client: HttpSupplierClient) -> None:
    from datetime import datetime

    with pytest.raises(ValueError):
        supplier_client.orders_between(since=datetime(2026, 11, 29), until=datetime(2026, 11, 30))


@pytest.mark.parametrize("body", [
    {"orders": "none"},
    {"next_cursor": None},
    {"orders": [order_body(created_at="yesterday")], "next_cursor": None},
    {"orders": [order_body(stars="5")], "next_cursor": None},
    {"orders": [], "next_cursor": 7},
    # The same cursor again and again: refused, not followed for ever.
    {"orders": [], "next_cursor": "again"},
])
def test_orders_between_refuses_lists_it_cannot_trust(canned: Canned, body: Any) -> None:
    from datetime import UTC, datetime

    with pytest.raises(SupplierUnavailable) as caught:
        canned(200, body).orders_between(since=datetime(2026, 11, 29, tzinfo=UTC),
                                         until=datetime(2026, 11, 30, tzinfo=UTC))
    assert caught.value.code == "malformed_response"


def test_orders_between_sends_the_window_in_utc(canned: Canned) -> None:
    from datetime import datetime, timedelta, timezone

    client = canned(200, {"orders": [], "next_cursor": None})
    sent: list[dict[str, Any]] = []
    real = client._session.request

    def recording(method: str, url: str, **kwargs: Any) -> Any:
        sent.append(kwargs["params"])
        return real(method, url, **kwargs)

    client._session.request = recording  # type: ignore[method-assign]
    moscow = timezone(timedelta(hours=3))
    assert client.orders_between(since=datetime(2026, 11, 29, 3, tzinfo=moscow),
                                 until=datetime(2026, 11, 30, 3, tzinfo=moscow)) == []
    assert sent == [{"created_after": "2026-11-29T00:00:00Z",
                     "created_before": "2026-11-30T00:00:00Z", "limit": "100"}]
