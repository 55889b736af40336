"""Two shops chained: this shop (A, the test process) buys from another shop's partner API (B).

B is real processes on its own SQLite file, set up as an operator would: migrate, the demo
catalog, `manage.py apikey create --partner Downstream --test`, gunicorn with gunicorn.conf.py
and `manage.py qcluster`. A is the test's database, its supplier settings pointed at B's
/api/v1/ with that key, and its own fulfilment (orders.services.order_fulfil) driven here. B's
test key routes B's orders to B's in-process sandbox supplier, so a buyer on A is delivered
through B's sandbox, paid from B's sandbox balance for partner Downstream.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests
from django.conf import settings

from orders import services
from orders.models import Order, SupplierAttempt
from orders.models import OrderStatus as S
from orders.suppliers.http import HttpSupplierClient
from orders.tests.clusters import Cluster
from shop.demo import demo_catalog_load

pytestmark = [pytest.mark.cluster, pytest.mark.django_db(transaction=True)]

ROOT = Path(settings.BASE_DIR)
FINAL = (S.DELIVERED, S.REFUNDED, S.REVIEW, S.ON_HOLD)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _manage(env: dict[str, str], *args: str) -> str:
    done = subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, f"manage.py {' '.join(args)}:\n{done.stdout}\n{done.stderr}"
    return done.stdout


class Upstream:
    """Shop B: its web server (stopped and started again at will) and its cluster."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.port = _free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.api = f"{self.base}/api/v1"
        self.env = {
            **os.environ,
            # B is a demo shop of its own: nothing of the test run's database, broker or
            # integrations may leak in from the environment.
            "DJANGO_ENV": "demo", "DATABASE_URL": "", "SQLITE_PATH": str(tmp / "b.sqlite3"),
            "REDIS_URL": "", "Q_CLUSTER_NAME_PREFIX": "chain-b", "Q_WORKERS": "2",
            "Q_TIMEOUT": "60", "Q_RETRY": "90", "TELEGRAM_BOT_TOKEN": "", "SENTRY_DSN": "",
            # B's own upstream (unused: its partner's test key runs on the in-process sandbox).
            "SUPPLIER_CODE": "sandbox", "SUPPLIER_BASE_URL": f"http://127.0.0.1:{_free_port()}",
            "PARTNER_SANDBOX_DELIVERY_SECONDS": "0.3", "FULFILMENT_POLL_FIRST_DELAY": "0.2",
            "WEB_CONCURRENCY": "2", "WEB_THREADS": "4", "PYTHONUNBUFFERED": "1",
        }
        self.web: subprocess.Popen | None = None
        self.web_starts = 0
        self.cluster = Cluster(self.env, tmp)
        self.key = ""

    def set_up(self) -> None:
        # One process for the steps that print nothing we need (each start costs a second).
        _manage(self.env, "shell", "-c",
                "from django.core.management import call_command; "
                "call_command('migrate', interactive=False, verbosity=0); "
                "call_command('createcachetable'); "
                "from shop.demo import demo_catalog_load; demo_catalog_load()")
        printed = _manage(self.env, "apikey", "create", "--partner", "Downstream", "--test",
                          "--name", "shop A")
        found = re.search(r"^(rsk_test_\S+)$", printed, re.MULTILINE)
        assert found, printed
        self.key = found.group(1)

    def start_web(self) -> None:
        self.web_starts += 1
        log = open(self.tmp / f"gunicorn-{self.web_starts}.log", "wb")  # noqa: SIM115
        self.web = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "--config", "gunicorn.conf.py",
             "--bind", f"127.0.0.1:{self.port}", "--graceful-timeout", "2"],
            cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        deadline = time.monotonic() + 20
        while True:
            try:
                if requests.get(f"{self.base}/healthz", timeout=5).status_code == 200:
                    return
            except (requests.ConnectionError, requests.Timeout):
                pass
            if self.web.poll() is not None or time.monotonic() > deadline:
                pytest.fail("B's gunicorn did not come up:\n" + self.logs())
            time.sleep(0.1)

    def stop_web(self) -> None:
        if self.web is None:
            return
        if self.web.poll() is None:
            self.web.send_signal(signal.SIGTERM)
            try:
                self.web.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(self.web.pid, signal.SIGKILL)  # workers the master left, if any
        except ProcessLookupError:
            pass
        if self.web.poll() is None:
            self.web.wait(timeout=10)

    def stop(self) -> None:
        self.stop_web()
        self.cluster.stop(timeout=3)

    def logs(self) -> str:
        return "\n".join(path.read_text(errors="replace")[-3000:]
                         for path in sorted(self.tmp.glob("*.log")))

    def get(self, path: str, **params: str) -> requests.Response:
        return requests.get(f"{self.api}/{path}", params=params, timeout=10,
                            headers={"Authorization": f"Bearer {self.key}"})

    def balance(self) -> Decimal:
        answer = self.get("balance")
        assert answer.status_code == 200, answer.text
        assert answer.json()["sandbox"] is True
        return Decimal(answer.json()["balance"])

    def order_by_reference(self, reference: str) -> requests.Response:
        return self.get("orders", reference=reference)


