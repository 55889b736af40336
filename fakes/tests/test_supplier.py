"""The sandbox supplier's wire behaviour, checked over real HTTP on 127.0.0.1."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import requests

from fakes.fixtures import SandboxSupplier
from fakes.supplier import MAGIC_RECIPIENTS, SupplierConfig, start_sandbox_supplier

TIMEOUT = 5.0


@pytest.fixture
def sandbox_supplier_options() -> dict[str, Any]:
    """Short timings keep the suite fast; hang_seconds is still far above the test timeouts."""
    return {
        "api_key": "sandbox-key",
        "hang_seconds": 2.0,
        "slow_seconds": 0.5,
        "balance": Decimal("10000"),
        "cost_per_star": Decimal("0.0165"),
    }


class Api:
    """A thin authenticated caller for the sandbox's supplier API."""

    def __init__(self, sandbox: SandboxSupplier) -> None:
        self.url = sandbox.url
        self.headers = {"Authorization": f"Bearer {sandbox.api_key}"}

    def post(self, path: str, body: Any = None, *, key: str | None = None,
             timeout: float = TIMEOUT, **kwargs: Any) -> requests.Response:
        headers = dict(self.headers)
        if key is not None:
            headers["Idempotency-Key"] = key
        return requests.post(f"{self.url}{path}", json=body, headers=headers,
                             timeout=timeout, **kwargs)

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        return requests.get(f"{self.url}{path}", headers=self.headers, timeout=TIMEOUT, **kwargs)

    def validate(self, user_id: str) -> dict[str, Any]:
        response = self.post("/validate-user", {"platform": "telegram", "user_id": user_id})
        assert response.status_code == 200, response.text
        return response.json()

    def topup(self, user_id: str, stars: int = 500, *, key: str | None = None,
              timeout: float = TIMEOUT) -> requests.Response:
        return self.post("/topup", {"platform": "telegram", "user_id": user_id, "stars": stars},
                         key=key or uuid.uuid4().hex, timeout=timeout)

    def balance(self) -> Decimal:
        return Decimal(self.get("/balance").json()["balance"])


@pytest.fixture
def api(sandbox_supplier: SandboxSupplier) -> Api:
    return Api(sandbox_supplier)


def error_code(response: requests.Response) -> str:
    code: str = response.json()["error"]["code"]
    return code


# --- auth and request validation ---------------------------------------------------------


@pytest.mark.parametrize("path,method", [
    ("/validate-user", "POST"), ("/topup", "POST"), ("/orders/SUP-000001", "GET"),
    ("/orders?reference=x", "GET"), ("/balance", "GET"),
])
@pytest.mark.parametrize("authorization", [None, "Bearer wrong-key", "sandbox-key"])
def test_every_api_endpoint_needs_the_bearer_key(
    sandbox_supplier: SandboxSupplier, path: str, method: str, authorization: str | None
) -> None:
    headers = {"Authorization": authorization} if authorization else {}
    response = requests.request(method, f"{sandbox_supplier.url}{path}", headers=headers,
                                json={}, timeout=TIMEOUT)
    assert response.status_code == 401
    assert response.json() == {"error": {"code": "unauthorized",
                                         "message": "Missing or invalid API key."}}


def test_control_endpoints_need_no_key(sandbox_supplier: SandboxSupplier) -> None:
    assert requests.get(f"{sandbox_supplier.url}/_sandbox/orders", timeout=TIMEOUT).json() == []


@pytest.mark.parametrize("body", [
    {"platform": "telegram", "user_id": "5", "stars": 0},
    {"platform": "telegram", "user_id": "5", "stars": 1_000_001},
    {"platform": "telegram", "user_id": "5", "stars": "500"},
    {"platform": "telegram", "user_id": "5", "stars": 500.0},
    {"platform": "telegram", "user_id": "5", "stars": True},
    {"platform": "telegram", "user_id": "5"},
    {"platform": "whatsapp", "user_id": "5", "stars": 5},
    {"user_id": "5", "stars": 5},
    {"platform": "telegram", "user_id": "12ab", "stars": 5},
    {"platform": "telegram", "user_id": "1" * 21, "stars": 5},
    {"platform": "telegram", "user_id": "@abc", "stars": 5},
    {"platform": "telegram", "user_id": "@1abcd", "stars": 5},
    {"platform": "telegram", "user_id": "name_without_at", "stars": 5},
    {"platform": "telegram", "user_id": 123456789, "stars": 5},
    {"platform": "telegram", "stars": 5},
    ["not", "an", "object"],
])
def test_topup_rejects_invalid_requests(
    api: Api, sandbox_supplier: SandboxSupplier, body: Any
) -> None:
    response = api.post("/topup", body, key="bad-request")
    assert response.status_code == 400
    assert error_code(response) == "invalid_request"
    assert sandbox_supplier.calls("bad-request") == {"topup_calls": 1, "orders_created": 0}
    assert api.balance() == Decimal("10000.00")


