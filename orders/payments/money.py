"""Exact conversions between decimal amounts and integer smallest units."""

from decimal import ROUND_CEILING, ROUND_HALF_UP, Decimal

EXPONENTS = {"USD": 2, "EUR": 2, "GBP": 2, "RUB": 2, "TON": 9, "USDT": 6}


def exponent_of(currency: str) -> int:
    """Decimal places of a currency's smallest unit."""
    return EXPONENTS.get(currency.upper(), 2)


def to_minor(amount: Decimal | str, currency: str, *, round_up: bool = False) -> int:
    """Decimal amount → integer smallest units; round_up for quotes so we never ask too little."""
    scaled = Decimal(amount).scaleb(exponent_of(currency))
    return int(scaled.to_integral_value(rounding=ROUND_CEILING if round_up else ROUND_HALF_UP))


def from_minor(amount_minor: int, currency: str) -> Decimal:
    """Integer smallest units → Decimal amount."""
    return Decimal(amount_minor).scaleb(-exponent_of(currency))
