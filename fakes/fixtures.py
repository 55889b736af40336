"""Pytest fixtures: a real sandbox supplier over HTTP on 127.0.0.1, and a client for it."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import requests

from fakes.supplier import RunningSupplier, SupplierConfig, start_sandbox_supplier
from orders.suppliers.http import HttpSupplierClient

CONTROL_TIMEOUT = 5.0


class SandboxSupplier:
    """A running sandbox supplier and helpers for its /_sandbox/ control endpoints."""

    def __init__(self, running: RunningSupplier) -> None:
        self._running = running
        self.config: SupplierConfig = running.config
        self.url: str = running.url
        self.api_key: str = running.config.api_key

    def _control(self, method: str, path: str, **kwargs: Any) -> Any:
        response = requests.request(
            method, f"{self.url}/_sandbox/{path}", timeout=CONTROL_TIMEOUT, **kwargs
        )
        response.raise_for_status()
        return response.json()

    def set_balance(self, amount: Decimal | str | int) -> None:
        """Set our wallet balance at the supplier (also "fixes" @sandbox_broke after it failed)."""
        self._control("POST", "balance", json={"balance": str(amount)})

    def balance(self) -> Decimal:
        """Our wallet balance, read through the authenticated API."""
        response = requests.get(
            f"{self.url}/balance",
            headers={"Authorization": f"Bearer {self.api_key}"},
            timeout=CONTROL_TIMEOUT,
        )
        response.raise_for_status()
        return Decimal(response.json()["balance"])

    def calls(self, reference: str) -> dict[str, int]:
        """{"topup_calls": n, "orders_created": m} for one idempotency key."""
        result: dict[str, int] = self._control("GET", "calls", params={"reference": reference})
        return result

    def topup_calls(self, reference: str) -> int:
        """How many POST /topup requests arrived with this idempotency key."""
        return self.calls(reference)["topup_calls"]

    def orders(self) -> list[dict[str, Any]]:
        """Every order the supplier holds, each with its topup_calls count."""
        result: list[dict[str, Any]] = self._control("GET", "orders")
        return result

    def seed_order(self, **fields: Any) -> dict[str, Any]:
        """Record an order in the supplier's books as given (reference, user_id, stars, status,
        created_at, cost), charging nothing: for setting up reconciliations."""
        result: dict[str, Any] = self._control("POST", "orders", json=fields)
        return result

    def rename(self, username: str, user_id: str) -> None:
        """Give @username to user_id from now on."""
        self._control("POST", "rename", json={"username": username, "user_id": user_id})

    def reset(self) -> None:
        """Wipe orders, counters and markers; restore the starting balance."""
        self._control("POST", "reset")

    def fault(self, mode: str, count: int = 1) -> None:
        """Commit the next `count` top-ups but answer "malformed" JSON or "reset" the socket."""
        self._control("POST", "fault", json={"mode": mode, "count": count})

    def restart(self) -> None:
        """Stop and start the server on the same port and database, as a supplier restart."""
        host, port = self._running.server.server_address[:2]
        self._running.stop()
        self._running = start_sandbox_supplier(self.config, host=str(host), port=int(port))

    def stop(self) -> None:
        """Stop serving; the next call gets connection refused."""
        self._running.stop()


@pytest.fixture
def sandbox_supplier_options() -> dict[str, Any]:
    """SupplierConfig fields for `sandbox_supplier`; override this fixture to change them.

    hang_seconds stays above the 2 s client timeout of `supplier_client`, so @sandbox_timeout
    times out; slow_seconds stays below it, so @sandbox_hold answers. Teardown wakes any
    handler still sleeping, so a long hang does not slow the suite.
    """
    return {
        "api_key": "sandbox-key",
        "hang_seconds": 3.0,
        "slow_seconds": 1.0,
        "balance": Decimal("10000"),
        "cost_per_star": Decimal("0.0165"),
    }


@pytest.fixture
def sandbox_supplier(
    tmp_path: Path, sandbox_supplier_options: dict[str, Any]
) -> Iterator[SandboxSupplier]:
    """A fresh sandbox supplier on a free 127.0.0.1 port with its own SQLite file."""
    config = SupplierConfig(
        db_path=str(tmp_path / "sandbox_supplier.sqlite3"), **sandbox_supplier_options
    )
    sandbox = SandboxSupplier(start_sandbox_supplier(config, port=0))
    try:
        yield sandbox
    finally:
        sandbox.stop()


@pytest.fixture
def supplier(sandbox_supplier: SandboxSupplier, settings: Any) -> SandboxSupplier:
    """The shop's settings pointed at `sandbox_supplier`, with timings short enough for tests.

    The client timeout stays below the fixture's hang_seconds, so @sandbox_timeout times out.
    """
    settings.SUPPLIER_CODE = "sandbox"
    settings.SUPPLIER_BASE_URL = sandbox_supplier.url
    settings.SUPPLIER_API_KEY = sandbox_supplier.api_key
    settings.SUPPLIER_TIMEOUT = 2.0
    settings.FULFILMENT_UNKNOWN_GRACE_SECONDS = 0.5
    settings.FULFILMENT_POLL_FIRST_DELAY = 0.1
    return sandbox_supplier


@pytest.fixture
def supplier_client(sandbox_supplier: SandboxSupplier) -> HttpSupplierClient:
    """The real HTTP supplier client pointed at `sandbox_supplier`, 2 s timeout."""
    return HttpSupplierClient(
        base_url=sandbox_supplier.url, api_key=sandbox_supplier.api_key, timeout=2.0
    )


@pytest.fixture
def validate_calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The shop's real supplier client, with every /validate-user call it makes recorded."""
    from orders import services

    calls: list[str] = []
    real = services.get_supplier_client

    class Recording:
        def __init__(self, client: Any) -> None:
            self.client = client

        def validate_recipient(self, recipient: str) -> Any:
            calls.append(recipient)
            return self.client.validate_recipient(recipient)

    monkeypatch.setattr(services, "get_supplier_client", lambda: Recording(real()))
    return calls
