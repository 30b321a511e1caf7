"""stockroom: stock levels, reorder points and bulk pricing for a small shop."""

from stockroom.inventory import Inventory, InsufficientStock, UnknownItem
from stockroom.models import Item
from stockroom.pricing import PriceTier, discount_rate, line_total, quote

__all__ = [
    "Inventory",
    "InsufficientStock",
    "Item",
    "PriceTier",
    "UnknownItem",
    "discount_rate",
    "line_total",
    "quote",
]
