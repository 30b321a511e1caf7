"""An in-memory stock ledger: receive, ship, and find what to reorder."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal

from stockroom.models import Item


class UnknownItem(KeyError):
    """No item with that SKU is stocked."""


class InsufficientStock(ValueError):
    """A shipment asked for more units than are on hand."""

    def __init__(self, sku: str, requested: int, available: int) -> None:
        super().__init__(f"{sku}: requested {requested}, only {available} on hand")
        self.sku = sku
        self.requested = requested
        self.available = available


class Inventory:
    def __init__(self, items: list[Item] | None = None) -> None:
        self._items: dict[str, Item] = {}
        for item in items or []:
            self.add(item)

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self) -> Iterator[Item]:
        return iter(sorted(self._items.values(), key=lambda item: item.sku))

    def __contains__(self, sku: object) -> bool:
        return sku in self._items

    def add(self, item: Item) -> None:
        if item.sku in self._items:
            raise ValueError(f"duplicate SKU {item.sku}")
        self._items[item.sku] = item

    def get(self, sku: str) -> Item:
        try:
            return self._items[sku]
        except KeyError:
            raise UnknownItem(sku) from None

    def receive(self, sku: str, units: int) -> int:
        """Add delivered units; returns the new quantity on hand."""
        if units <= 0:
            raise ValueError("a delivery must contain at least one unit")
        item = self.get(sku)
        item.quantity += units
        return item.quantity

    def ship(self, sku: str, units: int) -> int:
        """Remove shipped units; returns the new quantity on hand."""
        if units <= 0:
            raise ValueError("a shipment must contain at least one unit")
        item = self.get(sku)
        if units > item.quantity:
            raise InsufficientStock(sku, units, item.quantity)
        item.quantity -= units
        return item.quantity

    def needs_reorder(self) -> list[Item]:
        """Items at or below their reorder level, emptiest first."""
        low = [item for item in self._items.values() if item.quantity <= item.reorder_level]
        return sorted(low, key=lambda item: (item.quantity, item.sku))

    def total_value(self) -> Decimal:
        return sum((item.stock_value for item in self._items.values()), Decimal("0"))