def test_topup_rejects_bad_json(api: Api) -> None:
    response = requests.post(f"{api.url}/topup", data=b"{not json", timeout=TIMEOUT,
                             headers={**api.headers, "Idempotency-Key": "k"})
    assert response.status_code == 400
    assert error_code(response) == "invalid_request"


@pytest.mark.parametrize("key", [None, "", "k" * 129])
def test_topup_needs_an_idempotency_key_of_1_to_128_chars(api: Api, key: str | None) -> None:
    headers = dict(api.headers)
    if key is not None:
        headers["Idempotency-Key"] = key
    response = requests.post(f"{api.url}/topup", headers=headers, timeout=TIMEOUT,
                             json={"platform": "telegram", "user_id": "5", "stars": 5})
    assert response.status_code == 400
    assert error_code(response) == "invalid_request"


def test_a_128_char_key_is_accepted(api: Api) -> None:
    assert api.topup("100000001", key="k" * 128).status_code == 201


def test_validate_user_rejects_malformed_ids_and_platforms(api: Api) -> None:
    for body in ({"platform": "telegram", "user_id": "@no"},
                 {"platform": "telegram", "user_id": "-5"},
                 {"platform": "x", "user_id": "5"},
                 {"platform": "telegram"}):
        response = api.post("/validate-user", body)
        assert response.status_code == 400, body
        assert error_code(response) == "invalid_request"


def test_unknown_paths_and_methods(api: Api) -> None:
    assert api.get("/nope").status_code == 404
    assert error_code(api.get("/nope")) == "not_found"
    assert api.get("/topup").status_code == 405


# --- validate-user -----------------------------------------------------------------------


def test_a_plain_numeric_id_is_valid_as_user_n(api: Api) -> None:
    assert api.validate("123456789") == {"valid": True, "user_id": "123456789",
                                         "username": "@user123456789"}


def test_a_plain_username_gets_a_stable_id_whatever_its_case(api: Api) -> None:
    first = api.validate("@Some_Buyer")
    assert first["valid"] is True
    assert first["user_id"].isdigit() and len(first["user_id"]) == 10
    assert api.validate("@some_buyer")["user_id"] == first["user_id"]
    assert api.validate("@other_buyer")["user_id"] != first["user_id"]


@pytest.mark.parametrize("magic", [m for m in MAGIC_RECIPIENTS
                                   if m.behaviour not in ("invalid", "renamed")],
                         ids=lambda m: m.username)
def test_magic_recipients_validate_by_id_and_username(api: Api, magic: Any) -> None:
    expected = {"valid": True, "user_id": magic.user_id, "username": magic.username}
    assert api.validate(magic.user_id) == expected
    assert api.validate(magic.username) == expected
    assert api.validate(magic.username.upper()) == expected


@pytest.mark.parametrize("recipient", ["100000003", "@sandbox_invalid", "@SANDBOX_INVALID"])
def test_invalid_recipient_is_not_valid(api: Api, recipient: str) -> None:
    assert api.validate(recipient) == {"valid": False, "user_id": None, "username": None,
                                       "reason": "not_found"}


def test_renamed_username_moves_to_another_account_after_first_lookup(api: Api) -> None:
    assert api.validate("100000009")["username"] == "@sandbox_renamed"
    assert api.validate("100000010")["username"] == "@user100000010"
    assert api.validate("@sandbox_renamed")["user_id"] == "100000009"
    # From now on the name belongs to someone else.
    assert api.validate("@sandbox_renamed")["user_id"] == "100000010"
    assert api.validate("@Sandbox_Renamed")["user_id"] == "100000010"
    assert api.validate("100000009") == {"valid": True, "user_id": "100000009",
                                         "username": None}
    assert api.validate("100000010")["username"] == "@sandbox_renamed"
    topup = api.topup("@sandbox_renamed")
    assert topup.json()["user_id"] == "100000010"


def test_topup_does_not_move_the_renamed_username(api: Api) -> None:
    assert api.topup("@sandbox_renamed").json()["user_id"] == "100000009"
    assert api.validate("@sandbox_renamed")["user_id"] == "100000009"


