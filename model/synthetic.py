"""A synthetic language and a minimal training loop, to prove on a small model that the loss and
the sampler agree (the test suite) and to measure decoding speed and accuracy on a model that has
learned something (the decoding benchmark), in seconds to minutes on a CPU.

The language: runs of consecutive letters, `f g h i j k`. A masked run is determined by the
letters on both sides, and each masked letter by its neighbours: a model that has learned the
language fills any span exactly, one token per pass or many at once.
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from greenpatch.model.diffusion import diffusion_loss
from greenpatch.model.network import DiffusionLM, ModelConfig
from greenpatch.model.tokenizer import CodeTokenizer, train_tokenizer

NAMES = "abcdefghijklmnopqrstuvwxyz"


def alphabet_run(rng: random.Random, length: int) -> str:
    """The simplest language: a run of consecutive letters, `f g h i j`."""
    first = rng.randrange(0, len(NAMES) - length + 1)
    return " ".join(NAMES[first:first + length])


@dataclass(frozen=True)
class InfillTask:
    prefix: str
    middle: str
    suffix: str


def alphabet_tasks(n: int, length: int, masked: tuple[int, int], seed: int = 1
                   ) -> list[InfillTask]:
    """Runs of `length` letters with `masked` (min, max) consecutive inner letters to fill;
    the letters on both sides pin the answer down."""
    rng = random.Random(seed)
    tasks = []
    for _ in range(n):
        units = re.findall(r"\s?[a-z]", alphabet_run(rng, length))  # letter + space before
        k = rng.randint(*masked)
        a = rng.randrange(1, length - k)
        tasks.append(InfillTask("".join(units[:a]), "".join(units[a:a + k]),
                                "".join(units[a + k:])))
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
