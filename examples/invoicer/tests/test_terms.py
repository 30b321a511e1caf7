from datetime import date
from decimal import Decimal

import pytest

from invoicer import Terms, add_months, days_overdue

ISSUED = date(2024, 3, 1)


def test_parse_net_terms():
    assert Terms.parse("net 30") == Terms(30)
    assert Terms.parse("  NET   14 ") == Terms(14)


def test_parse_early_payment_terms():
    terms = Terms.parse("2/10 net 30")
    assert terms == Terms(30, 10, Decimal("0.02"))
    assert Terms.parse("1.5/7 net 21").discount == Decimal("0.015")


def test_parse_due_on_receipt():
    assert Terms.parse("Due on receipt") == Terms(0)


@pytest.mark.parametrize("text", ["30 days", "2/10", "net -5", "2/40 net 30"])
def test_unrecognised_terms_are_rejected(text):
    with pytest.raises(ValueError):
        Terms.parse(text)


@pytest.mark.parametrize("text", ["net 30", "1.5/7 net 21", "due on receipt"])
def test_terms_print_as_they_parse(text):
    assert str(Terms.parse(text)) == text


def test_due_date_counts_calendar_days():
    assert Terms(30).due_date(ISSUED) == date(2024, 3, 31)
    assert Terms(0).due_date(ISSUED) == ISSUED


def test_discount_window_ends_after_its_days():
    assert Terms.parse("2/10 net 30").discount_deadline(ISSUED) == date(2024, 3, 11)
    assert Terms(30).discount_deadline(ISSUED) is None


def test_early_discount_inside_the_window():
    terms = Terms.parse("2/10 net 30")
    assert terms.early_discount(Decimal("500.00"), ISSUED, date(2024, 3, 4)) == Decimal("10.00")


def test_early_discount_on_the_last_day_of_the_window():
    terms = Terms.parse("2/10 net 30")
    assert terms.early_discount(Decimal("500.00"), ISSUED, date(2024, 3, 11)) == Decimal("10.00")


def test_no_early_discount_after_the_window():
    terms = Terms.parse("2/10 net 30")
    assert terms.early_discount(Decimal("500.00"), ISSUED, date(2024, 3, 12)) == Decimal("0.00")


def test_no_early_discount_without_discount_terms():
    assert Terms(30).early_discount(Decimal("500.00"), ISSUED, ISSUED) == Decimal("0.00")


def test_add_months_clamps_to_the_month_end():
    assert add_months(date(2024, 1, 31), 1) == date(2024, 2, 29)
    assert add_months(date(2023, 1, 31), 1) == date(2023, 2, 28)
    assert add_months(date(2024, 11, 15), 3) == date(2025, 2, 15)


def test_days_overdue_is_zero_until_after_the_due_date():
    due = date(2024, 3, 31)
    assert days_overdue(due, date(2024, 3, 20)) == 0
    assert days_overdue(due, due) == 0
    assert days_overdue(due, date(2024, 4, 3)) == 3
