"""Bulk pricing: quantity tiers, line totals and order quotes with tax."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

CENT = Decimal("0.01")


@dataclass(frozen=True)
class PriceTier:
    min_quantity: int
    discount: Decimal  # a fraction: Decimal("0.10") is 10 % off

    def __post_init__(self) -> None:
        if self.min_quantity < 1:
            raise ValueError("a tier starts at one unit or more")
        if not Decimal("0") <= Decimal(self.discount) < Decimal("1"):
            raise ValueError("a discount is a fraction in [0, 1)")


DEFAULT_TIERS = (
    PriceTier(10, Decimal("0.05")),
    PriceTier(50, Decimal("0.10")),
    PriceTier(200, Decimal("0.15")),
)


def discount_rate(quantity: int, tiers: tuple[PriceTier, ...] = DEFAULT_TIERS) -> Decimal:
    """The discount of the highest tier whose minimum the quantity reaches."""
    rate = Decimal("0")
    for tier in sorted(tiers, key=lambda t: t.min_quantity):
        if quantity > tier.min_quantity:
            rate = Decimal(tier.discount)
    return rate


def line_total(
    unit_price: Decimal, quantity: int, tiers: tuple[PriceTier, ...] = DEFAULT_TIERS
) -> Decimal:
    if quantity < 0:
        raise ValueError("quantity cannot be negative")
    gross = Decimal(unit_price) * quantity
    net = gross * (1 - discount_rate(quantity, tiers))
    return net.quantize(CENT, rounding=ROUND_HALF_UP)


def quote(
    lines: list[tuple[Decimal, int]],
    tax_rate: Decimal = Decimal("0"),
    tiers: tuple[PriceTier, ...] = DEFAULT_TIERS,
) -> dict[str, Decimal]:
    """Subtotal, tax and total of an order given (unit price, quantity) lines."""
    subtotal = sum((line_total(price, qty, tiers) for price, qty in lines), Decimal("0"))
    tax = (subtotal * Decimal(tax_rate)).quantize(CENT, rounding=ROUND_HALF_UP)
    return {"subtotal": subtotal, "tax": tax, "total": subtotal + tax}