def test_control_rename_reassigns_a_username(api: Api, sandbox_supplier: SandboxSupplier) -> None:
    sandbox_supplier.rename("@sandbox_ok", "555")
    assert api.validate("@sandbox_ok") == {"valid": True, "user_id": "555",
                                           "username": "@sandbox_ok"}
    assert api.validate("555")["username"] == "@sandbox_ok"
    assert api.topup("@SANDBOX_OK").json()["user_id"] == "555"


# --- topup, orders and balance -----------------------------------------------------------


def test_topup_charges_the_balance_and_returns_the_order(api: Api) -> None:
    response = api.topup("100000001", 500, key="order-1")
    assert response.status_code == 201
    order = response.json()
    assert order == {
        "order_id": "SUP-000001", "status": "completed", "reference": "order-1",
        "user_id": "100000001", "username": "@sandbox_ok", "stars": 500, "cost": "8.25",
        "currency": "USD", "created_at": order["created_at"],
    }
    assert order["created_at"].endswith("Z")
    assert api.get("/balance").json() == {"balance": "9991.75", "currency": "USD"}
    assert api.get("/orders/SUP-000001").json() == order
    assert api.get("/orders", params={"reference": "order-1"}).json() == order
    assert api.topup("@sandbox_ok", 50).json()["order_id"] == "SUP-000002"


def test_cost_is_rounded_half_up_to_cents(api: Api) -> None:
    assert api.topup("100000001", 1).json()["cost"] == "0.02"  # 0.0165
    assert api.topup("100000001", 3).json()["cost"] == "0.05"  # 0.0495


def test_a_plain_recipient_completes_at_once(api: Api) -> None:
    order = api.topup("@some_buyer").json()
    assert order["status"] == "completed"
    assert order["username"] == "@some_buyer"


def test_replaying_a_key_returns_the_original_order_without_charging_again(
    api: Api, sandbox_supplier: SandboxSupplier
) -> None:
    first = api.topup("100000001", 500, key="same")
    second = api.topup("100000001", 500, key="same")
    assert (first.status_code, second.status_code) == (201, 200)
    assert second.json() == first.json()
    assert api.balance() == Decimal("9991.75")
    assert sandbox_supplier.calls("same") == {"topup_calls": 2, "orders_created": 1}


@pytest.mark.parametrize("body", [
    {"platform": "telegram", "user_id": "100000001", "stars": 501},
    {"platform": "telegram", "user_id": "@sandbox_ok", "stars": 500},
])
def test_reusing_a_key_with_another_body_is_a_conflict(api: Api, body: dict[str, Any]) -> None:
    api.topup("100000001", 500, key="same")
    response = api.post("/topup", body, key="same")
    assert response.status_code == 409
    assert error_code(response) == "idempotency_conflict"
    assert api.balance() == Decimal("9991.75")


