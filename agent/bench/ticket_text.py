"""Plain-words tickets written from a failing test's name and its failure message, the way a
user would report the bug: what fails and how, never where the bug is or what the fix is."""

from __future__ import annotations

import re

_DEFINED = re.compile(r"^(?:def|class)\s+(\w+)", re.M)
# Node ids a `tests:` line carries intact: no space, comma, quote or parenthesis that the ticket
# reader splits or strips at (agent/tickets.py). The tasks of 2026-11-22 were chosen with it.
_NODE_ID = re.compile(r"[\w./-]+\.py(?:::[\w\[\]\-.=]+)*")


def defined_names(sources: list[str]) -> set[str]:
    """Top-level functions and classes of the library's modules: what a user would name."""
    return {name for text in sources for name in _DEFINED.findall(text)}


def ticket_ready(nodeid: str) -> bool:
    """Whether a ticket's `tests:` line can carry this node id intact."""
    return bool(re.fullmatch(_NODE_ID, nodeid))


def _snake(name: str) -> str:
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name).lower()


def subject(nodeid: str, defined: set[str]) -> str | None:
    """The library name a test exercises, from its class or function name."""
    for part in reversed(nodeid.split("::")[1:]):
        part = part.split("[")[0]
        for bare in (re.sub(r"^Test|Tests?$", "", part), re.sub(r"^test_?", "", part)):
            if bare in defined:
                return bare
            words = _snake(bare).split("_")
            for end in range(len(words), 0, -1):
                name = "_".join(words[:end])
                if name in defined:
                    return name
    return None


def _message(message: str) -> str:
    lines = [line.rstrip() for line in message.strip().splitlines() if line.strip()][:4]
    text = "\n".join(lines)
    return text if len(text) <= 400 else text[:400] + " ..."


def write_ticket(nodeid: str, message: str, defined: set[str]) -> str:
    name = subject(nodeid, defined)
    what = f"`{name}`" if name else f"`{'.'.join(nodeid.split('::')[1:])}`"
    shown = _message(message) or "(no message)"
    error = shown.split(":", 1)[0].strip()
    if "Timeout" in shown:  # pytest-timeout stopped the test: what a user sees is a hang
        title = f"{what} never returns"
    elif re.fullmatch(r"\w+(Error|Exception|Warning)", error) and error != "AssertionError":
        title = f"{what} raises {error}"
    else:
        title = f"{what} gives the wrong result" if name else f"{what} fails"
    wish = (f"{what} should behave the way this test expects." if name
            else "Please make it pass again without changing the test.")
    return (
        f"# {title}\n\n"
        f"The test `{nodeid}` fails on the current main branch:\n\n"
        f"```\n{shown}\n```\n\n"
        f"It used to pass. {wish}\n\n"
        f"tests: {nodeid}\n"
    )
