"""Payment terms such as "net 30" or "2/10 net 30", due dates and calendar helpers."""

from __future__ import annotations

import calendar
import re
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal

from invoicer.money import round_cents, to_decimal

_TERMS = re.compile(r"^(?:(\d+(?:\.\d+)?)\s*/\s*(\d+)\s+)?net\s+(\d+)$", re.IGNORECASE)


@dataclass(frozen=True)
class Terms:
    net_days: int
    discount_days: int = 0
    discount: Decimal = Decimal("0")  # a fraction: Decimal("0.02") is 2 % off for paying early

    def __post_init__(self) -> None:
        object.__setattr__(self, "discount", to_decimal(self.discount))
        if self.net_days < 0:
            raise ValueError("net days cannot be negative")
        if not 0 <= self.discount_days <= self.net_days:
            raise ValueError("the discount window must end by the due date")
        if not Decimal("0") <= self.discount < Decimal("1"):
            raise ValueError("an early-payment discount is a fraction in [0, 1)")
        if self.discount and not self.discount_days:
            raise ValueError("an early-payment discount needs a window of at least one day")

    @classmethod
    def parse(cls, text: str) -> Terms:
        """'net 30', '2/10 net 30' (2 % off within 10 days) or 'due on receipt'."""
        words = " ".join(text.split())
        if words.lower() == "due on receipt":
            return cls(0)
        match = _TERMS.match(words)
        if not match:
            raise ValueError(f"unrecognised payment terms {text!r}")
        percent, window, net = match.groups()
        if percent is None:
            return cls(int(net))
        return cls(int(net), int(window), Decimal(percent) / 100)

    def __str__(self) -> str:
        if self.net_days == 0:
            return "due on receipt"
        if not self.discount:
            return f"net {self.net_days}"
        return f"{(self.discount * 100).normalize()}/{self.discount_days} net {self.net_days}"

    def due_date(self, issued: date) -> date:
        return issued + timedelta(days=self.net_days)

    def discount_deadline(self, issued: date) -> date | None:
        """The last day a payment still earns the early-payment discount, if there is one."""
        if not self.discount:
            return None
        return issued + timedelta(days=self.discount_days)

    def early_discount(self, amount: Decimal, issued: date, paid_on: date) -> Decimal:
        """The discount earned by paying `amount` on `paid_on`; zero outside the window."""
        deadline = self.discount_deadline(issued)
        if deadline is None or paid_on < issued:
            return Decimal("0.00")
        if paid_on < deadline:
            return round_cents(to_decimal(amount) * self.discount)
        return Decimal("0.00")


def add_months(day: date, months: int) -> date:
    """The same day `months` later, clamped to the end of a shorter month (Jan 31 -> Feb 29)."""
    index = day.year * 12 + day.month - 1 + months
    year, month = divmod(index, 12)
    last = calendar.monthrange(year, month + 1)[1]
    return date(year, month + 1, min(day.day, last))


def days_overdue(due: date, on: date) -> int:
    """Whole days past the due date; zero on or before it."""
    return max(0, (on - due).days)
