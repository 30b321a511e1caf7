"""The catalogue record for one stock-keeping unit."""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal

_SKU = re.compile(r"^[A-Z]{2,4}-\d{3,6}$")


@dataclass
class Item:
    sku: str
    name: str
    unit_price: Decimal
    quantity: int = 0
    reorder_level: int = 0

    def __post_init__(self) -> None:
        if not _SKU.match(self.sku):
            raise ValueError(f"malformed SKU {self.sku!r} (expected e.g. 'ABC-1234')")
        if not self.name.strip():
            raise ValueError("an item needs a name")
        self.unit_price = Decimal(str(self.unit_price))
        if self.unit_price < 0:
            raise ValueError(f"negative price for {self.sku}")
        if self.quantity < 0:
            raise ValueError(f"negative quantity for {self.sku}")
        if self.reorder_level < 0:
            raise ValueError(f"negative reorder level for {self.sku}")

    @property
    def stock_value(self) -> Decimal:
        return self.unit_price * self.quantity