def test_concurrent_replays_create_one_order(api: Api, sandbox_supplier: SandboxSupplier) -> None:
    results: list[int] = []
    threads = [threading.Thread(target=lambda: results.append(
        api.topup("100000001", 100, key="race").status_code)) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == [200] * 7 + [201]
    assert sandbox_supplier.calls("race") == {"topup_calls": 8, "orders_created": 1}


def test_insufficient_balance_is_http_500_and_creates_nothing(
    api: Api, sandbox_supplier: SandboxSupplier
) -> None:
    sandbox_supplier.set_balance("8.24")
    response = api.topup("100000001", 500, key="poor")
    assert response.status_code == 500
    assert error_code(response) == "insufficient_balance"
    assert sandbox_supplier.calls("poor") == {"topup_calls": 1, "orders_created": 0}
    assert api.balance() == Decimal("8.24")
    sandbox_supplier.set_balance("8.25")
    assert api.topup("100000001", 500, key="poor").status_code == 201
    assert api.balance() == Decimal("0.00")


def test_unknown_orders_are_not_found(api: Api) -> None:
    for response in (api.get("/orders/SUP-999999"), api.get("/orders?reference=nothing")):
        assert response.status_code == 404
        assert error_code(response) == "not_found"
    assert api.get("/orders").status_code == 400


# --- magic behaviours --------------------------------------------------------------------


def test_invalid_recipient_topup_is_refused(api: Api, sandbox_supplier: SandboxSupplier) -> None:
    for recipient in ("100000003", "@sandbox_invalid"):
        response = api.topup(recipient, key=f"inv-{recipient}")
        assert response.status_code == 400
        assert error_code(response) == "invalid_recipient"
    assert sandbox_supplier.orders() == []


def test_slow_recipient_completes_later(api: Api) -> None:
    order = api.topup("@sandbox_slow", key="slow").json()
    assert order["status"] == "processing"
    assert api.get(f"/orders/{order['order_id']}").json()["status"] == "processing"
    time.sleep(0.6)
    assert api.get(f"/orders/{order['order_id']}").json()["status"] == "completed"
    assert api.balance() == Decimal("9991.75")


def test_fail_recipient_fails_later_and_refunds(api: Api) -> None:
    order = api.topup("100000004", key="fail").json()
    assert order["status"] == "processing"
    assert "failure_reason" not in order
    assert api.balance() == Decimal("9991.75")
    time.sleep(0.6)
    failed = api.get("/orders", params={"reference": "fail"}).json()
    assert failed["status"] == "failed"
    assert failed["failure_reason"] == "recipient_cannot_receive"
    assert api.balance() == Decimal("10000.00")
    # Reading it again must not refund twice.
    api.get(f"/orders/{order['order_id']}")
    assert api.balance() == Decimal("10000.00")


def test_timeout_recipient_commits_before_answering(
    api: Api, sandbox_supplier: SandboxSupplier
) -> None:
    with pytest.raises(requests.ReadTimeout):
        api.topup("@sandbox_timeout", key="hang", timeout=0.5)
    found = api.get("/orders", params={"reference": "hang"}).json()
    assert found["status"] == "completed"
    assert sandbox_supplier.calls("hang") == {"topup_calls": 1, "orders_created": 1}
    # A replay answers at once with the committed order.
    started = time.monotonic()
    replay = api.topup("@sandbox_timeout", key="hang")
    assert time.monotonic() - started < 0.5
    assert replay.status_code == 200
    assert replay.json()["order_id"] == found["order_id"]


def test_a_hanging_request_does_not_block_others(api: Api) -> None:
    outcomes: list[str] = []

    def hang() -> None:
        try:
            api.topup("100000005", key="hang-bg", timeout=1.0)
            outcomes.append("answered")
        except requests.ReadTimeout:
            outcomes.append("timed out")

    thread = threading.Thread(target=hang)
    thread.start()
    time.sleep(0.2)
    started = time.monotonic()
    assert api.topup("100000001").status_code == 201
    assert api.get("/balance").status_code == 200
    assert time.monotonic() - started < 0.5
    thread.join()
    assert outcomes == ["timed out"]


def test_timeout_recipient_answers_after_hang_seconds(api: Api) -> None:
    started = time.monotonic()
    response = api.topup("100000005", timeout=5)
    assert response.status_code == 201
    assert time.monotonic() - started >= 2.0


def test_hold_recipient_answers_after_slow_seconds(api: Api) -> None:
    started = time.monotonic()
    response = api.topup("@sandbox_hold", timeout=5)
    elapsed = time.monotonic() - started
    assert response.status_code == 201
    assert response.json()["status"] == "completed"
    assert 0.5 <= elapsed < 2.0


def test_flaky_recipient_fails_first_without_creating_anything(
    api: Api, sandbox_supplier: SandboxSupplier
) -> None:
    first = api.topup("@sandbox_flaky", key="flaky")
    assert first.status_code == 500
    assert error_code(first) == "internal_error"
    assert sandbox_supplier.calls("flaky") == {"topup_calls": 1, "orders_created": 0}
    assert api.balance() == Decimal("10000.00")
    second = api.topup("@sandbox_flaky", key="flaky")
    assert second.status_code == 201
    assert second.json()["status"] == "completed"
    order_id = second.json()["order_id"]
    unavailable = api.get(f"/orders/{order_id}")
    assert unavailable.status_code == 503
    assert error_code(unavailable) == "unavailable"
    assert api.get(f"/orders/{order_id}").status_code == 200
    # Per key: a new key is flaky again.
    assert api.topup("100000006", key="flaky-2").status_code == 500


def test_broke_recipient_needs_a_balance_top_up_after_failing(
    api: Api, sandbox_supplier: SandboxSupplier
) -> None:
    sandbox_supplier.set_balance("100000")  # before any failure: does not fix it
    for _ in range(2):
        response = api.topup("@sandbox_broke", key="broke")
        assert response.status_code == 500
        assert error_code(response) == "insufficient_balance"
    assert sandbox_supplier.calls("broke") == {"topup_calls": 2, "orders_created": 0}
    sandbox_supplier.set_balance("50")
    fixed = api.topup("100000007", key="broke")
    assert fixed.status_code == 201
    assert fixed.json()["status"] == "completed"
    assert api.balance() == Decimal("41.75")
    sandbox_supplier.reset()
    assert api.topup("100000007").status_code == 500


def test_ratelimit_recipient_is_limited_once_per_key(
    api: Api, sandbox_supplier: SandboxSupplier
) -> None:
    first = api.topup("@sandbox_ratelimit", key="rl")
    assert first.status_code == 429
    assert first.headers["Retry-After"] == "1"
    assert first.json()["error"]["code"] == "rate_limited"
    assert first.json()["error"]["retry_after"] == 1
    assert sandbox_supplier.calls("rl") == {"topup_calls": 1, "orders_created": 0}
    second = api.topup("@sandbox_ratelimit", key="rl")
    assert second.status_code == 201
    assert second.json()["status"] == "completed"


# --- faults, control and persistence -----------------------------------------------------


def test_malformed_fault_commits_then_garbles_the_answer(
    api: Api, sandbox_supplier: SandboxSupplier
) -> None:
    sandbox_supplier.fault("malformed")
    response = api.topup("100000001", key="garbled")
    assert response.status_code == 201
    with pytest.raises(ValueError):
        response.json()
    assert sandbox_supplier.calls("garbled") == {"topup_calls": 1, "orders_created": 1}
    assert api.topup("100000001", key="garbled").json()["order_id"] == "SUP-000001"


def test_reset_fault_commits_then_drops_the_connection(
    api: Api, sandbox_supplier: SandboxSupplier
) -> None:
    sandbox_supplier.fault("reset", count=1)
    with pytest.raises(requests.ConnectionError):
        api.topup("100000001", key="dropped")
    assert sandbox_supplier.calls("dropped") == {"topup_calls": 1, "orders_created": 1}
    assert api.topup("100000001", key="dropped").status_code == 200


def test_random_faults_refuse_before_and_garble_after_a_commit(
    api: Api, sandbox_supplier: SandboxSupplier
) -> None:
    sandbox_supplier._control("POST", "fault", json={"mode": "random", "p_5xx": 1.0, "seed": 1})
    refused = api.topup("100000001", key="refused")
    assert (refused.status_code, refused.json()["error"]["code"]) == (503, "unavailable")
    assert sandbox_supplier.calls("refused") == {"topup_calls": 0, "orders_created": 0}
    sandbox_supplier._control("POST", "fault", json={"mode": "random", "p_500": 1.0})
    committed = api.topup("100000001", key="committed")
    assert (committed.status_code, committed.json()["error"]["code"]) == (500, "internal_error")
    assert sandbox_supplier.calls("committed") == {"topup_calls": 1, "orders_created": 1}
    sandbox_supplier._control("POST", "fault", json={"mode": "random", "p_reset": 1.0})
    with pytest.raises(requests.ConnectionError):
        api.topup("100000001", key="reset")
    sandbox_supplier.fault("none", count=0)
    assert api.topup("100000001", key="reset").status_code == 200
    assert {o["reference"]: o["replays"] for o in sandbox_supplier.orders()} == {
        "committed": 0, "reset": 1}


def test_random_faults_refuse_bad_probabilities(sandbox_supplier: SandboxSupplier) -> None:
    with pytest.raises(requests.HTTPError):
        sandbox_supplier._control("POST", "fault", json={"mode": "random", "p_5xx": 2})


def test_control_orders_lists_topup_calls(api: Api, sandbox_supplier: SandboxSupplier) -> None:
    api.topup("100000001", key="a")
    api.topup("100000001", key="a")
    api.topup("100000002", key="b")
    orders = sandbox_supplier.orders()
    assert [(o["reference"], o["topup_calls"], o["status"]) for o in orders] == [
        ("a", 2, "completed"), ("b", 1, "processing")]
    assert sandbox_supplier.topup_calls("a") == 2
    assert sandbox_supplier.topup_calls("never") == 0


def test_control_reset_wipes_state(api: Api, sandbox_supplier: SandboxSupplier) -> None:
    api.topup("100000001", key="a")
    api.validate("@sandbox_renamed")
    sandbox_supplier.rename("@someone", "77")
    sandbox_supplier.reset()
    assert sandbox_supplier.orders() == []
    assert sandbox_supplier.calls("a") == {"topup_calls": 0, "orders_created": 0}
    assert api.balance() == Decimal("10000.00")
    assert api.validate("@sandbox_renamed")["user_id"] == "100000009"
    assert api.validate("@someone")["user_id"] != "77"
    assert api.topup("100000001", key="a").json()["order_id"] == "SUP-000001"


def test_control_rejects_bad_input(sandbox_supplier: SandboxSupplier) -> None:
    url = sandbox_supplier.url
    assert requests.post(f"{url}/_sandbox/balance", json={"balance": "x"},
                         timeout=TIMEOUT).status_code == 400
    assert requests.post(f"{url}/_sandbox/rename", json={"username": "bad", "user_id": "1"},
                         timeout=TIMEOUT).status_code == 400
    assert requests.post(f"{url}/_sandbox/fault", json={"mode": "explode"},
                         timeout=TIMEOUT).status_code == 400


def test_state_survives_a_restart(tmp_path: Path) -> None:
    config = SupplierConfig(db_path=str(tmp_path / "s.sqlite3"), slow_seconds=0.5)
    headers = {"Authorization": "Bearer sandbox-key", "Idempotency-Key": "persist"}
    body = {"platform": "telegram", "user_id": "@sandbox_slow", "stars": 500}
    with start_sandbox_supplier(config) as first:
        placed = requests.post(f"{first.url}/topup", json=body, headers=headers, timeout=TIMEOUT)
        assert placed.json()["status"] == "processing"
    time.sleep(0.6)
    with start_sandbox_supplier(config) as second:
        replay = requests.post(f"{second.url}/topup", json=body, headers=headers,
                               timeout=TIMEOUT)
        assert replay.status_code == 200
        assert replay.json()["order_id"] == placed.json()["order_id"]
        assert replay.json()["status"] == "completed"
        balance = requests.get(f"{second.url}/balance", headers=headers, timeout=TIMEOUT)
        assert balance.json()["balance"] == "9991.75"


def test_restarted_supplier_settles_a_failure_it_missed(
    api: Api, sandbox_supplier: SandboxSupplier
) -> None:
    api.topup("@sandbox_fail", key="f")
    sandbox_supplier.restart()
    time.sleep(0.6)
    assert api.get("/orders?reference=f").json()["status"] == "failed"
    assert api.balance() == Decimal("10000.00")


def test_each_request_logs_one_line(api: Api, capsys: pytest.CaptureFixture[str]) -> None:
    api.get("/balance")
    api.get("/orders/SUP-1")
    err = capsys.readouterr().err
    assert "GET /balance 200\n" in err
    assert "GET /orders/SUP-1 404\n" in err


def test_runs_as_a_module(tmp_path: Path) -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "fakes.supplier", "--host", "127.0.0.1", "--port", "0",
         "--db", str(tmp_path / "cli.sqlite3"), "--api-key", "cli-key", "--balance", "42"],
        stderr=subprocess.PIPE, text=True, cwd=Path(__file__).resolve().parents[2],
    )
    try:
        assert process.stderr is not None
        banner = process.stderr.readline()
        url = banner.split(" listening on ")[1].split()[0]
        response = requests.get(f"{url}/balance", headers={"Authorization": "Bearer cli-key"},
                                timeout=TIMEOUT)
        assert response.json() == {"balance": "42.00", "currency": "USD"}
    finally:
        process.terminate()
        process.wait(timeout=TIMEOUT)


