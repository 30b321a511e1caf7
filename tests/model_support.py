"""Shared helpers for the model tests: a small tokenizer trained on stdlib code."""

from __future__ import annotations

import sysconfig
from functools import cache
from pathlib import Path

from model.tokenizer import CodeTokenizer, train_tokenizer

STDLIB = Path(sysconfig.get_paths()["stdlib"])


@cache
def stdlib_tokenizer(vocab_size: int = 300) -> CodeTokenizer:
    texts = [p.read_text(encoding="utf-8") for p in sorted((STDLIB / "json").glob("*.py"))]
    return train_tokenizer(texts, vocab_size=vocab_size)
