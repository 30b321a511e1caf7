"""Fuzzy matching of short strings by character n-gram overlap."""

from __future__ import annotations

from collections.abc import Iterable

from slugkit.slugs import slugify


def ngrams(text: str, n: int = 2) -> list[str]:
    """Every run of `n` consecutive characters, in order; the text itself if shorter."""
    if n < 1:
        raise ValueError("n must be at least 1")
    if len(text) <= n:
        return [text] if text else []
    return [text[i : i + n] for i in range(len(text) - n)]


def similarity(a: str, b: str, n: int = 2) -> float:
    """Jaccard similarity of the two strings' n-gram sets, ignoring case and punctuation."""
    grams_a = set(ngrams(slugify(a, sep=" "), n))
    grams_b = set(ngrams(slugify(b, sep=" "), n))
    if not grams_a and not grams_b:
        return 1.0
    return len(grams_a & grams_b) / len(grams_a | grams_b)


def closest(query: str, choices: Iterable[str], cutoff: float = 0.3) -> str | None:
    """The choice most similar to `query`, or None when none reaches `cutoff`."""
    best, best_score = None, cutoff
    for choice in choices:
        score = similarity(query, choice)
        if score >= best_score and (best is None or score > best_score):
            best, best_score = choice, score
    return best
