"""The README's "Partner API" section, run as a partner would run it.

The snippets are taken from README.md itself, so the README cannot drift from the code:
- the ```python block starting "# reseller_webhook.py" (the signature check) verifies what
  partners.webhooks really sends;
- the walkthrough creates a test key with the README's `manage.py apikey create` arguments,
  starts the README's receiver (the block starting "# receiver.py") as a subprocess, and runs
  the README's curl session (the ```sh block that exports API and KEY) against a live server.
If a block is renamed or removed, the extraction fails saying which one.
"""

from __future__ import annotations

import json
import os
import queue
import re
import shlex
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
import requests
from django.conf import settings
from django.core.management import call_command
from django.utils import timezone

from orders.models import Order
from partners.models import ApiKey, Partner, WebhookDelivery
from partners.services import api_key_create, partner_create
from partners.webhooks import EVENT_HEADER, SIGNATURE_HEADER, order_status_announce, signature_header
from partners.webhooks import webhook_deliver as deliver

README = Path(settings.BASE_DIR) / "README.md"
SECTION = "## Partner API"
_FENCE = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```\s*$", re.MULTILINE | re.DOTALL)


# --- Reading the README ---------------------------------------------------------------------


def partner_section() -> str:
    text = README.read_text(encoding="utf-8")
    start = text.find(f"\n{SECTION}\n")
    assert start >= 0, f"README.md has no {SECTION!r} section"
    end = text.find("\n## ", start + len(SECTION) + 2)
    return text[start:end if end >= 0 else len(text)]


def readme_block(language: str, first_line: str) -> str:
    """The one fenced block of `language` in the Partner API section whose first line starts
    with `first_line`."""
    found = [body for lang, body in _FENCE.findall(partner_section())
             if lang == language and body.lstrip().startswith(first_line)]
    assert len(found) == 1, (
        f"README.md's {SECTION!r} section should hold exactly one ```{language} block starting "
        f"with {first_line!r}; found {len(found)}. The partner docs test runs that block.")
    return found[0]


def shell_commands(block: str) -> list[str]:
    """The commands of a shell block: continuation lines joined, comments and blanks dropped."""
    commands, current = [], ""
    for line in block.splitlines():
        if not current and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        commands.append((current + line).strip())
        current = ""
    assert not current, "README shell block ends with a line continuation"
    return commands


def verify_function() -> Callable[..., bool]:
    """The README's verify_signature, defined from the README's text alone."""
    namespace: dict[str, Any] = {}
    exec(compile(readme_block("python", "# reseller_webhook.py"), "README:reseller_webhook.py",  # noqa: S102  # nosec B102
                 "exec"), namespace)
    assert callable(namespace.get("verify_signature")), \
        "README's reseller_webhook.py no longer defines verify_signature(secret, header, body, now=None)"
    return namespace["verify_signature"]


def test_the_readme_blocks_are_there() -> None:
    """Fails with a clear message if an edit of the README drops what the partner runs."""
    assert "verify_signature" in readme_block("python", "# receiver.py")
    session = shell_commands(readme_block("sh", "export API="))
    for needed in ("/products", "/validate-user", "/topup", "Idempotency-Key", "/orders/$ORDER_ID",
                   "/balance", "/ledger"):
        assert any(needed in command for command in session), f"README session lost {needed}"
    assert "apikey create" in readme_block("sh", ".venv/bin/python manage.py apikey create")
    assert "(docs/api.md)" in partner_section()


# --- (1) The README's verifier against real deliveries ----------------------------------------


