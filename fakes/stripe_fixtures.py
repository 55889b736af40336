"""Pytest fixtures for the fake Stripe: a running fake on 127.0.0.1 and a webhook receiver.

Import them explicitly where they are used::

    from fakes.stripe_fixtures import fake_stripe, fake_stripe_options  # noqa: F401
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import requests

from fakes.stripe import (
    FakeStripeConfig,
    FakeStripeState,
    RunningFakeStripe,
    sign_webhook_payload,
    start_fake_stripe,
)

CONTROL_TIMEOUT = 10.0


class FakeStripe:
    """A running fake Stripe and helpers for its /_fake/ control endpoints."""

    def __init__(self, running: RunningFakeStripe) -> None:
        self._running = running
        self.url: str = running.url
        # What the process was started with; /_fake/config changes the running copy only.
        self._started_with: FakeStripeConfig = running.state.config

    @property
    def config(self) -> FakeStripeConfig:
        return self._running.state.config

    @property
    def state(self) -> FakeStripeState:
        """The fake's objects in this process, for a test that must bend time."""
        return self._running.state

    @property
    def api_key(self) -> str:
        return self._running.state.config.api_key

    @property
    def webhook_secret(self) -> str:
        return self._running.state.config.webhook_secret

    def _control(self, method: str, path: str, **kwargs: Any) -> Any:
        response = requests.request(method, f"{self.url}/_fake/{path}", timeout=CONTROL_TIMEOUT,
                                    **kwargs)
        response.raise_for_status()
        return response.json()

    def complete(self, session_id: str, *, payment_status: str = "paid") -> dict[str, Any]:
        """The buyer pays (``"unpaid"``: by a delayed method); the completed event is delivered."""
        return self._control("POST", f"complete/{session_id}",
                             json={"payment_status": payment_status})

    def async_succeed(self, session_id: str) -> dict[str, Any]:
        """A delayed payment clears: checkout.session.async_payment_succeeded."""
        return self._control("POST", f"async-succeed/{session_id}")

    def async_fail(self, session_id: str) -> dict[str, Any]:
        """A delayed payment fails: checkout.session.async_payment_failed."""
        return self._control("POST", f"async-fail/{session_id}")

    def expire(self, session_id: str) -> dict[str, Any]:
        """Expire an open session: checkout.session.expired."""
        return self._control("POST", f"expire/{session_id}")

    def resend(self, event_id: str) -> dict[str, Any]:
        """Deliver an event again, freshly signed."""
        return self._control("POST", f"resend/{event_id}")

    def event(self, event_id: str) -> dict[str, Any]:
        """{"event": <the event>, "body": <the exact JSON text Stripe signs and sends>}."""
        return self._control("GET", f"events/{event_id}")

    def events(self, type: str | None = None) -> list[dict[str, Any]]:
        return self._control("GET", "events", params={"type": type} if type else {})

    def sessions(self) -> list[dict[str, Any]]:
        return self._control("GET", "sessions")

    def refunds(self) -> list[dict[str, Any]]:
        return self._control("GET", "refunds")

    def requests(self, path: str | None = None) -> list[dict[str, Any]]:
        """API requests as the fake received them, optionally only those to one path."""
        received: list[dict[str, Any]] = self._control("GET", "requests")
        return [r for r in received if path is None or r["path"] == path]

    def deliveries(self) -> list[dict[str, Any]]:
        return self._control("GET", "deliveries")

    def set_webhook_url(self, url: str | None) -> None:
        """Where events go from now on; None keeps them (resend or read them by hand)."""
        self._control("POST", "config", json={"webhook_url": url})

    def reset(self) -> None:
        self._control("POST", "reset")

    def sign(self, body: bytes | str, *, timestamp: int | None = None, secret: str | None = None) -> str:
        """A Stripe-Signature header for a body, as Stripe computes it."""
        return sign_webhook_payload(body, secret or self.webhook_secret, timestamp)

    def restart(self) -> None:
        """Stop and start on the same port with the starting config, as a process restart.

        The account survives only with ``state_path`` set (see `fake_stripe_options`).
        """
        host, port = self._running.server.server_address[:2]
        self._running.stop()
        self._running = start_fake_stripe(self._started_with, host=str(host), port=int(port))

    def stop(self) -> None:
        self._running.stop()


@pytest.fixture
def fake_stripe_options() -> dict[str, Any]:
    """FakeStripeConfig fields for `fake_stripe`; override this fixture to change them.

    Add ``state_path`` (a file under ``tmp_path``) to keep the account across `restart()`.
    """
    return {"api_key": "sk_test_fake", "webhook_secret": "whsec_fake", "webhook_url": None}


@pytest.fixture
def fake_stripe(fake_stripe_options: dict[str, Any]) -> Iterator[FakeStripe]:
    """A fresh fake Stripe on a free 127.0.0.1 port."""
    fake = FakeStripe(start_fake_stripe(FakeStripeConfig(**fake_stripe_options), port=0))
    try:
        yield fake
    finally:
        fake.stop()


@dataclass
class ReceivedWebhook:
    """One POST the receiver got."""

    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class WebhookReceiver:
    """A stand-in webhook endpoint that records what it receives and answers `status`."""

    url: str
    received: list[ReceivedWebhook] = field(default_factory=list)
    status: int = 200


@pytest.fixture
def webhook_receiver() -> Iterator[WebhookReceiver]:
    """An HTTP endpoint on 127.0.0.1 that records every POST (for testing the fake alone)."""
    lock = threading.Lock()
    receiver = WebhookReceiver(url="")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            with lock:
                receiver.received.append(ReceivedWebhook(dict(self.headers.items()), body))
            self.send_response(receiver.status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    receiver.url = f"http://127.0.0.1:{server.server_address[1]}/webhook/"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
