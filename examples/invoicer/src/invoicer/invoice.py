"""An invoice: its lines, totals, payments received, status and instalment plan."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal

from invoicer.lines import InvoiceLine, tax_summary
from invoicer.money import round_cents, split
from invoicer.terms import Terms, add_months, days_overdue


@dataclass(frozen=True)
class Payment:
    on: date
    amount: Decimal


class Invoice:
    def __init__(
        self,
        number: str,
        issued: date,
        terms: Terms | str = "net 30",
        lines: list[InvoiceLine] | None = None,
    ) -> None:
        if not number.strip():
            raise ValueError("an invoice needs a number")
        self.number = number
        self.issued = issued
        self.terms = Terms.parse(terms) if isinstance(terms, str) else terms
        self.lines: list[InvoiceLine] = list(lines or [])
        self.payments: list[Payment] = []

    def add_line(self, line: InvoiceLine) -> None:
        self.lines.append(line)

    @property
    def subtotal(self) -> Decimal:
        return sum((line.net for line in self.lines), Decimal("0.00"))

    @property
    def tax(self) -> Decimal:
        return sum((tax for _, tax in tax_summary(self.lines).values()), Decimal("0.00"))

    @property
    def total(self) -> Decimal:
        return self.subtotal + self.tax

    @property
    def due_date(self) -> date:
        return self.terms.due_date(self.issued)

    @property
    def paid(self) -> Decimal:
        return sum((p.amount for p in self.payments), Decimal("0.00"))

    @property
    def balance(self) -> Decimal:
        return self.total - self.paid

    def record_payment(self, on: date, amount: Decimal | str) -> Decimal:
        """Book a payment; returns the balance left. Overpaying is refused."""
        amount = round_cents(amount)
        if amount <= 0:
            raise ValueError("a payment must be positive")
        if on < self.issued:
            raise ValueError("a payment cannot predate the invoice")
        if amount > self.balance:
            raise ValueError(f"overpayment: {amount} against a balance of {self.balance}")
        self.payments.append(Payment(on, amount))
        return self.balance

    def status(self, on: date) -> str:
        """'draft' (no lines), 'paid', 'overdue' or 'open' as of the given day."""
        if not self.lines:
            return "draft"
        if self.balance == 0:
            return "paid"
        return "overdue" if days_overdue(self.due_date, on) > 0 else "open"

    def amount_to_settle(self, on: date) -> Decimal:
        """What settles the invoice on that day, the early-payment discount taken off."""
        return self.balance - self.terms.early_discount(self.balance, self.issued, on)

    def installments(self, count: int) -> list[tuple[date, Decimal]]:
        """The balance in `count` monthly payments, the first one on the due date."""
        amounts = split(self.balance, count)
        return [(add_months(self.due_date, i + 1), amount) for i, amount in enumerate(amounts)]
