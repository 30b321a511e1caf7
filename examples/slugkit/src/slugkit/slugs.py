"""URL slugs and display truncation."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable

_NOT_WORD = re.compile(r"[^a-z0-9]+")
# Letters that NFKD does not decompose into ASCII but readers expect spelled out.
_SPELLED = {"ß": "ss", "æ": "ae", "ø": "o", "œ": "oe", "ł": "l", "đ": "d", "&": " and "}


def _ascii(text: str) -> str:
    text = "".join(_SPELLED.get(ch, ch) for ch in text.lower())
    return unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")


def slugify(text: str, sep: str = "-", max_length: int | None = None) -> str:
    """Lowercase ASCII words joined by `sep`; never cuts a word in half when shortening."""
    words = [word for word in _NOT_WORD.split(_ascii(text)) if word]
    slug = sep.join(words)
    if max_length is None or len(slug) <= max_length:
        return slug
    kept: list[str] = []
    length = 0
    for word in words:
        extra = len(word) + (len(sep) if kept else 0)
        if length + extra > max_length:
            break
        kept.append(word)
        length += extra
    # A single word longer than the limit is cut rather than dropped entirely.
    return sep.join(kept) if kept else words[0][:max_length]


def unique_slug(text: str, taken: Iterable[str], sep: str = "-") -> str:
    """A slug for `text` not in `taken`, numbering duplicates as slug-2, slug-3, ..."""
    base = slugify(text, sep=sep) or "item"
    used = set(taken)
    if base not in used:
        return base
    number = 2
    while f"{base}{sep}{number}" in used:
        number += 1
    return f"{base}{sep}{number}"


def truncate(text: str, width: int, placeholder: str = "...") -> str:
    """Shorten to at most `width` characters, ending with `placeholder` when shortened."""
    if width < len(placeholder):
        raise ValueError(f"width {width} is shorter than the placeholder {placeholder!r}")
    if len(text) <= width:
        return text
    return text[: width - len(placeholder)].rstrip() + placeholder
