"""Absorbing-state masked diffusion (MDLM / LLaDA): the forward (noising) process and the loss.

At time t in (0, 1] every token is independently replaced by the mask token with probability t
(the log-linear schedule: alpha_t = 1 - t, so the log of the keep probability is linear in
log(1 - t)). The model sees the noisy sequence and predicts the originals; the loss is the
masked-token cross-entropy weighted by 1/t, a bound on the negative log-likelihood.

Two additions for code infilling:
- span masking: some sequences are noised only inside one contiguous span (a run of lines when
  newline ids are given, else a token span), as the sampler's canvases are; optional filler
  tokens inserted at the span's end teach the model to end a fill early (variable-length fills);
- substitution: a small share of visible tokens is replaced by random tokens, and the model is
  also trained on visible positions, so that it learns to say which visible tokens are wrong
  ("disbelief", for localization and re-masking).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class Noised:
    """One noised batch: model input, where masks are, what the targets are, the time per row."""
    inputs: torch.Tensor       # [B, T] noisy tokens
    targets: torch.Tensor      # [B, T] clean tokens (fillers included)
    masked: torch.Tensor       # [B, T] bool: replaced by the mask token
    substituted: torch.Tensor  # [B, T] bool: replaced by a random token
    valid: torch.Tensor        # [B, T] bool: not padding
    t: torch.Tensor            # [B] masking rate used for the row


def sample_times(batch: int, eps: float, generator: torch.Generator | None,
                 device: torch.device, max_t: float = 1.0) -> torch.Tensor:
    """t in [eps, max_t], stratified across the batch (low-discrepancy, as MDLM) for a steadier
    loss."""
    u = torch.rand(1, generator=generator, device=device)
    t = (u + torch.arange(batch, device=device) / batch) % 1.0
    return eps + (max_t - eps) * t


def _line_starts(row: torch.Tensor, newline_ids: torch.Tensor, n_valid: int) -> torch.Tensor:
    after_newline = torch.isin(row[:n_valid], newline_ids).nonzero().flatten() + 1
    starts = torch.cat([torch.zeros(1, dtype=torch.long, device=row.device), after_newline])
    return torch.unique(starts.clamp(max=n_valid))


def _pick_span(row: torch.Tensor, n_valid: int, max_span: int, newline_ids: torch.Tensor | None,
               generator: torch.Generator | None) -> tuple[int, int]:
    def randint(low: int, high: int) -> int:  # inclusive bounds
        return int(torch.randint(low, high + 1, (1,), generator=generator))

    if newline_ids is not None and randint(0, 1):
        starts = _line_starts(row, newline_ids, n_valid)
        if len(starts) >= 2:
            first = randint(0, len(starts) - 2)
            last = min(len(starts) - 1, first + randint(1, 3))
            a, b = int(starts[first]), int(starts[last])
            if 0 < b - a <= max_span:
                return a, b
    length = randint(1, max(1, min(max_span, n_valid)))
    a = randint(0, n_valid - length)
    return a, a + length


def _insert(row: torch.Tensor, at: int, count: int, value: int | bool) -> torch.Tensor:
    """`row` with `count` copies of `value` inserted at `at`, cut back to its length."""
    fill = torch.full((count,), value, dtype=row.dtype, device=row.device)
    return torch.cat([row[:at], fill, row[at:]])[: len(row)]


def noise(tokens: torch.Tensor, mask_id: int, *, vocab_size: int, pad_id: int | None = None,
          maskable: torch.Tensor | None = None, eps: float = 1e-3,
          substitution_rate: float = 0.0, span_masking: float = 0.0, max_span: int = 48,
          newline_ids: Iterable[int] | None = None, fill_id: int | None = None,
          max_fill: int = 8, generator: torch.Generator | None = None,
          max_t: float = 1.0) -> Noised:
    """The forward process on a batch of token ids [B, T]; `maskable` [B, T] (default: every
    non-pad position) marks conditioning positions that must stay visible."""
    device = tokens.device
    b, n = tokens.shape
    tokens = tokens.clone()
    valid = torch.ones_like(tokens, dtype=torch.bool) if pad_id is None else tokens != pad_id
    can_mask = valid.clone() if maskable is None else valid & maskable.bool()
    t = sample_times(b, eps, generator, device, max_t)
    draw = torch.rand(b, n, generator=generator, device=device)
    masked = (draw < t[:, None]) & can_mask

    span_rows = torch.rand(b, generator=generator, device=device) < span_masking
    nl = None if newline_ids is None else torch.tensor(sorted(newline_ids), device=device)
    for i in span_rows.nonzero().flatten().tolist():
        n_valid = int(valid[i].sum())
        if n_valid == 0:
            continue
        a, z = _pick_span(tokens[i], n_valid, max_span, nl, generator)
        if fill_id is not None:
            count = int(torch.randint(0, max_fill + 1, (1,), generator=generator))
            tokens[i] = _insert(tokens[i], z, count, fill_id)
            valid[i] = _insert(valid[i], z, count, True)
            can_mask[i] = _insert(can_mask[i], z, count, True)
            z = min(n, z + count)
        in_span = torch.zeros(n, dtype=torch.bool, device=device)
        in_span[a:z] = True
        in_span &= can_mask[i]
        masked[i] = (draw[i] < t[i]) & in_span
        if not masked[i].any() and in_span.any():
            masked[i, int(in_span.nonzero()[0])] = True

    substituted = torch.zeros_like(masked)
    inputs = tokens.masked_fill(masked, mask_id)
    if substitution_rate > 0:
        sub_draw = torch.rand(b, n, generator=generator, device=device)
        substituted = (sub_draw < substitution_rate) & valid & ~masked
        random_tokens = torch.randint(0, vocab_size, (b, n), generator=generator, device=device)
        inputs = torch.where(substituted, random_tokens, inputs)
    return Noised(inputs, tokens, masked, substituted, valid, t)


def diffusion_loss(model: nn.Module, tokens: torch.Tensor, mask_id: int, *,
                   pad_id: int | None = None, maskable: torch.Tensor | None = None,
                   eps: float = 1e-3, substitution_rate: float = 0.0,
                   visible_weight: float = 0.1, span_masking: float = 0.0,
                   max_span: int = 48, newline_ids: Iterable[int] | None = None,
                   fill_id: int | None = None, max_fill: int = 8,
                   generator: torch.Generator | None = None) -> torch.Tensor:
    """Masked-token cross-entropy weighted by 1/t, averaged over non-pad tokens.

    With `substitution_rate` > 0, visible positions are trained too (weight `visible_weight`):
    predict the clean token, so a substituted token is disbelieved and a correct one confirmed.
    Pad positions are neither noised, attended to, nor scored. `fill_id` (e.g. eos) with
    `span_masking` inserts up to `max_fill` filler tokens after a masked span."""
    vocab = model.config.vocab_size
    noised = noise(tokens, mask_id, vocab_size=vocab, pad_id=pad_id, maskable=maskable,
                   eps=eps, substitution_rate=substitution_rate, span_masking=span_masking,
                   max_span=max_span, newline_ids=newline_ids, fill_id=fill_id,
                   max_fill=max_fill, generator=generator)
    attention = None if pad_id is None else noised.valid.long()
    logits = model(noised.inputs, attention_mask=attention)
    ce = F.cross_entropy(logits.float().reshape(-1, vocab), noised.targets.reshape(-1),
                         reduction="none").view_as(noised.targets)
    weights = noised.masked.float() / noised.t[:, None]
    if substitution_rate > 0:
        weights = weights + visible_weight * (noised.valid & ~noised.masked).float()
    return (ce * weights).sum() / noised.valid.sum().clamp(min=1)
