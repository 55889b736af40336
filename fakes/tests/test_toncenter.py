"""The fake toncenter's wire behaviour, checked over real HTTP on 127.0.0.1."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import requests

from fakes.ton_fixtures import *  # noqa: F403 - the `toncenter` fixture
from fakes.ton_fixtures import FakeToncenter
from fakes.toncenter import (
    FIRST_LT,
    ToncenterConfig,
    comment_from_boc,
    default_buyer,
    default_wallet,
    friendly_address,
    parse_address,
    raw_address,
)

TIMEOUT = 5.0
TX_KEYS = {
    "account", "hash", "lt", "now", "mc_block_seqno", "trace_id", "prev_trans_hash",
    "prev_trans_lt", "orig_status", "end_status", "total_fees", "total_fees_extra_currencies",
    "description", "block_ref", "in_msg", "out_msgs", "account_state_before",
    "account_state_after", "emulated",
}
MSG_KEYS = {
    "hash", "source", "destination", "value", "value_extra_currencies", "fwd_fee", "ihr_fee",
    "created_lt", "created_at", "opcode", "ihr_disabled", "bounce", "bounced", "import_fee",
    "message_content", "init_state",
}


def raw(address: str) -> str:
    parsed = parse_address(address)
    assert parsed is not None
    return raw_address(*parsed)


def get(fake: FakeToncenter, path: str, **params: Any) -> requests.Response:
    return requests.get(f"{fake.url}{path}", params=params, timeout=TIMEOUT)


def transactions(fake: FakeToncenter, **params: Any) -> dict[str, Any]:
    response = get(fake, "/api/v3/transactions", account=fake.wallet, **params)
    assert response.status_code == 200, response.text
    return response.json()


def test_an_incoming_payment_is_shaped_like_toncenter_v3(toncenter: FakeToncenter) -> None:
    sent = toncenter.transfer("ORD-000001-7KQ2", 1_700_000_000)
    body = transactions(toncenter)
    assert set(body) == {"transactions", "address_book"}
    [tx] = body["transactions"]
    assert tx == sent
    assert set(tx) == TX_KEYS
    assert tx["account"] == raw(toncenter.wallet) and tx["account"].startswith("0:")
    assert isinstance(tx["lt"], str) and int(tx["lt"]) == FIRST_LT and isinstance(tx["now"], int)
    assert len(base64.b64decode(tx["hash"])) == 32
    assert tx["description"]["aborted"] is False and tx["description"]["compute_ph"]["success"]
    assert tx["description"]["credit_ph"] == {"credit": "1700000000"}
    assert tx["out_msgs"] == []
    in_msg = tx["in_msg"]
    assert set(in_msg) == MSG_KEYS
    assert in_msg["source"] == raw(default_buyer("testnet"))
    assert in_msg["destination"] == tx["account"]
    assert (in_msg["value"], in_msg["opcode"], in_msg["bounced"]) == ("1700000000", "0x00000000", False)
    content = in_msg["message_content"]
    assert content["decoded"] == {"type": "text_comment", "comment": "ORD-000001-7KQ2"}
    assert comment_from_boc(content["body"]) == "ORD-000001-7KQ2"
    assert body["address_book"][in_msg["source"]] == {
        "user_friendly": default_buyer("testnet"), "domain": None}
    assert body["address_book"][tx["account"]]["user_friendly"] == toncenter.wallet


def test_a_transfer_without_comment_has_an_empty_body(toncenter: FakeToncenter) -> None:
    tx = toncenter.transfer(None, 5)
    content = tx["in_msg"]["message_content"]
    assert content["decoded"] is None and tx["in_msg"]["opcode"] is None
    assert content["body"].startswith("te6c")  # b5ee9c72, the BOC magic
    assert comment_from_boc(content["body"]) is None


def test_flags_shape_bounces_aborts_and_outgoing_transfers(toncenter: FakeToncenter) -> None:
    bounced = toncenter.transfer("x", 10, bounced=True)
    assert bounced["in_msg"]["bounced"] is True and "credit_ph" not in bounced["description"]
    aborted = toncenter.transfer("x", 10, aborted=True)
    assert aborted["description"]["aborted"] is True
    assert aborted["description"]["compute_ph"]["success"] is False
    assert "action" not in aborted["description"]
    returned = toncenter.transfer("x", 10_000_000_000, with_out_msg=True)
    [out] = returned["out_msgs"]
    assert (out["source"], out["destination"]) == (returned["account"], returned["in_msg"]["source"])
    outgoing = toncenter.transfer("refund", 3, outgoing=True)
    assert outgoing["in_msg"]["source"] is None and outgoing["in_msg"]["value"] is None
    assert outgoing["out_msgs"][0]["destination"] == raw(default_buyer("testnet"))
    assert outgoing["out_msgs"][0]["value"] == "3"
    elsewhere = toncenter.transfer("x", 10, destination=default_buyer("testnet"))
    assert elsewhere["account"] == raw(default_buyer("testnet"))
    assert len(transactions(toncenter, limit=100)["transactions"]) == 4
    assert len(toncenter.transactions()) == 5


def test_lt_filters_are_inclusive_and_sort_and_paging_work(toncenter: FakeToncenter) -> None:
    lts = [int(toncenter.transfer(f"c{i}", i + 1)["lt"]) for i in range(5)]
    assert lts == sorted(lts) and len(set(lts)) == 5

    def page(**params: Any) -> list[int]:
        return [int(tx["lt"]) for tx in transactions(toncenter, **params)["transactions"]]

    assert page() == lts[::-1]  # desc by default
    assert page(sort="asc") == lts
    assert page(sort="asc", start_lt=lts[1]) == lts[1:]
    assert page(sort="asc", start_lt=lts[1] + 1, end_lt=lts[3]) == lts[2:4]
    assert page(sort="asc", limit=2, offset=1) == lts[1:3]
    old = int(toncenter.transfer("old", 1, now=1_000)["lt"])
    assert page(sort="asc", end_utime=1_000) == [old]
    assert old not in page(sort="asc", start_utime=1_001)
    # Another account's transactions are not this one's.
    other = requests.get(f"{toncenter.url}/api/v3/transactions", timeout=TIMEOUT,
                         params={"account": default_buyer("testnet")}).json()
    assert other == {"transactions": [], "address_book": {}}
    # Any address form names the same account.
    assert transactions(toncenter) == get(
        toncenter, "/api/v3/transactions", account=raw(toncenter.wallet)).json()


@pytest.mark.parametrize("params", [
    {}, {"account": "nope"}, {"limit": 0}, {"limit": 1001}, {"sort": "up"}, {"start_lt": "x"},
])
def test_bad_transaction_queries_are_refused(toncenter: FakeToncenter, params: dict[str, Any]) -> None:
    if "account" not in params and params:
        params = {"account": toncenter.wallet, **params}
    response = get(toncenter, "/api/v3/transactions", **params)
    assert response.status_code == 422 and "error" in response.json()


@pytest.mark.parametrize("toncenter_options", [{"network": "mainnet"}, {"network": "testnet"}])
def test_masterchain_info_names_the_network(toncenter: FakeToncenter,
                                            toncenter_options: dict[str, Any]) -> None:
    info = get(toncenter, "/api/v3/masterchainInfo").json()
    expected = {"mainnet": -239, "testnet": -3}[toncenter_options["network"]]
    assert info["first"]["global_id"] == info["last"]["global_id"] == expected
    assert info["last"]["seqno"] >= info["first"]["seqno"]
    assert toncenter.wallet == default_wallet(toncenter_options["network"])
    assert toncenter.wallet.startswith("UQ" if expected == -239 else "0Q")


@pytest.mark.parametrize("toncenter_options", [{"api_key": "k3y"}])
def test_the_api_needs_the_key_when_one_is_set(toncenter: FakeToncenter,
                                               toncenter_options: dict[str, Any]) -> None:
    url = f"{toncenter.url}/api/v3/transactions"
    params = {"account": toncenter.wallet}
    assert requests.get(url, params=params, timeout=TIMEOUT).status_code == 401
    assert requests.get(url, params=params, headers={"X-API-Key": "bad"},
                        timeout=TIMEOUT).json() == {"error": "API key does not exist"}
    assert requests.get(url, params=params, headers={"X-API-Key": "k3y"},
                        timeout=TIMEOUT).status_code == 200
    assert requests.get(url, params={**params, "api_key": "k3y"}, timeout=TIMEOUT).status_code == 200
    # Control endpoints and the price APIs need no key; the key is not logged.
    toncenter.transfer("x", 1)
    assert get(toncenter, "/v2/rates", tokens="ton", currencies="usd").status_code == 200
    assert all("api_key" not in r["query"] for r in toncenter.requests())


def test_price_apis_speak_coingecko_and_tonapi(toncenter: FakeToncenter) -> None:
    coingecko = get(toncenter, "/api/v3/simple/price", ids="the-open-network", vs_currencies="usd")
    assert coingecko.json() == {"the-open-network": {"usd": 5.0}}
    tonapi = get(toncenter, "/v2/rates", tokens="ton", currencies="usd").json()
    assert tonapi["rates"]["TON"]["prices"] == {"USD": 5.0}
    assert set(tonapi["rates"]["TON"]) == {"prices", "diff_24h", "diff_7d", "diff_30d"}
    # Numbers go out as JSON numbers, exactly as set.
    toncenter.set_rate("5.4321", source="tonapi")
    text = get(toncenter, "/v2/rates", tokens="ton", currencies="usd").text
    assert json.loads(text, parse_float=Decimal)["rates"]["TON"]["prices"]["USD"] == Decimal("5.4321")
    assert get(toncenter, "/api/v3/simple/price", ids="the-open-network",
               vs_currencies="usd").json() == {"the-open-network": {"usd": 5.0}}
    toncenter.set_rate("4.5", currency="eur")
    assert get(toncenter, "/api/v3/simple/price", ids="the-open-network",
               vs_currencies="usd,eur").json() == {"the-open-network": {"usd": 5.0, "eur": 4.5}}
    assert get(toncenter, "/api/v3/simple/price", ids="bitcoin", vs_currencies="usd").json() == {}


def test_a_price_source_can_go_down_and_come_back(toncenter: FakeToncenter) -> None:
    toncenter.set_rate(source="coingecko", down=True)
    assert get(toncenter, "/api/v3/simple/price", ids="the-open-network",
               vs_currencies="usd").status_code == 503
    assert get(toncenter, "/v2/rates", tokens="ton", currencies="usd").status_code == 200
    toncenter.set_rate(source="coingecko", down=False)
    assert get(toncenter, "/api/v3/simple/price", ids="the-open-network",
               vs_currencies="usd").status_code == 200


def test_faults_hit_the_chain_api_after_skip(toncenter: FakeToncenter) -> None:
    toncenter.fault(429, count=2, skip=1)
    statuses = [get(toncenter, "/api/v3/masterchainInfo").status_code for _ in range(4)]
    assert statuses == [200, 429, 429, 200]
    # Price APIs are not the chain: faults leave them alone.
    toncenter.fault(500)
    assert get(toncenter, "/v2/rates", tokens="ton", currencies="usd").status_code == 200
    assert get(toncenter, "/api/v3/masterchainInfo").status_code == 500


def test_requests_are_logged_and_reset_clears_everything(toncenter: FakeToncenter) -> None:
    toncenter.transfer("x", 1)
    toncenter.set_rate("9", source="tonapi", down=True)
    transactions(toncenter, start_lt=5, sort="asc")
    assert toncenter.requests("/api/v3/transactions") == [{
        "path": "/api/v3/transactions",
        "query": {"account": toncenter.wallet, "start_lt": "5", "sort": "asc"}}]
    toncenter.reset()
    assert toncenter.requests() == [] and toncenter.transactions() == []
    assert get(toncenter, "/v2/rates", tokens="ton", currencies="usd").json()["rates"]["TON"][
        "prices"] == {"USD": 5.0}
    assert int(toncenter.transfer("y", 1)["lt"]) == FIRST_LT


@pytest.mark.parametrize(("path", "body"), [
    ("transfer", {"comment": "x"}),
    ("transfer", {"comment": "x", "amount_nanotons": -1}),
    ("transfer", {"comment": "x", "amount_nanotons": "5"}),
    ("transfer", {"comment": "x" * 124, "amount_nanotons": 1}),
    ("transfer", {"comment": "x", "amount_nanotons": 1, "source": "nobody"}),
    ("transfer", {"comment": "x", "amount_nanotons": 1, "bounced": "yes"}),
    ("rate", {"price": "-1"}),
    ("rate", {"price": "abc"}),
    ("rate", {"source": "binance"}),
    ("fault", {"status": 418}),
])
def test_control_rejects_bad_input(toncenter: FakeToncenter, path: str, body: dict[str, Any]) -> None:
    response = requests.post(f"{toncenter.url}/_fake/{path}", json=body, timeout=TIMEOUT)
    assert response.status_code == 400, response.text
    assert requests.post(f"{toncenter.url}/_fake/transfer", data=b"[1]",
                         timeout=TIMEOUT).status_code == 400


def test_unknown_paths_and_methods(toncenter: FakeToncenter) -> None:
    assert get(toncenter, "/api/v3/nothing").status_code == 404
    assert get(toncenter, "/_fake/nothing").status_code == 404
    assert requests.post(f"{toncenter.url}/api/v3/transactions", timeout=TIMEOUT).status_code == 405
    assert get(toncenter, "/_fake/transfer").status_code == 405


def test_address_codec_matches_ton_docs() -> None:
    raw_form = "0:83DFD552E63729B472FCBCC8C45EBCC6691702558B68EC7527E1BA403A0F31A8"
    parsed = parse_address(raw_form)
    assert parsed is not None
    assert friendly_address(*parsed, testnet=False, bounceable=True) == (
        "EQCD39VS5jcptHL8vMjEXrzGaRcCVYto7HUn4bpAOg8xqB2N")
    assert parse_address("EQCD39VS5jcptHL8vMjEXrzGaRcCVYto7HUn4bpAOg8xqB2N") == parsed
    assert parse_address("EQCD39VS5jcptHL8vMjEXrzGaRcCVYto7HUn4bpAOg8xqB2M") is None
    with pytest.raises(ValueError):
        ToncenterConfig(wallet="not an address")


def test_runs_as_a_module() -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "fakes.toncenter", "--host", "127.0.0.1", "--port", "0",
         "--network", "mainnet", "--usd", "6.25"],
        stderr=subprocess.PIPE, text=True, cwd=Path(__file__).resolve().parents[2],
    )
    try:
        assert process.stderr is not None
        banner = process.stderr.readline()
        url = banner.split(" listening on ")[1].split()[0]
        assert default_wallet("mainnet") in banner
        info = requests.get(f"{url}/api/v3/masterchainInfo", timeout=TIMEOUT).json()
        assert info["last"]["global_id"] == -239
        price = requests.get(f"{url}/api/v3/simple/price", timeout=TIMEOUT,
                             params={"ids": "the-open-network", "vs_currencies": "usd"}).json()
        assert price == {"the-open-network": {"usd": 6.25}}
    finally:
        process.terminate()
        process.wait(timeout=TIMEOUT)