@pytest.fixture(scope="module")
def upstream(tmp_path_factory) -> Iterator[Upstream]:
    shop_b = Upstream(tmp_path_factory.mktemp("shop_b"))
    try:
        shop_b.set_up()
        shop_b.cluster.start()
        shop_b.start_web()
        yield shop_b
    finally:
        shop_b.stop()


@pytest.fixture
def shop_a(upstream: Upstream, settings) -> Upstream:
    """This shop's supplier settings pointed at B's partner API with B's test key."""
    settings.SUPPLIER_CODE = "sandbox"  # the catalog's Supplier row (A's own cost and tiers)
    settings.SUPPLIER_BASE_URL = upstream.api
    settings.SUPPLIER_API_KEY = upstream.key
    settings.SUPPLIER_TIMEOUT = 5.0
    settings.FULFILMENT_POLL_FIRST_DELAY = 0.2
    settings.FULFILMENT_POLL_MAX_SECONDS = 1.0
    settings.FULFILMENT_UNKNOWN_GRACE_SECONDS = 2.0
    demo_catalog_load()
    return upstream


def _buy(recipient: str) -> Order:
    """A buyer on A: validated at B (through A's supplier client), Standard 500, paid in test mode."""
    product = demo_catalog_load()
    _, info = services.recipient_validate(raw=recipient)
    order = services.order_create(
        channel="web", product=product, recipient_input=recipient, recipient=info,
        payment_method="sandbox", package_id=product.packages.get(quantity=500).pk)
    order = services.order_pay_sandbox(order=order)
    assert order.status == S.PAID
    return order


def _fulfil_until_final(order: Order, upstream: Upstream, seconds: float = 20) -> Order:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        order = services.order_fulfil(order_id=order.pk, budget_seconds=3)
        if order.status in FINAL:
            return order
        time.sleep(0.2)
    pytest.fail(f"{order} is {order.status} after {seconds}s\n{upstream.logs()}")


def test_a_buyer_on_a_is_delivered_through_bs_sandbox(shop_a: Upstream):
    balance_before = shop_a.balance()
    order = _buy("@sandbox_ok")
    assert order.recipient_user_id == "100000001"  # B's sandbox resolved the username

    order = _fulfil_until_final(order, shop_a)

    assert order.status == S.DELIVERED
    attempt = SupplierAttempt.objects.get(order=order)
    # A's per-order Idempotency-Key is B's partner reference for the order it placed.
    assert attempt.idempotency_key == order.idempotency_key
    assert attempt.supplier_order_id == order.supplier_order_id
    upstream_order = shop_a.get(f"orders/{order.supplier_order_id}")
    assert upstream_order.status_code == 200, upstream_order.text
    placed = upstream_order.json()
    assert placed["order_id"] == order.supplier_order_id
    assert placed["reference"] == order.idempotency_key
    assert placed["status"] == "completed"
    assert (placed["user_id"], placed["stars"]) == ("100000001", 500)
    # B charged its partner (us) its own price for the package, from the sandbox balance.
    cost = Decimal(placed["cost"])
    assert cost > 0
    assert shop_a.balance() == balance_before - cost
    charges = [entry for entry in shop_a.get("ledger").json()["entries"]
               if entry["order_id"] == order.supplier_order_id]
    assert [(entry["kind"], Decimal(entry["amount"])) for entry in charges] == [("charge", -cost)]
    # The lookup by reference (A's recovery path) finds the same order.
    by_reference = shop_a.order_by_reference(order.idempotency_key)
    assert by_reference.status_code == 200 and by_reference.json()["order_id"] == placed["order_id"]
    # B delivered it in one pass of its own fulfilment, not by recovering from a crash.
    assert "Traceback" not in shop_a.cluster.logs()