# --- orders by date (reconciliation) -------------------------------------------------------


def _seed(sandbox: SandboxSupplier, reference: str, created_at: str, **fields: Any) -> dict[str, Any]:
    return sandbox.seed_order(reference=reference, user_id=fields.pop("user_id", "100000001"),
                              stars=fields.pop("stars", 500), created_at=created_at, **fields)


def test_orders_by_date_are_listed_in_their_window_oldest_first(
    api: Api, sandbox_supplier: SandboxSupplier
) -> None:
    _seed(sandbox_supplier, "before", "2026-11-28T23:59:59Z")
    _seed(sandbox_supplier, "first", "2026-11-29T00:00:00Z")
    _seed(sandbox_supplier, "last", "2026-11-29T23:59:59+00:00", status="failed")
    _seed(sandbox_supplier, "after", "2026-11-30T00:00:00Z")
    response = api.get("/orders", params={"created_after": "2026-11-29T00:00:00Z",
                                           "created_before": "2026-11-30T00:00:00Z"})
    assert response.status_code == 200
    body = response.json()
    assert [order["reference"] for order in body["orders"]] == ["first", "last"]
    assert body["next_cursor"] is None
    assert body["orders"][1]["status"] == "failed"
    assert body["orders"][1]["created_at"] == "2026-11-29T23:59:59Z"
    # Seeding charges nothing: these are the supplier's books as they stand.
    assert api.balance() == Decimal("10000.00")


