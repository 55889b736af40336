"""The one place fiat amounts are rounded."""

from decimal import ROUND_HALF_UP, Decimal

CENT = Decimal("0.01")


def money(amount: Decimal | int | str) -> Decimal:
    """Round a fiat amount to cents, half up."""
    return Decimal(amount).quantize(CENT, rounding=ROUND_HALF_UP)


def percent_of(amount: Decimal, percent: Decimal) -> Decimal:
    """A percentage of an amount, rounded to cents."""
    return money(amount * percent / Decimal(100))
