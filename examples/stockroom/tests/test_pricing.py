from decimal import Decimal

import pytest

from stockroom import PriceTier, discount_rate, line_total, quote


def test_small_orders_pay_full_price():
    assert discount_rate(3) == Decimal("0")


def test_discount_within_first_tier():
    assert discount_rate(17) == Decimal("0.05")


def test_discount_within_top_tier():
    assert discount_rate(1000) == Decimal("0.15")


def test_discount_starts_exactly_at_tier_minimum():
    assert discount_rate(10) == Decimal("0.05")
    assert discount_rate(50) == Decimal("0.10")


def test_custom_tiers_in_any_order():
    tiers = (PriceTier(100, Decimal("0.2")), PriceTier(5, Decimal("0.01")))
    assert discount_rate(7, tiers) == Decimal("0.01")
    assert discount_rate(150, tiers) == Decimal("0.2")


@pytest.mark.parametrize("kwargs", [{"min_quantity": 0, "discount": Decimal("0.1")},
                                    {"min_quantity": 5, "discount": Decimal("1")}])
def test_invalid_tiers_are_rejected(kwargs):
    with pytest.raises(ValueError):
        PriceTier(**kwargs)


def test_line_total_rounds_half_up_to_cents():
    # 3 x 0.125 = 0.375 -> 0.38
    assert line_total(Decimal("0.125"), 3) == Decimal("0.38")


def test_line_total_at_tier_boundary():
    assert line_total(Decimal("2.00"), 200) == Decimal("340.00")


def test_line_total_rejects_negative_quantity():
    with pytest.raises(ValueError):
        line_total(Decimal("1"), -1)


def test_quote_adds_tax_on_discounted_subtotal():
    result = quote([(Decimal("4.00"), 2), (Decimal("1.50"), 60)], tax_rate=Decimal("0.2"))
    assert result["subtotal"] == Decimal("89.00")
    assert result["tax"] == Decimal("17.80")
    assert result["total"] == Decimal("106.80")


def test_empty_quote_is_zero():
    assert quote([]) == {"subtotal": Decimal("0"), "tax": Decimal("0.00"), "total": Decimal("0.00")}