def test_b_down_the_order_waits_then_is_delivered_once_when_b_is_back(shop_a: Upstream):
    order = _buy("@user4242")
    shop_a.stop_web()
    try:
        order = services.order_fulfil(order_id=order.pk, budget_seconds=0.5)
        # Nothing answered: the top-up was not placed, the order waits to be tried again.
        assert order.status == S.PAID
        assert order.next_action_at is not None
        assert not SupplierAttempt.objects.filter(order=order).exists()
        assert order.events.filter(to_status=S.SUBMITTING).count() == 0
    finally:
        shop_a.start_web()
    assert shop_a.order_by_reference(order.idempotency_key).status_code == 404

    order = _fulfil_until_final(order, shop_a)

    assert order.status == S.DELIVERED
    assert SupplierAttempt.objects.filter(order=order).count() == 1
    listed = shop_a.get("orders", user_id="4242").json()["orders"]
    assert [placed["reference"] for placed in listed] == [order.idempotency_key]
    assert listed[0]["status"] == "completed"


class DroppingProxy:
    """Forwards A's calls to B, but hangs up on the first POST /topup once B has answered:
    the top-up is placed at B and A never hears of it (a reset after commit)."""

    def __init__(self, upstream: str) -> None:
        self.topups_forwarded = 0
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def _forward(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                headers = {name: value for name, value in self.headers.items()
                           if name.lower() in ("authorization", "idempotency-key",
                                               "content-type", "accept")}
                answer = requests.request(self.command, upstream + self.path, data=body,
                                          headers=headers, timeout=10, allow_redirects=False)
                if self.command == "POST" and self.path.endswith("/topup"):
                    proxy.topups_forwarded += 1
                    if proxy.topups_forwarded == 1:
                        self.close_connection = True
                        return  # no answer at all
                self.send_response(answer.status_code)
                for name in ("Content-Type", "Retry-After"):
                    if name in answer.headers:
                        self.send_header(name, answer.headers[name])
                self.send_header("Content-Length", str(len(answer.content)))
                self.end_headers()
                self.wfile.write(answer.content)

            do_GET = do_POST = _forward

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> DroppingProxy:
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_an_answer_lost_after_b_placed_it_is_found_by_reference(shop_a: Upstream, settings):
    order = _buy("@user777")
    balance_before = shop_a.balance()
    with DroppingProxy(shop_a.base) as proxy:
        settings.SUPPLIER_BASE_URL = proxy.url + "/api/v1"
        order = _fulfil_until_final(order, shop_a)
    assert proxy.topups_forwarded == 1  # resolved by lookup, never placed again

    assert order.status == S.DELIVERED
    assert order.events.filter(to_status=S.UNKNOWN).exists()
    attempt = SupplierAttempt.objects.get(order=order)
    assert attempt.outcome == SupplierAttempt.Outcome.UNKNOWN  # its answer never came
    placed = shop_a.order_by_reference(order.idempotency_key).json()
    assert placed["order_id"] == order.supplier_order_id
    assert shop_a.balance() == balance_before - Decimal(placed["cost"])


def test_find_by_reference_at_b_tells_none_from_an_order(shop_a: Upstream):
    client = HttpSupplierClient(base_url=shop_a.api, api_key=shop_a.key, timeout=5)
    assert client.find_by_reference("no-such-reference-at-b") is None
    wrong_key = HttpSupplierClient(base_url=shop_a.api, api_key=shop_a.key[:-2] + "xx", timeout=5)
    from orders.exceptions import SupplierAuthError

    with pytest.raises(SupplierAuthError):
        wrong_key.find_by_reference("anything")
