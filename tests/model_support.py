"""Shared helpers for the model tests: a small tokenizer trained on stdlib code, and a tiny model
trained on a synthetic language (once per test process)."""

from __future__ import annotations

import random
import sysconfig
from functools import cache
from pathlib import Path

import torch

from model import synthetic
from model.checkpoint import LoadedModel, wrap
from model.network import ModelConfig
from model.tokenizer import CodeTokenizer, train_tokenizer

STDLIB = Path(sysconfig.get_paths()["stdlib"])
LETTERS = 12


@cache
def stdlib_tokenizer(vocab_size: int = 300) -> CodeTokenizer:
    texts = [p.read_text(encoding="utf-8") for p in sorted((STDLIB / "json").glob("*.py"))]
    return train_tokenizer(texts, vocab_size=vocab_size)


def alphabet_doc(rng: random.Random) -> str:
    """Twelve consecutive letters: `f g h i j k l m n o p q`."""
    return synthetic.alphabet_run(rng, LETTERS)


@cache
def trained_alphabet_model() -> tuple[LoadedModel, tuple[float, ...]]:
    rng = random.Random(0)
    texts = [alphabet_doc(rng) for _ in range(3000)]
    tok = synthetic.tokenizer_for(texts, 300)
    config = ModelConfig.tiny(vocab_size=tok.vocab_size, max_seq_len=64)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the CI box is shared: one thread wastes less time waiting
    try:
        net, losses = synthetic.train(tok, texts, config, steps=300, batch=32, lr=1e-2)
    finally:
        torch.set_num_threads(threads)
    return wrap(net, tok, name="alphabet"), tuple(losses)


def alphabet_tasks(n: int = 30, seed: int = 5) -> list[tuple[str, str, str]]:
    """(prefix, middle, suffix): 1-6 consecutive letters of a document to fill."""
    return [(t.prefix, t.middle, t.suffix)
            for t in synthetic.alphabet_tasks(n, LETTERS, (1, 6), seed=seed)]
