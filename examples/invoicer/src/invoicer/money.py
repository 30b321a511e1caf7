"""Amounts of money: exact decimals, rounding to cents and splitting without losing a cent."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

CENT = Decimal("0.01")


def to_decimal(value: Decimal | int | str) -> Decimal:
    """A Decimal from a Decimal, an int or a numeric string; floats are refused (not exact)."""
    if isinstance(value, float):
        raise TypeError("use a string or a Decimal for money, not a float")
    return Decimal(value)


def round_cents(value: Decimal | int | str) -> Decimal:
    """Round to whole cents, halves away from zero (0.125 -> 0.13)."""
    return to_decimal(value).quantize(CENT, rounding=ROUND_HALF_UP)


def split(amount: Decimal | int | str, parts: int) -> list[Decimal]:
    """`parts` amounts that add up exactly to `amount`; the leftover cents go to the first ones."""
    if parts < 1:
        raise ValueError("split into one part or more")
    cents = int(round_cents(amount) / CENT)
    base, leftover = divmod(cents, parts)
    return [(base + (1 if i < leftover else 0)) * CENT for i in range(parts)]


def format_amount(value: Decimal | int | str, currency: str = "EUR") -> str:
    """'1,234.50 EUR' style: thousands separated, always two decimals."""
    return f"{round_cents(value):,.2f} {currency}"