class _Capture(BaseHTTPRequestHandler):
    """Stores each POST (headers and raw body) and answers 204."""

    received: queue.Queue = queue.Queue()

    def do_POST(self) -> None:  # noqa: N802 (http.server's name)
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.received.put((dict(self.headers), body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def capture() -> Iterator[tuple[str, queue.Queue]]:
    handler = type("Capture", (_Capture,), {"received": queue.Queue()})
    server = HTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/hook", handler.received
    server.shutdown()
    server.server_close()


def _delivered_request(url: str, received: queue.Queue) -> tuple[ApiKey, dict, bytes]:
    """A delivery POSTed by the real webhook_deliver to the capture server, as it arrived."""
    partner = partner_create(name="Docs Reader", actor="test")
    key, _token = api_key_create(partner=partner, test=True)
    ApiKey.objects.filter(pk=key.pk).update(webhook_url=url)
    key.refresh_from_db()
    delivery = WebhookDelivery.objects.create(api_key=key, event="order.updated", url=url,
                                              payload={}, next_attempt_at=timezone.now())
    # The shape order_status_announce gives it; a non-ASCII username tests the raw-bytes rule.
    WebhookDelivery.objects.filter(pk=delivery.pk).update(payload={
        "id": str(delivery.event_id), "type": "order.updated",
        "data": {"order_id": "x", "status": "completed", "cost": "8.50", "username": "@имя"}})
    result = deliver(delivery_id=delivery.pk)
    assert result.status == WebhookDelivery.Status.DELIVERED, result.last_error
    headers, body = received.get(timeout=5)
    return key, headers, body


def test_readme_verifier_accepts_a_real_delivery_and_refuses_tampering(db, capture) -> None:
    verify_signature = verify_function()
    key, headers, body = _delivered_request(*capture)
    header = headers[SIGNATURE_HEADER]
    sent_at = int(re.fullmatch(r"t=(\d+),v1=[0-9a-f]{64}", header)[1])
    assert abs(sent_at - time.time()) < 10
    assert json.loads(body)["id"] == headers[EVENT_HEADER]

    assert verify_signature(key.webhook_secret, header, body) is True
    # Still fresh just inside the window, on either side of the receiver's clock.
    assert verify_signature(key.webhook_secret, header, body, now=sent_at + 299) is True
    assert verify_signature(key.webhook_secret, header, body, now=sent_at - 299) is True

    tampered = body.replace(b'"8.50"', b'"0.01"')
    assert tampered != body
    assert verify_signature(key.webhook_secret, header, tampered) is False
    assert verify_signature(key.webhook_secret, header, body + b" ") is False
    assert verify_signature("whsec_" + "x" * 43, header, body) is False
    other_key, _ = api_key_create(partner=key.partner, test=True)
    assert verify_signature(other_key.webhook_secret, header, body) is False
    # A captured delivery replayed later is refused, though its signature is genuine.
    assert verify_signature(key.webhook_secret, header, body, now=sent_at + 301) is False
    stale = signature_header(secret=key.webhook_secret, body=body, timestamp=int(time.time()) - 400)
    assert verify_signature(key.webhook_secret, stale, body) is False
    # Moving t forward without the secret breaks the HMAC.
    forged = header.replace(f"t={sent_at}", f"t={sent_at + 100}")
    assert verify_signature(key.webhook_secret, forged, body, now=sent_at + 100) is False
    for garbage in ("", "t=abc,v1=00", "v1=" + "0" * 64, f"t={sent_at}", "nonsense"):
        assert verify_signature(key.webhook_secret, garbage, body) is False


# --- (2) The walkthrough: key, receiver and curl session from the README ----------------------


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _require_curl() -> str:
    curl = shutil.which("curl")
    if curl is None:
        if os.environ.get("CI") == "true":
            pytest.fail("curl is not installed; the README walkthrough needs it (CI must have it)")
        pytest.skip("curl is not installed: the README's curl session cannot run here")
    return curl


class Receiver:
    """The README's receiver.py run with python in a subprocess; its output read by a thread."""

    def __init__(self, directory: Path, port: int, secret: str) -> None:
        (directory / "reseller_webhook.py").write_text(
            readme_block("python", "# reseller_webhook.py"), encoding="utf-8")
        (directory / "receiver.py").write_text(readme_block("python", "# receiver.py"),
                                               encoding="utf-8")
        env = {"PATH": os.environ.get("PATH", ""), "WEBHOOK_SECRET": secret,
               "PYTHONUNBUFFERED": "1"}
        self.process = subprocess.Popen(  # nosec B603: our interpreter, a file we wrote
            [sys.executable, "receiver.py", str(port)], cwd=directory, env=env,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                return
            except OSError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise AssertionError(f"README receiver did not start: {self.output()}") from None
                time.sleep(0.05)

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line.rstrip("\n"))

    def wait_for(self, pattern: str, timeout: float = 15) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.1)
            except queue.Empty:
                continue
            self.seen.append(line)
            if re.search(pattern, line):
                return line
        raise AssertionError(f"the README receiver never printed {pattern!r}; it printed {self.seen}")

    def output(self) -> str:
        while not self.lines.empty():
            self.seen.append(self.lines.get())
        return "\n".join(self.seen)

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=5)


def _apikey_create_args(webhook_url: str) -> list[str]:
    """The README's `manage.py apikey create …` arguments, with our receiver's URL."""
    command = shell_commands(readme_block("sh", ".venv/bin/python manage.py apikey create"))
    assert len(command) == 1, command
    words = shlex.split(command[0])
    args = words[words.index("manage.py") + 1:]
    assert args[:2] == ["apikey", "create"] and "--test" in args, args
    at = args.index("--webhook-url")
    assert args[at + 1] == "http://127.0.0.1:9000/hook", "README's receiver listens on :9000/hook"
    args[at + 1] = webhook_url
    return args


def _run(curl_command: str, env: dict[str, str], timeout: float = 20) -> str:
    completed = subprocess.run(  # nosec B603 B607: the README's own command, run by bash
        ["bash", "-c", curl_command], env=env, capture_output=True, text=True, timeout=timeout)
    assert completed.returncode == 0, (curl_command, completed.returncode, completed.stderr)
    return completed.stdout