def test_orders_by_date_page_with_a_cursor(api: Api, sandbox_supplier: SandboxSupplier) -> None:
    for number in range(5):
        _seed(sandbox_supplier, f"k{number}", f"2026-11-29T10:00:0{number}Z")
    window = {"created_after": "2026-11-29T00:00:00Z", "created_before": "2026-11-30T00:00:00Z",
              "limit": "2"}
    seen: list[str] = []
    cursors: list[str] = []
    params = dict(window)
    while True:
        body = api.get("/orders", params=params).json()
        seen += [order["reference"] for order in body["orders"]]
        if body["next_cursor"] is None:
            break
        cursors.append(body["next_cursor"])
        params = {**window, "cursor": body["next_cursor"]}
    assert seen == ["k0", "k1", "k2", "k3", "k4"]
    assert len(cursors) == 2


def test_placed_top_ups_are_in_todays_list(api: Api) -> None:
    api.topup("100000001", 500, key="today")
    body = api.get("/orders", params={"created_after": "2000-01-01T00:00:00Z"}).json()
    assert [order["reference"] for order in body["orders"]] == ["today"]


@pytest.mark.parametrize("params", [
    {"created_after": "yesterday"},
    {"created_before": "2026-13-01T00:00:00Z"},
    {"created_after": "2026-11-29T00:00:00Z", "limit": "0"},
    {"created_after": "2026-11-29T00:00:00Z", "limit": "501"},
    {"created_after": "2026-11-29T00:00:00Z", "limit": "ten"},
    {"created_after": "2026-11-29T00:00:00Z", "cursor": "page-2"},
])
def test_orders_by_date_rejects_bad_parameters(api: Api, params: dict[str, str]) -> None:
    response = api.get("/orders", params=params)
    assert response.status_code == 400
    assert error_code(response) == "invalid_request"


