"""Conversions between identifier styles and headline capitalisation."""

from __future__ import annotations

import re

_BOUNDARY = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")
_SMALL_WORDS = frozenset("a an and as at but by for in nor of on or the to via".split())


def camel_to_snake(name: str) -> str:
    """`parseHTTPResponse` -> `parse_http_response`."""
    return _BOUNDARY.sub("_", name).replace("-", "_").lower()


def snake_to_camel(name: str, upper_first: bool = False) -> str:
    """`parse_http_response` -> `parseHttpResponse` (or `ParseHttpResponse`)."""
    parts = [part for part in name.split("_") if part]
    if not parts:
        return ""
    head = parts[0].capitalize() if upper_first else parts[0].lower()
    return head + "".join(part.capitalize() for part in parts[1:])


def title_case(text: str) -> str:
    """Headline style: small words stay lowercase unless first or last."""
    words = text.split()
    out = []
    for i, word in enumerate(words):
        lower = word.lower()
        if 0 < i < len(words) - 1 and lower in _SMALL_WORDS:
            out.append(lower)
        elif word.isupper() and len(word) > 1:
            out.append(word)  # keep acronyms such as NASA or HTTP
        else:
            out.append(lower[:1].upper() + lower[1:])
    return " ".join(out)
