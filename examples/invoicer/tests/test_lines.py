from decimal import Decimal

import pytest

from invoicer import InvoiceLine, format_amount, round_cents, split, tax_summary


def test_round_cents_rounds_halves_up():
    assert round_cents("0.125") == Decimal("0.13")
    assert round_cents("2.344") == Decimal("2.34")


def test_floats_are_refused():
    with pytest.raises(TypeError):
        round_cents(0.1)


def test_split_keeps_every_cent():
    assert split(Decimal("100.00"), 3) == [Decimal("33.34"), Decimal("33.33"), Decimal("33.33")]
    assert sum(split(Decimal("0.05"), 4)) == Decimal("0.05")


def test_split_into_zero_parts_is_refused():
    with pytest.raises(ValueError):
        split(Decimal("10"), 0)


def test_format_amount_groups_thousands():
    assert format_amount(Decimal("1234.5")) == "1,234.50 EUR"
    assert format_amount(7, "GBP") == "7.00 GBP"


def test_line_net_is_quantity_times_price():
    line = InvoiceLine("Consulting (hours)", Decimal("7.5"), Decimal("80.00"))
    assert line.net == Decimal("600.00")
    assert line.rate == Decimal("0.20")


def test_line_discount_is_taken_off_the_net():
    line = InvoiceLine("Desk lamp", 3, Decimal("24.99"), discount=Decimal("0.10"))
    # 3 x 24.99 = 74.97, less 10 % = 67.473 -> 67.47
    assert line.net == Decimal("67.47")


def test_line_accepts_numeric_strings():
    line = InvoiceLine("Paper", "2", "4.50", tax_code="reduced")
    assert line.quantity == Decimal("2")
    assert line.net == Decimal("9.00")


@pytest.mark.parametrize(
    "kwargs",
    [
        {"description": " ", "quantity": 1, "unit_price": 1},
        {"description": "x", "quantity": 0, "unit_price": 1},
        {"description": "x", "quantity": 1, "unit_price": 1, "tax_code": "luxury"},
        {"description": "x", "quantity": 1, "unit_price": 1, "discount": 1},
    ],
)
def test_invalid_lines_are_rejected(kwargs):
    with pytest.raises(ValueError):
        InvoiceLine(**kwargs)


def test_tax_summary_groups_lines_by_rate():
    lines = [
        InvoiceLine("Book", 1, Decimal("12.00"), tax_code="zero"),
        InvoiceLine("Printer", 1, Decimal("150.00")),
        InvoiceLine("Toner", 2, Decimal("25.00")),
    ]
    assert tax_summary(lines) == {
        "standard": (Decimal("200.00"), Decimal("40.00")),
        "zero": (Decimal("12.00"), Decimal("0.00")),
    }


def test_tax_is_rounded_once_per_rate():
    # Three 0.10 lines at 5 %: 0.005 each would round to 0.01 three times; 0.30 x 5 % = 0.015.
    lines = [InvoiceLine(f"Stamp {n}", 1, Decimal("0.10"), tax_code="reduced") for n in range(3)]
    assert tax_summary(lines) == {"reduced": (Decimal("0.30"), Decimal("0.02"))}
