"""The fakes keep their state in a file across restarts, so `make run` can stop and start."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import requests
import stripe

from fakes._serving import StateFile
from fakes.cryptopay_fixtures import FakeCryptoPay, cryptopay_fake  # noqa: F401 - fixtures
from fakes.stripe_fixtures import (  # noqa: F401 - pytest fixtures
    FakeStripe,
    WebhookReceiver,
    fake_stripe,
    webhook_receiver,
)
from fakes.ton_fixtures import FakeToncenter, toncenter  # noqa: F401 - fixtures
from fakes.toncenter import FIRST_LT

TIMEOUT = 5.0
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def toncenter_options(tmp_path: Path) -> dict[str, Any]:
    return {"network": "testnet", "state_path": str(tmp_path / "toncenter.json")}


@pytest.fixture
def cryptopay_fake_options(tmp_path: Path, webhook_receiver: WebhookReceiver) -> dict[str, Any]:
    return {"webhook_url": webhook_receiver.url, "state_path": str(tmp_path / "cryptopay.json")}


@pytest.fixture
def fake_stripe_options(tmp_path: Path, webhook_receiver: WebhookReceiver) -> dict[str, Any]:
    return {"webhook_url": webhook_receiver.url, "state_path": str(tmp_path / "stripe.json")}


# --- toncenter -----------------------------------------------------------------------------


def wallet_transactions(fake: FakeToncenter) -> list[dict[str, Any]]:
    response = requests.get(f"{fake.api_url}/transactions", timeout=TIMEOUT,
                            params={"account": fake.wallet, "sort": "asc", "limit": 100})
    assert response.status_code == 200, response.text
    result: list[dict[str, Any]] = response.json()["transactions"]
    return result


def test_a_restarted_toncenter_continues_its_chain(toncenter: FakeToncenter) -> None:
    first = toncenter.transfer("ORD-000001-7KQ2", 1_700_000_000)
    second = toncenter.transfer(None, 5, outgoing=True)
    toncenter.set_rate("6.25", source="coingecko")
    seqno = requests.get(f"{toncenter.api_url}/masterchainInfo",
                         timeout=TIMEOUT).json()["last"]["seqno"]
    toncenter.restart()
    assert wallet_transactions(toncenter) == [first, second]
    third = toncenter.transfer("ORD-000002-AB12", 2_000_000_000)
    assert int(third["lt"]) > int(second["lt"]) > int(first["lt"])
    assert (third["prev_trans_hash"], third["prev_trans_lt"]) == (second["hash"], second["lt"])
    hashes = {tx["hash"] for tx in (first, second, third)}
    assert len(hashes) == 3
    assert int(third["account_state_before"]["balance"]) == int(
        second["account_state_after"]["balance"])
    info = requests.get(f"{toncenter.api_url}/masterchainInfo", timeout=TIMEOUT).json()
    assert info["last"]["seqno"] > seqno
    price = requests.get(toncenter.coingecko_url, timeout=TIMEOUT,
                         params={"ids": "the-open-network", "vs_currencies": "usd"}).json()
    assert price == {"the-open-network": {"usd": 6.25}}
    toncenter.reset()
    toncenter.restart()
    assert toncenter.transactions() == []


def test_a_pending_toncenter_fault_survives_a_restart(toncenter: FakeToncenter) -> None:
    toncenter.fault(503, count=1)
    toncenter.restart()
    assert requests.get(f"{toncenter.api_url}/masterchainInfo", timeout=TIMEOUT).status_code == 503
    assert requests.get(f"{toncenter.api_url}/masterchainInfo", timeout=TIMEOUT).status_code == 200


@pytest.mark.parametrize("toncenter_options", [{"network": "testnet"}])
def test_without_a_state_file_toncenter_starts_a_fresh_chain(toncenter: FakeToncenter) -> None:
    toncenter.transfer("ORD-000001-7KQ2", 1_700_000_000)
    toncenter.restart()
    assert wallet_transactions(toncenter) == []
    assert int(toncenter.transfer(None, 1)["lt"]) == FIRST_LT


# --- Crypto Pay ----------------------------------------------------------------------------


def test_a_restarted_cryptopay_keeps_invoices_and_continues_ids(
    cryptopay_fake: FakeCryptoPay, webhook_receiver: WebhookReceiver
) -> None:
    paid = cryptopay_fake.api("createInvoice", asset="TON", amount="1.5").json()["result"]
    active = cryptopay_fake.api("createInvoice", currency_type="fiat", fiat="USD",
                                amount="8.50", expires_in=3600).json()["result"]
    cryptopay_fake.pay(paid["invoice_id"])
    (first_delivery,) = webhook_receiver.received
    cryptopay_fake.restart()
    items = cryptopay_fake.api("getInvoices").json()["result"]["items"]
    assert [(i["invoice_id"], i["status"]) for i in items] == [
        (active["invoice_id"], "active"), (paid["invoice_id"], "paid")]
    assert len(cryptopay_fake.deliveries()) == 1
    following = cryptopay_fake.api("createInvoice", asset="USDT", amount="2").json()["result"]
    assert following["invoice_id"] == active["invoice_id"] + 1 == 1003
    # A Crypto Pay retry after the restart is the same update, byte for byte.
    cryptopay_fake.resend(paid["invoice_id"])
    assert webhook_receiver.received[-1].body == first_delivery.body
    # The buyer's checkout link still opens and pays, with the next update id.
    page = requests.get(active["web_app_invoice_url"], timeout=TIMEOUT)
    assert page.status_code == 200 and "Pay with USDT" in page.text
    result = cryptopay_fake.pay(active["invoice_id"])
    assert result["update"]["update_id"] == json.loads(first_delivery.body)["update_id"] + 1


# --- Stripe --------------------------------------------------------------------------------


def stripe_client(fake: FakeStripe) -> stripe.StripeClient:
    return stripe.StripeClient(fake.api_key, base_addresses={"api": fake.url},
                               http_client=stripe.RequestsClient(timeout=TIMEOUT),
                               max_network_retries=0)


def create_session(client: stripe.StripeClient, key: str, expires_at: int) -> Any:
    return client.v1.checkout.sessions.create({
        "mode": "payment",
        "line_items": [{"price_data": {"currency": "usd", "unit_amount": 850,
                                       "product_data": {"name": "500 Telegram Stars"}},
                        "quantity": 1}],
        "success_url": "http://shop.test/orders/x/?session={CHECKOUT_SESSION_ID}",
        "expires_at": expires_at,
    }, {"idempotency_key": key})


def test_a_restarted_stripe_keeps_sessions_events_and_idempotency_keys(
    fake_stripe: FakeStripe, webhook_receiver: WebhookReceiver
) -> None:
    client = stripe_client(fake_stripe)
    # One expiry for both calls with a key: a replay must repeat its parameters exactly.
    expires_at = int(time.time()) + 40 * 60
    waiting = create_session(client, "order-1", expires_at)
    paid = create_session(client, "order-2", expires_at)
    completed = fake_stripe.complete(paid.id)
    fake_stripe.restart()
    assert client.v1.checkout.sessions.retrieve(waiting.id).status == "open"
    assert client.v1.checkout.sessions.retrieve(paid.id).payment_status == "paid"
    assert create_session(client, "order-1", expires_at).id == waiting.id  # replayed, not a new session
    stored = fake_stripe.event(completed["event_id"])
    assert stored["body"] == webhook_receiver.received[0].body.decode()
    assert fake_stripe.resend(completed["event_id"])["delivery"]["status"] == 200
    # The buyer comes back to the checkout URL and pays.
    assert requests.get(waiting.url, timeout=TIMEOUT).status_code == 200
    paying = requests.post(f"{waiting.url}/pay", data={"method": "card"}, timeout=TIMEOUT,
                           allow_redirects=False)
    assert paying.status_code == 303
    assert client.v1.checkout.sessions.retrieve(waiting.id).payment_status == "paid"
    assert [e["object_id"] for e in fake_stripe.events("checkout.session.completed")] == [
        paid.id, waiting.id]
    # The payment from before the restart can still be refunded.
    intent = completed["session"]["payment_intent"]
    assert client.v1.refunds.create({"payment_intent": intent}).amount == 850
    assert len({s["id"] for s in fake_stripe.sessions()}) == 2


# --- the shared state file -----------------------------------------------------------------


def test_a_state_file_is_replaced_whole_and_belongs_to_one_fake(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "fake.json"
    StateFile(path, kind="stripe").save({"sessions": {}})
    assert StateFile(path, kind="stripe").load() == {"sessions": {}}
    assert [p.name for p in path.parent.iterdir()] == ["fake.json"]
    with pytest.raises(ValueError, match="fake toncenter"):
        StateFile(path, kind="toncenter").load()
    assert StateFile(None, kind="stripe").load() is None
    assert StateFile(tmp_path / "absent.json", kind="stripe").load() is None


# --- the command line (what `make run` starts) ---------------------------------------------


@contextmanager
def running(module: str, *args: str) -> Iterator[str]:
    """Run a fake as its own process on a free port; yields its URL."""
    process = subprocess.Popen([sys.executable, "-m", module, "--host", "127.0.0.1",
                                "--port", "0", *args],
                               stderr=subprocess.PIPE, text=True, cwd=REPO)
    try:
        assert process.stderr is not None
        banner = process.stderr.readline()
        yield banner.split(" listening on ")[1].split()[0].rstrip(",")
    finally:
        process.terminate()
        process.wait(timeout=TIMEOUT)


def toncenter_step(url: str) -> int:
    response = requests.post(f"{url}/_fake/transfer", timeout=TIMEOUT,
                             json={"comment": "ORD-1", "amount_nanotons": 1})
    return int(response.json()["lt"])


def cryptopay_step(url: str) -> int:
    response = requests.post(f"{url}/api/createInvoice", timeout=TIMEOUT,
                             headers={"Crypto-Pay-API-Token": "fake-cryptopay-token"},
                             json={"asset": "TON", "amount": "1"})
    return int(response.json()["result"]["invoice_id"])


def stripe_step(url: str) -> int:
    with_key = {"Authorization": "Bearer sk_test_fake"}
    response = requests.post(f"{url}/v1/checkout/sessions", headers=with_key, timeout=TIMEOUT,
                             data={"mode": "payment", "line_items[0][quantity]": "1",
                                   "line_items[0][price_data][currency]": "usd",
                                   "line_items[0][price_data][unit_amount]": "850",
                                   "line_items[0][price_data][product_data][name]": "Stars"})
    assert response.status_code == 200, response.text
    sessions = requests.get(f"{url}/_fake/sessions", timeout=TIMEOUT).json()
    for session in sessions:
        fetched = requests.get(f"{url}/v1/checkout/sessions/{session['id']}", headers=with_key,
                               timeout=TIMEOUT)
        assert fetched.status_code == 200
    return len(sessions)


@pytest.mark.parametrize("module,step,args", [
    ("fakes.toncenter", toncenter_step, []),
    ("fakes.cryptopay", cryptopay_step, []),
    ("fakes.stripe", stripe_step, ["--webhook-url", ""]),
])
def test_the_state_option_keeps_state_across_process_restarts(
    tmp_path: Path, module: str, step: Callable[[str], int], args: list[str]
) -> None:
    state = str(tmp_path / "state.json")
    with running(module, "--state", state, *args) as url:
        before = step(url)
    with running(module, "--state", state, *args) as url:
        after = step(url)
    assert after > before
