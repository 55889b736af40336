"""Pytest fixtures: a fake toncenter (chain + price APIs) on 127.0.0.1, and the shop wired to it.

Import them explicitly where needed: ``from fakes.ton_fixtures import *  # noqa: F403``.
"""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
import requests

from fakes.toncenter import RunningToncenter, ToncenterConfig, start_fake_toncenter

__all__ = ["FakeToncenter", "toncenter", "toncenter_options", "ton_shop"]

CONTROL_TIMEOUT = 5.0


class FakeToncenter:
    """A running fake toncenter and helpers for its /_fake/ control endpoints."""

    def __init__(self, running: RunningToncenter) -> None:
        self._running = running
        self.config: ToncenterConfig = running.config
        self.url: str = running.url
        self.api_url = f"{running.url}/api/v3"
        self.coingecko_url = f"{running.url}/api/v3/simple/price"
        self.tonapi_url = f"{running.url}/v2/rates"
        self.wallet: str = running.config.wallet

    def _control(self, method: str, path: str, **kwargs: Any) -> Any:
        response = requests.request(method, f"{self.url}/_fake/{path}", timeout=CONTROL_TIMEOUT,
                                    **kwargs)
        response.raise_for_status()
        return response.json()

    def transfer(self, comment: str | None, amount_nanotons: int, **flags: Any) -> dict[str, Any]:
        """Put a transaction on the chain, by default a buyer paying our wallet with `comment`."""
        result: dict[str, Any] = self._control(
            "POST", "transfer", json={"comment": comment, "amount_nanotons": amount_nanotons, **flags})
        return result

    def set_rate(self, price: Decimal | str | None = None, *, source: str = "all",
                 down: bool | None = None, currency: str = "usd") -> None:
        """Set the TON price of one or both rate sources, or take them down or up."""
        body: dict[str, Any] = {"source": source, "currency": currency}
        if price is not None:
            body["price"] = str(price)
        if down is not None:
            body["down"] = down
        self._control("POST", "rate", json=body)

    def fault(self, status: int, count: int = 1, *, skip: int = 0) -> None:
        """After `skip` normal answers, answer the next `count` chain requests with HTTP `status`."""
        self._control("POST", "fault", json={"status": status, "count": count, "skip": skip})

    def requests(self, path: str | None = None) -> list[dict[str, Any]]:
        """API requests seen so far, optionally only those to one path."""
        seen: list[dict[str, Any]] = self._control("GET", "requests")
        return [r for r in seen if path is None or r["path"] == path]

    def transactions(self) -> list[dict[str, Any]]:
        """Every transaction on the fake chain."""
        result: list[dict[str, Any]] = self._control("GET", "transactions")
        return result

    def reset(self) -> None:
        """An empty chain, the starting price, no faults."""
        self._control("POST", "reset")

    def restart(self) -> None:
        """Stop and start on the same port and config, as a restart of the fake's process.

        The chain survives only with ``state_path`` set (see `toncenter_options`).
        """
        host, port = self._running.server.server_address[:2]
        self._running.stop()
        self._running = start_fake_toncenter(self.config, host=str(host), port=int(port))

    def stop(self) -> None:
        """Stop serving; the next call gets connection refused."""
        self._running.stop()


@pytest.fixture
def toncenter_options() -> dict[str, Any]:
    """ToncenterConfig fields for `toncenter`; override this fixture to change them.

    Add ``state_path`` (a file under ``tmp_path``) to keep the chain across `restart()`.
    """
    return {"network": "testnet", "api_key": "", "usd_per_ton": Decimal("5.00")}


@pytest.fixture
def toncenter(toncenter_options: dict[str, Any]) -> Iterator[FakeToncenter]:
    """A fresh fake toncenter on a free 127.0.0.1 port."""
    fake = FakeToncenter(start_fake_toncenter(ToncenterConfig(**toncenter_options), port=0))
    try:
        yield fake
    finally:
        fake.stop()


@pytest.fixture
def ton_shop(toncenter: FakeToncenter, settings: Any, monkeypatch: pytest.MonkeyPatch,
             db: None) -> Iterator[FakeToncenter]:
    """The shop with the TON method on, pointed at `toncenter`; the cache is empty around it."""
    from django.core.cache import cache

    import orders.payments
    from orders.payments.ton import TonPaymentProvider

    monkeypatch.setitem(orders.payments._PROVIDERS, "ton", TonPaymentProvider)
    settings.PAYMENT_METHODS = {
        **settings.PAYMENT_METHODS,
        "ton": {"label": "TON", "fee_percent": Decimal("0"), "channels": ["web", "bot"],
                "enabled": True, "quote_minutes": 15},
    }
    settings.TON_NETWORK = toncenter.config.network
    settings.TON_WALLET_ADDRESS = toncenter.wallet
    settings.TON_API_URL = toncenter.api_url
    settings.TON_API_KEY = toncenter.config.api_key
    settings.TON_API_TIMEOUT = 2.0
    settings.TON_RATE_COINGECKO_URL = toncenter.coingecko_url
    settings.TON_RATE_TONAPI_URL = toncenter.tonapi_url
    settings.TON_RATE_TIMEOUT = 2.0
    settings.TON_RATE_CACHE_SECONDS = 60
    # Rates and the network check are cached: no test may see another's.
    cache.clear()
    try:
        yield toncenter
    finally:
        cache.clear()