def test_the_list_by_date_needs_the_key_and_reference_lookup_still_works(
    api: Api, sandbox_supplier: SandboxSupplier
) -> None:
    _seed(sandbox_supplier, "ref-1", "2026-11-29T10:00:00Z")
    assert requests.get(f"{api.url}/orders?created_after=2026-11-29T00:00:00Z",
                        timeout=TIMEOUT).status_code == 401
    assert api.get("/orders?reference=ref-1").json()["reference"] == "ref-1"
    missing = api.get("/orders")
    assert missing.status_code == 400 and error_code(missing) == "invalid_request"


@pytest.mark.parametrize("fields", [
    {"user_id": "@name"}, {"stars": 0}, {"status": "lost"}, {"created_at": "soon"},
    {"cost": "-1"}, {"reference": ""},
])
def test_seeding_rejects_bad_orders(sandbox_supplier: SandboxSupplier, fields: dict[str, Any]) -> None:
    body = {"reference": "r", "user_id": "100000001", "stars": 5, **fields}
    response = requests.post(f"{sandbox_supplier.url}/_sandbox/orders", json=body, timeout=TIMEOUT)
    assert response.status_code == 400
    assert error_code(response) == "invalid_request"
    assert sandbox_supplier.orders() == []


def test_seeding_a_reference_twice_is_a_conflict(sandbox_supplier: SandboxSupplier) -> None:
    _seed(sandbox_supplier, "twice", "2026-11-29T10:00:00Z")
    response = requests.post(f"{sandbox_supplier.url}/_sandbox/orders", timeout=TIMEOUT,
                             json={"reference": "twice", "user_id": "1", "stars": 5})
    assert response.status_code == 409
    assert len(sandbox_supplier.orders()) == 1


# --- the supplier's own dashboard -----------------------------------------------------------


def test_the_dashboard_shows_the_balance_and_the_latest_orders(
    api: Api, sandbox_supplier: SandboxSupplier
) -> None:
    api.topup("@sandbox_ok", 500, key="<script>key</script>")
    response = requests.get(f"{sandbox_supplier.url}/_sandbox/", timeout=TIMEOUT)
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "text/html; charset=utf-8"
    page = response.text
    assert '<strong id="balance">9991.75</strong> USD' in page
    assert '<form method="post" action="/_sandbox/">' in page
    assert "&lt;script&gt;key&lt;/script&gt;" in page and "<script>" not in page
    assert "style=" not in page


def test_topping_up_on_the_dashboard_adds_and_redirects_back(
    api: Api, sandbox_supplier: SandboxSupplier
) -> None:
    sandbox_supplier.set_balance("5.00")
    response = requests.post(f"{sandbox_supplier.url}/_sandbox/", data={"amount": "100.50"},
                             allow_redirects=False, timeout=TIMEOUT)
    assert response.status_code == 303
    assert response.headers["Location"] == "/_sandbox/?added=100.50"
    assert api.balance() == Decimal("105.50")
    page = requests.get(f"{sandbox_supplier.url}{response.headers['Location']}", timeout=TIMEOUT)
    assert "Added 100.50 USD." in page.text and ">105.50<" in page.text


