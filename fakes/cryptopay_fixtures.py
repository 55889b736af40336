"""Pytest fixtures: a fake Crypto Pay API over HTTP on 127.0.0.1, and helpers for its controls.

Import them explicitly where needed:
``from fakes.cryptopay_fixtures import cryptopay_fake, cryptopay_fake_options  # noqa: F401``
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import requests

from fakes.cryptopay import (
    TOKEN_HEADER,
    FakeCryptoPayConfig,
    RunningFakeCryptoPay,
    signature_for,
    start_fake_cryptopay,
)

CONTROL_TIMEOUT = 15.0  # /_fake/pay waits for the webhook it delivers


class FakeCryptoPay:
    """A running fake Crypto Pay app and helpers for its API and /_fake/ control endpoints."""

    def __init__(self, running: RunningFakeCryptoPay) -> None:
        self._running = running
        self.config: FakeCryptoPayConfig = running.config
        self.url: str = running.url
        self.token: str = running.config.token

    def _control(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        response = requests.request(method, f"{self.url}/_fake/{path}", json=body,
                                    timeout=CONTROL_TIMEOUT)
        response.raise_for_status()
        return response.json()

    def api(self, method: str, *, token: str | None = None, **params: Any) -> requests.Response:
        """Call a Crypto Pay API method as a client would (POST, JSON parameters)."""
        return requests.post(f"{self.url}/api/{method}", json=params,
                             headers={TOKEN_HEADER: self.token if token is None else token},
                             timeout=CONTROL_TIMEOUT)

    def pay(self, invoice_id: int | str, **options: Any) -> dict[str, Any]:
        """Pay an invoice as a buyer would; the fake POSTs the signed webhook unless deliver=False.

        Returns {"invoice", "update": {"update_id", "body", "signature"}, "delivery"}.
        """
        result: dict[str, Any] = self._control("POST", f"pay/{invoice_id}", options or None)
        return result

    def resend(self, invoice_id: int | str, times: int = 1) -> list[dict[str, Any]]:
        """Send a paid invoice's update again, byte for byte, as Crypto Pay's retries do."""
        result: list[dict[str, Any]] = self._control(
            "POST", f"webhook/{invoice_id}", {"times": times})["deliveries"]
        return result

    def expire(self, invoice_id: int | str) -> dict[str, Any]:
        """Expire an active invoice now."""
        result: dict[str, Any] = self._control("POST", f"expire/{invoice_id}")
        return result

    def invoices(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._control("GET", "invoices")
        return result

    def deliveries(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._control("GET", "deliveries")
        return result

    def calls(self) -> dict[str, int]:
        """How many API calls arrived, per method."""
        result: dict[str, int] = self._control("GET", "calls")
        return result

    def set_webhook_url(self, url: str) -> None:
        self._control("POST", "config", {"webhook_url": url})

    def reset(self) -> None:
        self._control("POST", "reset")

    def sign(self, body: bytes, token: str | None = None) -> str:
        """The signature this app (or another token) puts on a webhook body."""
        return signature_for(self.token if token is None else token, body)

    def restart(self) -> None:
        """Stop and start on the same port and config, as a restart of the fake's process.

        Invoices survive only with ``state_path`` set (see `cryptopay_fake_options`).
        """
        host, port = self._running.server.server_address[:2]
        self._running.stop()
        self._running = start_fake_cryptopay(self.config, host=str(host), port=int(port))

    def stop(self) -> None:
        """Stop serving; the next call gets connection refused."""
        self._running.stop()


@pytest.fixture
def cryptopay_fake_options() -> dict[str, Any]:
    """FakeCryptoPayConfig fields for `cryptopay_fake`; override this fixture to change them.

    Add ``state_path`` (a file under ``tmp_path``) to keep invoices across `restart()`.
    """
    return {"token": "fake-cryptopay-token", "network": "testnet", "webhook_url": "",
            "webhook_timeout": 10.0}


@pytest.fixture
def cryptopay_fake(cryptopay_fake_options: dict[str, Any]) -> Iterator[FakeCryptoPay]:
    """A fresh fake Crypto Pay app on a free 127.0.0.1 port."""
    fake = FakeCryptoPay(start_fake_cryptopay(FakeCryptoPayConfig(**cryptopay_fake_options), port=0))
    try:
        yield fake
    finally:
        fake.stop()
