"""Invoice lines and the per-rate tax summary printed at the foot of an invoice."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal

from invoicer.money import round_cents, to_decimal

TAX_RATES = {
    "standard": Decimal("0.20"),
    "reduced": Decimal("0.05"),
    "zero": Decimal("0"),
}


@dataclass(frozen=True)
class InvoiceLine:
    description: str
    quantity: Decimal
    unit_price: Decimal
    tax_code: str = "standard"
    discount: Decimal = Decimal("0")  # a fraction off this line: Decimal("0.10") is 10 % off

    def __post_init__(self) -> None:
        if not self.description.strip():
            raise ValueError("an invoice line needs a description")
        for field in ("quantity", "unit_price", "discount"):
            object.__setattr__(self, field, to_decimal(getattr(self, field)))
        if self.quantity <= 0:
            raise ValueError(f"quantity must be positive: {self.description}")
        if self.unit_price < 0:
            raise ValueError(f"negative unit price: {self.description}")
        if self.tax_code not in TAX_RATES:
            raise ValueError(f"unknown tax code {self.tax_code!r}")
        if not Decimal("0") <= self.discount < Decimal("1"):
            raise ValueError("a line discount is a fraction in [0, 1)")

    @property
    def rate(self) -> Decimal:
        return TAX_RATES[self.tax_code]

    @property
    def net(self) -> Decimal:
        """Quantity times unit price, less the line discount, in cents."""
        return round_cents(self.quantity * self.unit_price * (1 - self.discount))


def tax_summary(lines: Iterable[InvoiceLine]) -> dict[str, tuple[Decimal, Decimal]]:
    """Tax code -> (net, tax), tax rounded once per rate on the summed net, codes sorted."""
    nets: dict[str, Decimal] = {}
    for line in lines:
        nets[line.tax_code] = nets.get(line.tax_code, Decimal("0.00")) + line.net
    return {code: (net, round_cents(net * TAX_RATES[code])) for code, net in sorted(nets.items())}