@pytest.mark.parametrize("amount", ["", "abc", "0", "-5", "NaN", "Infinity", "1000001"])
def test_the_dashboard_refuses_what_is_not_an_amount(
    api: Api, sandbox_supplier: SandboxSupplier, amount: str
) -> None:
    response = requests.post(f"{sandbox_supplier.url}/_sandbox/", data={"amount": amount},
                             timeout=TIMEOUT)  # follows the redirect
    assert response.status_code == 200
    assert "Not an amount to add" in response.text
    assert api.balance() == Decimal("10000.00")


def test_a_dashboard_top_up_fixes_the_broke_recipient(api: Api, sandbox_supplier: SandboxSupplier) -> None:
    assert error_code(api.topup("@sandbox_broke", 500, key="b1")) == "insufficient_balance"
    requests.post(f"{sandbox_supplier.url}/_sandbox/", data={"amount": "10"}, timeout=TIMEOUT)
    assert api.topup("@sandbox_broke", 500, key="b2").status_code == 201
    assert api.balance() == Decimal("10001.75")


# --- volume prices -------------------------------------------------------------------------


@pytest.mark.parametrize("stars,charged", [(500, "8.25"), (999, "16.48"), (1000, "15.00"),
                                           (2500, "35.00"), (5000, "66.00")])
def test_a_topup_is_charged_at_its_volume_price(api: Api, stars: int, charged: str) -> None:
    before = api.balance()
    response = api.topup("100000001", stars)
    assert response.status_code in (200, 201), response.text
    assert before - api.balance() == Decimal(charged)


@pytest.mark.django_db
def test_the_fake_charges_what_the_demo_catalogue_records() -> None:
    """The demo's supplier cost and the sandbox's price agree at every package and tier edge."""
    from shop.demo import demo_catalog_load
    from shop.pricing import supplier_cost, supplier_current

    product = demo_catalog_load()
    supplier = supplier_current()
    config = SupplierConfig(db_path="unused")
    quantities = [package.quantity for package in product.packages.all()]
    for stars in quantities + [999, 1000, 2499, 2500, 4999, 5000, 10_000]:
        assert config.cost_of(stars) == supplier_cost(supplier=supplier, quantity=stars), stars


# --- latency, rate limit and traffic (bench/flash_sale.py) --------------------------------


def _supplier(tmp_path: Path, **options: Any) -> SandboxSupplier:
    config = SupplierConfig(db_path=str(tmp_path / "paced.sqlite3"), api_key="sandbox-key",
                            **options)
    return SandboxSupplier(start_sandbox_supplier(config, port=0))


def test_latency_delays_api_answers_but_not_control_ones_and_counts_in_flight(tmp_path: Path) -> None:
    sandbox = _supplier(tmp_path, latency_seconds=0.4)
    try:
        api = Api(sandbox)
        started = time.monotonic()
        threads = [threading.Thread(target=api.validate, args=(str(7_000_000 + n),))
                   for n in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert 0.4 <= time.monotonic() - started < 1.5  # answered side by side
        started = time.monotonic()
        traffic = requests.get(f"{sandbox.url}/_sandbox/traffic", timeout=TIMEOUT).json()
        assert time.monotonic() - started < 0.3
        assert traffic["requests"] == 4 and traffic["in_flight"] == 0
        assert traffic["max_in_flight"] >= 3
    finally:
        sandbox.stop()


def test_rate_limit_refuses_past_the_rate_with_retry_after_and_changes_nothing(tmp_path: Path) -> None:
    sandbox = _supplier(tmp_path, rate_limit=3)
    try:
        api = Api(sandbox)
        answers = [api.topup(str(7_000_000 + n)) for n in range(5)]
        assert [a.status_code for a in answers[:3]] == [201, 201, 201]
        refused = answers[3:]
        assert all(a.status_code == 429 and error_code(a) == "rate_limited" for a in refused)
        assert all(a.headers["Retry-After"] == "1" for a in refused)
        orders = requests.get(f"{sandbox.url}/_sandbox/orders", timeout=TIMEOUT).json()
        assert len(orders) == 3
        time.sleep(1.05)  # a new second
        assert api.topup("7000009").status_code == 201
        traffic = requests.get(f"{sandbox.url}/_sandbox/traffic", timeout=TIMEOUT).json()
        assert traffic["rate_limited"] == 2 and traffic["max_per_second"] == 3
    finally:
        sandbox.stop()
