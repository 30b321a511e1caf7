from decimal import Decimal

import pytest

from stockroom import Item


def test_price_is_converted_to_decimal():
    item = Item("BOLT-1001", "Hex bolt M6", 0.35, quantity=100)
    assert item.unit_price == Decimal("0.35")


def test_stock_value_multiplies_price_by_quantity():
    item = Item("NUT-2002", "Hex nut M6", Decimal("0.12"), quantity=25)
    assert item.stock_value == Decimal("3.00")


@pytest.mark.parametrize("sku", ["bolt-1001", "B-1001", "BOLT1001", "BOLT-12", ""])
def test_malformed_sku_is_rejected(sku):
    with pytest.raises(ValueError, match="SKU"):
        Item(sku, "Hex bolt", Decimal("1"))


def test_blank_name_is_rejected():
    with pytest.raises(ValueError, match="name"):
        Item("BOLT-1001", "   ", Decimal("1"))


@pytest.mark.parametrize(
    "field, kwargs",
    [
        ("price", {"unit_price": Decimal("-1")}),
        ("quantity", {"unit_price": Decimal("1"), "quantity": -3}),
        ("reorder level", {"unit_price": Decimal("1"), "reorder_level": -1}),
    ],
)
def test_negative_numbers_are_rejected(field, kwargs):
    with pytest.raises(ValueError, match=field):
        Item("WASH-3003", "Washer", **kwargs)
