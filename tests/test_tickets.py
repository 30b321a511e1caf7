"""Tickets name their failing tests in a `tests:` line or in front matter."""

from greenpatch.agent.tickets import parse_ticket


def test_tests_line() -> None:
    ticket = parse_ticket(
        "# Totals are wrong\n\nThe cart total ignores the last item.\n\n"
        "tests: tests/test_cart.py::test_total, tests/test_cart.py::test_many[3]\n",
        "cart-total",
    )
    assert ticket.title == "Totals are wrong"
    assert ticket.tests == ["tests/test_cart.py::test_total", "tests/test_cart.py::test_many[3]"]
    assert ticket.slug == "cart-total"


def test_front_matter_list() -> None:
    text = "---\ntitle: x\ntests:\n  - tests/test_a.py::test_one\n  - tests/test_b.py\n---\nBody\n"
    ticket = parse_ticket(text, "fm")
    assert ticket.tests == ["tests/test_a.py::test_one", "tests/test_b.py"]
    assert ticket.title == "Body"


def test_no_tests_named() -> None:
    assert parse_ticket("Something is broken in the parser.\n", "t").tests == []
