from decimal import Decimal

import pytest

from stockroom import InsufficientStock, Inventory, Item, UnknownItem


@pytest.fixture
def shelf():
    return Inventory(
        [
            Item("BOLT-1001", "Hex bolt M6", Decimal("0.35"), quantity=120, reorder_level=50),
            Item("NUT-2002", "Hex nut M6", Decimal("0.12"), quantity=40, reorder_level=40),
            Item("WASH-3003", "Washer M6", Decimal("0.05"), quantity=0, reorder_level=100),
        ]
    )


def test_len_and_membership(shelf):
    assert len(shelf) == 3
    assert "NUT-2002" in shelf
    assert "NUT-9999" not in shelf


def test_iteration_is_sorted_by_sku(shelf):
    assert [item.sku for item in shelf] == ["BOLT-1001", "NUT-2002", "WASH-3003"]


def test_duplicate_sku_is_rejected(shelf):
    with pytest.raises(ValueError, match="duplicate"):
        shelf.add(Item("BOLT-1001", "Another bolt", Decimal("1")))


def test_get_unknown_sku_raises(shelf):
    with pytest.raises(UnknownItem):
        shelf.get("PIN-4004")


def test_receive_adds_units(shelf):
    assert shelf.receive("WASH-3003", 250) == 250
    assert shelf.get("WASH-3003").quantity == 250


def test_receive_requires_positive_units(shelf):
    with pytest.raises(ValueError):
        shelf.receive("BOLT-1001", 0)


def test_ship_removes_units(shelf):
    assert shelf.ship("BOLT-1001", 20) == 100


def test_ship_everything_on_hand(shelf):
    assert shelf.ship("NUT-2002", 40) == 0


def test_ship_more_than_on_hand_raises_and_keeps_stock(shelf):
    with pytest.raises(InsufficientStock) as info:
        shelf.ship("NUT-2002", 41)
    assert info.value.requested == 41
    assert info.value.available == 40
    assert shelf.get("NUT-2002").quantity == 40


def test_needs_reorder_includes_items_at_their_level(shelf):
    assert [item.sku for item in shelf.needs_reorder()] == ["WASH-3003", "NUT-2002"]


def test_needs_reorder_after_shipping(shelf):
    shelf.ship("BOLT-1001", 80)
    assert [item.sku for item in shelf.needs_reorder()] == ["WASH-3003", "BOLT-1001", "NUT-2002"]


def test_total_value(shelf):
    assert shelf.total_value() == Decimal("42.00") + Decimal("4.80")


def test_empty_inventory_is_worth_nothing():
    assert Inventory().total_value() == Decimal("0")
