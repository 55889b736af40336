"""The TON price in fiat from two public rate APIs: the median of those that answer, cached briefly.

Sources (each URL a setting; an empty URL turns that source off):

- TON_RATE_COINGECKO_URL, CoinGecko's ``simple/price``:
  ``?ids=the-open-network&vs_currencies=usd`` → ``{"the-open-network": {"usd": 5.43}}``
- TON_RATE_TONAPI_URL, tonapi's ``/v2/rates``:
  ``?tokens=ton&currencies=usd`` → ``{"rates": {"TON": {"prices": {"USD": 5.43}, ...}}}``

Both send prices as JSON numbers; they are parsed straight into Decimal, never float.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import ROUND_DOWN, Decimal, InvalidOperation
from statistics import median
from typing import Any

import requests
from django.conf import settings
from django.core.cache import cache

from orders.exceptions import PaymentProviderError

logger = logging.getLogger(__name__)

COINGECKO_ID = "the-open-network"
# PaymentInvoice.rate keeps 9 decimal places; the stored rate must be the one that priced the quote.
RATE_PLACES = Decimal("0.000000001")


@dataclass(frozen=True)
class TonRate:
    """Order currency per 1 TON, and what each answering source said (for the invoice's audit)."""

    rate: Decimal
    currency: str
    sources: dict[str, str] = field(default_factory=dict)


class RateUnavailable(Exception):
    """One rate source did not give a usable price; the others may still answer."""


def ton_rate(currency: str) -> TonRate:
    """The current price of 1 TON in `currency`; PaymentProviderError when no source answers.

    Cached for TON_RATE_CACHE_SECONDS so a burst of checkouts costs one call per source.
    """
    currency = currency.upper()
    key = f"ton:rate:{currency}"
    cached = cache.get(key)
    if cached is not None:
        return TonRate(rate=Decimal(cached["rate"]), currency=currency, sources=cached["sources"])
    prices: dict[str, Decimal] = {}
    for name, setting, default_url, fetch in SOURCES:
        url = getattr(settings, setting, default_url)
        if not url:
            continue
        try:
            prices[name] = fetch(url, currency)
        except RateUnavailable as exc:
            logger.warning("TON rate source %s failed: %s", name, exc)
    if not prices:
        raise PaymentProviderError(
            f"No TON rate source answered for {currency}; cannot quote in TON.")
    low, high = min(prices.values()), max(prices.values())
    max_spread = Decimal(getattr(settings, "TON_RATE_MAX_SPREAD_PERCENT", "3"))
    # A source that is far off (stale, broken, or lying) must not set our price: refuse instead.
    if high > low * (1 + max_spread / 100):
        raise PaymentProviderError(
            f"TON rate sources disagree by more than {max_spread}%: "
            + ", ".join(f"{name} {price}" for name, price in sorted(prices.items()))
        )
    # Rounded down: a lower rate asks for more TON, never less.
    rate = Decimal(median(prices.values())).quantize(RATE_PLACES, rounding=ROUND_DOWN)
    sources = {name: str(price) for name, price in sorted(prices.items())}
    cache.set(key, {"rate": str(rate), "sources": sources},
              timeout=int(getattr(settings, "TON_RATE_CACHE_SECONDS", 60)))
    return TonRate(rate=rate, currency=currency, sources=sources)


def _coingecko(url: str, currency: str) -> Decimal:
    body = _get_json(url, {"ids": COINGECKO_ID, "vs_currencies": currency.lower()})
    try:
        return _positive(body[COINGECKO_ID][currency.lower()])
    except (KeyError, TypeError):
        raise RateUnavailable(f"no {currency} price in {_snippet(body)}") from None


def _tonapi(url: str, currency: str) -> Decimal:
    body = _get_json(url, {"tokens": "ton", "currencies": currency.lower()})
    try:
        rates = body["rates"]
        token = rates.get("TON") or rates["ton"]
        return _positive(token["prices"][currency.upper()])
    except (KeyError, TypeError, AttributeError):
        raise RateUnavailable(f"no {currency} price in {_snippet(body)}") from None


def _get_json(url: str, params: dict[str, str]) -> Any:
    """GET a rate API (network call: never inside a transaction) and parse numbers as Decimal."""
    timeout = float(getattr(settings, "TON_RATE_TIMEOUT", 3.0))
    try:
        response = requests.get(url, params=params, headers={"Accept": "application/json"},
                                timeout=timeout)
    except requests.RequestException as exc:
        raise RateUnavailable(f"unreachable: {exc}") from exc
    if response.status_code != 200:
        raise RateUnavailable(f"HTTP {response.status_code}: {response.text[:200]}")
    try:
        return json.loads(response.content, parse_float=Decimal, parse_int=Decimal)
    except ValueError:
        raise RateUnavailable(f"invalid JSON: {response.text[:200]}") from None


def _positive(value: Any) -> Decimal:
    if isinstance(value, bool):
        raise RateUnavailable(f"not a price: {value!r}")
    try:
        price = Decimal(value) if isinstance(value, str) else value
    except InvalidOperation:
        raise RateUnavailable(f"not a price: {value!r}") from None
    if not isinstance(price, Decimal) or not price.is_finite() or price <= 0:
        raise RateUnavailable(f"not a positive price: {value!r}")
    return price


def _snippet(body: Any) -> str:
    return json.dumps(body, default=str)[:200]


# (name, setting, default URL: the local fake, as for the supplier, fetcher)
SOURCES: tuple[tuple[str, str, str, Callable[[str, str], Decimal]], ...] = (
    ("coingecko", "TON_RATE_COINGECKO_URL", "http://127.0.0.1:8002/api/v3/simple/price",
     _coingecko),
    ("tonapi", "TON_RATE_TONAPI_URL", "http://127.0.0.1:8002/v2/rates", _tonapi),
)
