"""The fake Crypto Pay's wire behaviour, checked over real HTTP on 127.0.0.1."""

from __future__ import annotations

import hashlib
import hmac
import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests

from fakes.cryptopay_fixtures import FakeCryptoPay, cryptopay_fake, cryptopay_fake_options  # noqa: F401

TIMEOUT = 5.0


class Receiver:
    """A webhook endpoint on 127.0.0.1 that records what arrives and answers a chosen status."""

    def __init__(self) -> None:
        self.received: list[tuple[dict[str, str], bytes]] = []
        self.status = 200
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                receiver.received.append(({k.lower(): v for k, v in self.headers.items()}, body))
                self.send_response(receiver.status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook/"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05},
                                       daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    hook = Receiver()
    try:
        yield hook
    finally:
        hook.stop()


@pytest.fixture
def fake(cryptopay_fake: FakeCryptoPay, receiver: Receiver) -> FakeCryptoPay:
    cryptopay_fake.set_webhook_url(receiver.url)
    return cryptopay_fake


def create(fake: FakeCryptoPay, **params: Any) -> dict[str, Any]:
    body = {"currency_type": "fiat", "fiat": "USD", "amount": "8.50", "payload": "ORD-000001",
            "expires_in": 900, **params}
    response = fake.api("createInvoice", **body)
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["ok"] is True
    invoice: dict[str, Any] = answer["result"]
    return invoice


def error_name(response: requests.Response) -> str:
    answer = response.json()
    assert answer["ok"] is False and answer["error"]["code"] == response.status_code
    name: str = answer["error"]["name"]
    return name


# --- auth and the envelope -----------------------------------------------------------------


def test_token_is_required_on_every_api_method(fake):
    for token in ("", "wrong-token"):
        response = fake.api("getMe", token=token)
        assert response.status_code == 401
        assert response.json() == {"ok": False, "error": {"code": 401, "name": "UNAUTHORIZED"}}
    response = requests.get(f"{fake.url}/api/getInvoices", timeout=TIMEOUT)
    assert response.status_code == 401
    assert fake.calls() == {}


def test_get_me_by_get_and_post(fake):
    by_get = requests.get(f"{fake.url}/api/getMe", headers={"Crypto-Pay-API-Token": fake.token},
                          timeout=TIMEOUT)
    assert by_get.json() == fake.api("getMe").json()
    assert by_get.json()["result"]["payment_processing_bot_username"] == "CryptoTestnetBot"


def test_unknown_method(fake):
    response = fake.api("sendStars")
    assert error_name(response) == "METHOD_NOT_FOUND"


# --- createInvoice -------------------------------------------------------------------------


def test_create_fiat_invoice_has_crypto_pays_fields(fake):
    invoice = create(fake, description="500 Stars", accepted_assets="USDT,TON")
    assert isinstance(invoice["invoice_id"], int) and invoice["hash"]
    assert (invoice["status"], invoice["currency_type"], invoice["fiat"], invoice["amount"]) == (
        "active", "fiat", "USD", "8.5")
    assert invoice["accepted_assets"] == ["USDT", "TON"]
    assert invoice["payload"] == "ORD-000001" and invoice["description"] == "500 Stars"
    for link in ("bot_invoice_url", "mini_app_invoice_url", "web_app_invoice_url"):
        assert invoice[link].startswith(f"{fake.url}/_fake/checkout/{invoice['hash']}")
    created = datetime.fromisoformat(invoice["created_at"])
    expires = datetime.fromisoformat(invoice["expiration_date"])
    assert invoice["created_at"].endswith("Z") and 899 <= (expires - created).total_seconds() <= 901
    assert "paid_at" not in invoice and "paid_asset" not in invoice


def test_parameters_by_query_string_and_form(fake):
    headers = {"Crypto-Pay-API-Token": fake.token}
    by_query = requests.get(f"{fake.url}/api/createInvoice", headers=headers, timeout=TIMEOUT,
                            params={"asset": "TON", "amount": "1.5", "allow_comments": "false"})
    assert by_query.json()["result"]["asset"] == "TON"
    assert by_query.json()["result"]["allow_comments"] is False
    by_form = requests.post(f"{fake.url}/api/createInvoice", headers=headers, timeout=TIMEOUT,
                            data={"currency_type": "fiat", "fiat": "EUR", "amount": "3"})
    assert by_form.json()["result"]["fiat"] == "EUR"


@pytest.mark.parametrize("params,name", [
    ({"amount": "0"}, "AMOUNT_INVALID"),
    ({"amount": "ten"}, "AMOUNT_INVALID"),
    ({"fiat": "XTR"}, "FIAT_INVALID"),
    ({"currency_type": "barter"}, "CURRENCY_TYPE_INVALID"),
    ({"expires_in": 0}, "EXPIRES_IN_INVALID"),
    ({"expires_in": 2_678_401}, "EXPIRES_IN_INVALID"),
    ({"accepted_assets": "USDT,DOGE"}, "ACCEPTED_ASSETS_INVALID"),
    ({"payload": "x" * 4097}, "PAYLOAD_TOO_LONG"),
    ({"paid_btn_name": "callback"}, "PAID_BTN_URL_INVALID"),
])
def test_create_invoice_validation(fake, params, name):
    body = {"currency_type": "fiat", "fiat": "USD", "amount": "8.50", **params}
    response = fake.api("createInvoice", **body)
    assert response.status_code == 400 and error_name(response) == name
    assert fake.invoices() == []


# --- getInvoices ---------------------------------------------------------------------------


def test_get_invoices_by_ids_status_and_paging(fake):
    first, second, third = create(fake), create(fake), create(fake)
    fake.pay(second["invoice_id"])
    ids = f"{first['invoice_id']},{second['invoice_id']}"
    items = fake.api("getInvoices", invoice_ids=ids).json()["result"]["items"]
    assert sorted(item["invoice_id"] for item in items) == [first["invoice_id"], second["invoice_id"]]
    paid = fake.api("getInvoices", invoice_ids=ids, status="paid").json()["result"]["items"]
    assert [item["invoice_id"] for item in paid] == [second["invoice_id"]]
    page = fake.api("getInvoices", count=1, offset=1).json()["result"]["items"]
    assert [item["invoice_id"] for item in page] == [second["invoice_id"]]  # newest first
    assert error_name(fake.api("getInvoices", status="lost")) == "STATUS_INVALID"
    assert error_name(fake.api("getInvoices", count=1001)) == "COUNT_INVALID"
    assert error_name(fake.api("getInvoices", invoice_ids="1,x")) == "INVOICE_IDS_INVALID"
    assert third["invoice_id"] not in [item["invoice_id"] for item in paid]


def test_invoice_expires_when_its_time_passes(fake):
    invoice = create(fake, expires_in=1)
    time.sleep(1.2)
    [item] = fake.api("getInvoices", invoice_ids=str(invoice["invoice_id"])).json()["result"]["items"]
    assert item["status"] == "expired"
    assert requests.post(f"{fake.url}/_fake/pay/{invoice['invoice_id']}", timeout=TIMEOUT).status_code == 409


# --- paying and webhooks -------------------------------------------------------------------


def test_pay_posts_a_signed_invoice_paid_update(fake, receiver):
    invoice = create(fake)
    result = fake.pay(invoice["invoice_id"], paid_asset="TON")
    assert result["delivery"]["status"] == 200
    [(headers, body)] = receiver.received
    assert body == result["update"]["body"].encode()
    secret = hashlib.sha256(fake.token.encode()).digest()
    assert headers["crypto-pay-api-signature"] == hmac.new(secret, body, hashlib.sha256).hexdigest()
    assert headers["content-type"] == "application/json"
    update = json.loads(body)
    assert update["update_type"] == "invoice_paid" and update["request_date"].endswith("Z")
    paid = update["payload"]
    assert (paid["invoice_id"], paid["status"], paid["amount"], paid["fiat"]) == (
        invoice["invoice_id"], "paid", "8.5", "USD")
    assert (paid["paid_asset"], paid["paid_amount"], paid["paid_usd_rate"]) == ("TON", "2.65625", "3.2")
    assert paid["paid_at"] and paid["payload"] == "ORD-000001"
    [listed] = fake.api("getInvoices", invoice_ids=str(invoice["invoice_id"])).json()["result"]["items"]
    assert listed == paid


def test_paying_twice_is_refused_and_resend_repeats_the_same_bytes(fake, receiver):
    invoice = create(fake)
    fake.pay(invoice["invoice_id"])
    again = requests.post(f"{fake.url}/_fake/pay/{invoice['invoice_id']}", timeout=TIMEOUT)
    assert again.status_code == 409
    deliveries = fake.resend(invoice["invoice_id"], times=2)
    assert [d["status"] for d in deliveries] == [200, 200]
    assert len({body for _, body in receiver.received}) == 1 and len(receiver.received) == 3


def test_lost_webhook_and_failing_endpoint_are_recorded(fake, receiver):
    lost = create(fake)
    result = fake.pay(lost["invoice_id"], deliver=False)
    assert result["delivery"] is None and receiver.received == []
    receiver.status = 500
    failing = create(fake)
    assert fake.pay(failing["invoice_id"])["delivery"]["status"] == 500
    fake.set_webhook_url("http://127.0.0.1:9/unreachable/")
    unreachable = create(fake)
    assert fake.pay(unreachable["invoice_id"])["delivery"]["error"]
    assert [d["invoice_id"] for d in fake.deliveries()] == [failing["invoice_id"], unreachable["invoice_id"]]


def test_expire_and_forced_late_payment(fake):
    invoice = create(fake)
    assert fake.expire(invoice["invoice_id"])["status"] == "expired"
    assert requests.post(f"{fake.url}/_fake/pay/{invoice['invoice_id']}", timeout=TIMEOUT).status_code == 409
    assert fake.pay(invoice["invoice_id"], force=True)["invoice"]["status"] == "paid"
    assert requests.post(f"{fake.url}/_fake/expire/{invoice['invoice_id']}", timeout=TIMEOUT).status_code == 409
    assert requests.post(f"{fake.url}/_fake/pay/999999", timeout=TIMEOUT).status_code == 404


def test_fault_options_change_what_the_update_reports(fake):
    invoice = create(fake)
    paid = fake.pay(invoice["invoice_id"], amount="8.00", fiat="EUR",
                    paid_at="2024-01-01T00:00:00.000Z")["invoice"]
    assert (paid["amount"], paid["fiat"], paid["paid_at"]) == ("8", "EUR", "2024-01-01T00:00:00.000Z")


def test_checkout_page_pays_like_a_buyer(fake, receiver):
    invoice = create(fake, description="500 Stars <b>")
    page = requests.get(invoice["bot_invoice_url"], timeout=TIMEOUT)
    assert page.status_code == 200 and "Pay with USDT" in page.text and "&lt;b&gt;" in page.text
    checkout = invoice["bot_invoice_url"].split("?")[0]
    done = requests.post(checkout, data={"asset": "BTC"}, timeout=TIMEOUT)
    assert "Paid." in done.text and "Pay with" not in done.text
    assert json.loads(receiver.received[0][1])["payload"]["paid_asset"] == "BTC"


def test_reset_forgets_everything(fake):
    fake.pay(create(fake)["invoice_id"])
    fake.reset()
    assert fake.invoices() == [] and fake.deliveries() == [] and fake.calls() == {}


def test_runs_as_a_process(tmp_path):
    process = subprocess.Popen(
        [sys.executable, "-m", "fakes.cryptopay", "--host", "127.0.0.1", "--port", "0",
         "--token", "cli-token", "--network", "mainnet"],
        stderr=subprocess.PIPE, text=True, cwd=Path(__file__).resolve().parents[2],
    )
    try:
        assert process.stderr is not None
        banner = process.stderr.readline()
        url = banner.split(" listening on ")[1].split(",")[0]
        response = requests.get(f"{url}/api/getMe", headers={"Crypto-Pay-API-Token": "cli-token"},
                                timeout=TIMEOUT)
        assert response.json()["result"]["payment_processing_bot_username"] == "CryptoBot"
    finally:
        process.terminate()
        process.wait(timeout=TIMEOUT)