def _json_of(answer: str) -> dict[str, Any]:
    """The JSON body of a curl answer, with or without -i's status line and headers."""
    if answer.startswith("HTTP/"):
        answer = re.split(r"\r?\n\r?\n", answer, maxsplit=1)[-1]
    return json.loads(answer)


@pytest.fixture
def instant_sandbox(settings) -> None:
    settings.PARTNER_SANDBOX_DELIVERY_SECONDS = 0


def test_readme_walkthrough(live_server, catalog, q_sync, instant_sandbox, tmp_path) -> None:
    _require_curl()
    port = _free_port()

    out = StringIO()
    call_command(*_apikey_create_args(f"http://127.0.0.1:{port}/hook"), stdout=out)
    printed = out.getvalue()
    token = re.search(r"^(rsk_test_\S+)$", printed, re.MULTILINE)
    secret = re.search(r"^Webhook signing secret: (whsec_\S+)$", printed, re.MULTILINE)
    assert token and secret, printed
    partner = Partner.objects.get(name="Demo")
    assert partner.sandbox_balance == settings.PARTNER_SANDBOX_START_BALANCE > 0

    receiver = Receiver(tmp_path, port, secret[1])
    try:
        session = shell_commands(readme_block("sh", "export API="))
        env = {"PATH": os.environ.get("PATH", ""), "API": f"{live_server.url}/api/v1",
               "KEY": token[1]}
        answers: dict[str, str] = {}
        for command in session:
            if re.fullmatch(r"export (API|KEY)=\S+(\s+#.*)?", command):
                continue  # the values above stand in for the README's placeholders
            if command.startswith("export ORDER_ID="):
                env["ORDER_ID"] = _json_of(answers["topup"])["order_id"]
                continue
            step = next((name for name in ("products", "validate-user", "topup", "orders",
                                           "balance", "ledger") if f'"$API/{name}' in command),
                        None)
            assert step is not None, f"README session has a command this test does not know: {command}"
            assert step not in answers, f"README runs {step} twice: {command}"
            answers[step] = _run(command, env)

        products = _json_of(answers["products"])["products"]
        assert any(package["stars"] == 500 for package in products[0]["packages"])
        assert _json_of(answers["validate-user"]) == {
            "valid": True, "user_id": "100000001", "username": "@sandbox_ok"}
        status_line = answers["topup"].splitlines()[0].strip()
        assert re.fullmatch(r"HTTP/[\d.]+ 201( Created)?", status_line), status_line
        placed = _json_of(answers["topup"])
        order_id = placed["order_id"]
        polled = json.loads(answers["orders"])
        assert (polled["order_id"], polled["status"]) == (order_id, "completed"), polled
        balance = _json_of(answers["balance"])
        assert balance["sandbox"] is True
        assert float(balance["balance"]) == pytest.approx(
            float(settings.PARTNER_SANDBOX_START_BALANCE) - float(placed["cost"]))
        ledger = _json_of(answers["ledger"])["entries"]
        assert [entry["kind"] for entry in ledger] == ["charge", "sandbox_grant"]
        assert ledger[0]["order_id"] == order_id

        # The signed webhook for the completed order reached the README's receiver, verified.
        line = receiver.wait_for(rf"^verified order\.updated \S+: order {order_id} .* is completed$")
        event_id = line.split()[2].rstrip(":")
        delivery = WebhookDelivery.objects.get(event_id=event_id)
        assert delivery.status == WebhookDelivery.Status.DELIVERED
        assert delivery.last_status_code == 204
        assert delivery.payload["data"]["status"] == "completed"
        assert "rejected" not in receiver.output()

        # What the README says of a second run of the same top-up: the same order, replayed.
        topup_command = next(command for command in session if "$API/topup" in command)
        again = _run(topup_command, env)
        assert re.search(r"^Idempotent-Replayed: true\r?$", again, re.MULTILINE | re.IGNORECASE), again
        assert _json_of(again) == placed
        assert Order.objects.filter(partner_order__partner=partner).count() == 1

        # A delivery whose signature was not made with the secret is refused by the receiver.
        forged = json.dumps({"id": "forged", "type": "order.updated",
                             "data": {"order_id": order_id, "reference": "x",
                                      "status": "failed"}}).encode()
        header = signature_header(secret="whsec_wrong", body=forged, timestamp=int(time.time()))
        answer = requests.post(f"http://127.0.0.1:{port}/hook", data=forged, timeout=5,
                               headers={SIGNATURE_HEADER: header})
        assert answer.status_code == 400
        receiver.wait_for(r"^rejected")
    finally:
        receiver.stop()
    assert order_status_announce(order_id=Order.objects.get(public_id=order_id).pk) is None
