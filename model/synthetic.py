"""A synthetic code-like language and a minimal training loop, to prove on a small model that the
loss and the sampler agree (the test suite) and to measure decoding speed and accuracy on a model
that has learned something (the decoding benchmark).

A program assigns consecutive integers to consecutive variable names:

    c = 41
    d = 42
    e = 43

so a masked line is determined by its neighbours (both the name and the value), yet its tokens
depend on each other: exactly what parallel decoding has to get right.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass

import torch

from model.diffusion import diffusion_loss
from model.network import DiffusionLM, ModelConfig
from model.tokenizer import CodeTokenizer, train_tokenizer

NAMES = "abcdefghijklmnopqrstuvwxyz"


def counting_program(rng: random.Random, lines: int, values: bool = True) -> str:
    """`values`: assign integers (`c = 41`); else each name gets the next name (`c = d`), an
    easier language for quick tests."""
    first = rng.randrange(0, len(NAMES) - lines + (0 if values else -1) + 1)
    value = rng.randrange(10, 100 - lines)
    rhs = [str(value + i) if values else NAMES[first + i + 1] for i in range(lines)]
    return "".join(f"{NAMES[first + i]} = {rhs[i]}\n" for i in range(lines))


def alphabet_run(rng: random.Random, length: int) -> str:
    """The simplest language: a run of consecutive letters, `f g h i j`."""
    first = rng.randrange(0, len(NAMES) - length + 1)
    return " ".join(NAMES[first:first + length])


def corpus(n: int, lines: int = 8, values: bool = True, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return [counting_program(rng, lines, values) for _ in range(n)]


@dataclass(frozen=True)
class InfillTask:
    prefix: str
    middle: str
    suffix: str


def infill_tasks(n: int, lines: int = 8, masked_lines: int = 1, values: bool = True,
                 seed: int = 1) -> list[InfillTask]:
    """Programs with `masked_lines` consecutive inner lines to fill (never the first or last,
    so that both sides pin the answer down)."""
    rng = random.Random(seed)
    tasks = []
    for _ in range(n):
        rows = counting_program(rng, lines, values).splitlines(keepends=True)
        a = rng.randrange(1, lines - masked_lines)
        tasks.append(InfillTask("".join(rows[:a]), "".join(rows[a:a + masked_lines]),
                                "".join(rows[a + masked_lines:])))
    return tasks


def tokenizer_for(texts: list[str], vocab_size: int = 400) -> CodeTokenizer:
    return train_tokenizer(texts, vocab_size=vocab_size)


def batches(tok: CodeTokenizer, texts: list[str], batch: int, seed: int
            ) -> Iterator[torch.Tensor]:
    """Endless batches of framed documents ([bos] text [eos]), padded to the longest."""
    rng = random.Random(seed)
    encoded = [[tok.bos_id, *tok.encode(t), tok.eos_id] for t in texts]
    while True:
        chosen = rng.sample(encoded, batch)
        width = max(len(c) for c in chosen)
        yield torch.tensor([c + [tok.pad_id] * (width - len(c)) for c in chosen])


def train(tok: CodeTokenizer, texts: list[str], config: ModelConfig, steps: int,
          batch: int = 32, lr: float = 3e-3, seed: int = 0, **loss_options
          ) -> tuple[DiffusionLM, list[float]]:
    """AdamW with warmup and cosine decay on the diffusion loss; returns the model (eval mode)
    and the loss of every step."""
    torch.manual_seed(seed)
    net = DiffusionLM(config)
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=0.01, betas=(0.9, 0.98))
    warmup = max(1, steps // 20)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warmup)
        * 0.5 * (1 + torch.cos(torch.tensor(torch.pi * s / steps)).item()) + 0.02)
    generator = torch.Generator().manual_seed(seed)
    losses = []
    net.train()
    for _, tokens in zip(range(steps), batches(tok, texts, batch, seed), strict=False):
        loss = diffusion_loss(net, tokens, tok.mask_id, pad_id=tok.pad_id, generator=generator,
                              **loss_options)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        opt.step()
        sched.step()
        losses.append(loss.item())
    return net.eval(), losses
