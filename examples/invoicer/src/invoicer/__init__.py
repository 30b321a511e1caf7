"""invoicer: invoice lines, tax per rate, payment terms, early-payment discounts and instalments."""

from invoicer.invoice import Invoice, Payment
from invoicer.lines import TAX_RATES, InvoiceLine, tax_summary
from invoicer.money import format_amount, round_cents, split
from invoicer.terms import Terms, add_months, days_overdue

__all__ = [
    "TAX_RATES",
    "Invoice",
    "InvoiceLine",
    "Payment",
    "Terms",
    "add_months",
    "days_overdue",
    "format_amount",
    "round_cents",
    "split",
    "tax_summary",
]
