from datetime import date
from decimal import Decimal

import pytest

from invoicer import Invoice, InvoiceLine, Terms

ISSUED = date(2024, 1, 1)


def make_invoice(terms="net 30"):
    return Invoice(
        "INV-2024-0042",
        ISSUED,
        terms,
        [
            InvoiceLine("Website redesign", 1, Decimal("1200.00")),
            InvoiceLine("Hosting (months)", 12, Decimal("15.00")),
            InvoiceLine("Style guide (print)", 2, Decimal("45.00"), tax_code="reduced"),
        ],
    )


def test_totals():
    invoice = make_invoice()
    assert invoice.subtotal == Decimal("1470.00")
    # 20 % of 1380.00 plus 5 % of 90.00
    assert invoice.tax == Decimal("280.50")
    assert invoice.total == Decimal("1750.50")


def test_terms_may_be_given_as_text_or_object():
    assert make_invoice("2/10 net 30").terms == Terms(30, 10, Decimal("0.02"))
    assert make_invoice(Terms(14)).due_date == date(2024, 1, 15)


def test_invoice_needs_a_number():
    with pytest.raises(ValueError):
        Invoice(" ", ISSUED)


def test_payments_reduce_the_balance():
    invoice = make_invoice()
    assert invoice.record_payment(date(2024, 1, 10), "750.50") == Decimal("1000.00")
    assert invoice.paid == Decimal("750.50")
    assert invoice.balance == Decimal("1000.00")


@pytest.mark.parametrize(
    ("on", "amount"),
    [(date(2024, 1, 5), "0"), (date(2023, 12, 31), "10.00"), (date(2024, 1, 5), "1750.51")],
)
def test_invalid_payments_are_refused(on, amount):
    invoice = make_invoice()
    with pytest.raises(ValueError):
        invoice.record_payment(on, amount)
    assert invoice.payments == []


def test_status_over_time():
    invoice = make_invoice()
    assert Invoice("INV-2024-0043", ISSUED).status(ISSUED) == "draft"
    assert invoice.status(date(2024, 1, 31)) == "open"
    assert invoice.status(date(2024, 2, 1)) == "overdue"
    invoice.record_payment(date(2024, 2, 3), invoice.balance)
    assert invoice.status(date(2024, 2, 3)) == "paid"


def test_amount_to_settle_early():
    invoice = make_invoice("2/10 net 30")
    # 2 % of 1750.50 = 35.01
    assert invoice.amount_to_settle(date(2024, 1, 6)) == Decimal("1715.49")
    assert invoice.amount_to_settle(date(2024, 1, 20)) == Decimal("1750.50")


def test_installment_amounts_add_up_to_the_balance():
    invoice = make_invoice()
    amounts = [amount for _, amount in invoice.installments(4)]
    assert amounts == [Decimal("437.63"), Decimal("437.63"), Decimal("437.62"), Decimal("437.62")]


def test_installments_start_on_the_due_date():
    invoice = make_invoice()
    invoice.record_payment(date(2024, 1, 15), "250.50")
    assert invoice.installments(3) == [
        (date(2024, 1, 31), Decimal("500.00")),
        (date(2024, 2, 29), Decimal("500.00")),
        (date(2024, 3, 31), Decimal("500.00")),
    ]
