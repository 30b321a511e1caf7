"""Training the embedded default model on CPU: resumable, time-budgeted, safe under nohup.

The corpus's train split is tokenized once into a flat token stream (files separated by eos) and
cut into fixed windows, visited in a seeded per-epoch permutation, so the data position is one
integer and a resumed run sees exactly the batches it would have seen. The learning rate warms
up, then follows a cosine over the *time* budget (the machine is shared, steps per minute vary).
A checkpoint holds model, optimizer, step, data position, elapsed time and RNG states, written
atomically (tmp + rename) every few minutes and at the end.
"""

from __future__ import annotations

import bisect
import json
import math
import os
import random
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from greenpatch.model.bugs import corrupt, roc_auc
from greenpatch.model.checkpoint import load_model
from greenpatch.model.data import code_lines, pick_site, read_split
from greenpatch.model.diffusion import Noised, noise
from greenpatch.model.errors import ModelError
from greenpatch.model.network import DiffusionLM, ModelConfig
from greenpatch.model.tokenizer import CodeTokenizer, train_tokenizer

CHECKPOINT = "last.pt"
LOG = "train.log"
FIX_WEIGHT = 0.5
# Weight of the pointer loss (`_pointer_loss`): which position of a corrupted row holds the bug.
POINTER_WEIGHT = 0.5


@dataclass
class TrainConfig:
    seq_len: int = 256
    batch_size: int = 4
    lr: float = 3e-3
    min_lr_ratio: float = 0.1
    warmup_steps: int = 150
    weight_decay: float = 0.1
    grad_clip: float = 1.0
    substitution_rate: float = 0.05
    span_rate: float = 0.5
    # Text rows are masked at rate t <= stream_max_rate (canvas rows always up to 1): repair
    # fills short spans in clean context, and with t up to 1 most masked tokens of a batch come
    # from nearly blank rows, a regime inference never sees.
    stream_max_rate: float = 1.0
    canvas_rows: int = 8
    canvas_len: int = 128
    max_middle: int = 48
    minutes: float = 60.0
    checkpoint_minutes: float = 5.0
    log_every: int = 10
    seed: int = 1234
    # Seed of the data order, canvas sites and noise (None: `seed`; validation always uses
    # `seed`). A warm start takes a new one so it does not replay the init run's batches.
    data_seed: int | None = None
    threads: int = 2
    local_init: bool = True
    # Rows of bug noise per step (`BugSampler`; 0: none, and no repair head on a new model),
    # and the weight of their loss beside the masked-diffusion loss.
    bug_rows: int = 4
    bug_weight: float = 1.0

    @classmethod
    def from_dict(cls, data: dict) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


def prepare_tokens(corpus_dir: Path, out_dir: Path, vocab_size: int,
                   log: Callable[[str], None]) -> tuple[CodeTokenizer, np.ndarray]:
    """The tokenizer (trained on the train split unless out_dir already has one) and the
    train split as one token stream, cached in out_dir."""
    out_dir.mkdir(parents=True, exist_ok=True)
    tok_path = out_dir / "tokenizer.json"
    stream_path = out_dir / "train_tokens.npy"
    if tok_path.is_file():
        tokenizer = CodeTokenizer.load(tok_path)
    else:
        log(f"training tokenizer (vocab {vocab_size}) on {corpus_dir}/train.jsonl")
        tokenizer = train_tokenizer((f.text for f in read_split(corpus_dir, "train")), vocab_size)
        tmp = out_dir / "tokenizer.tmp"
        tokenizer.save(tmp)
        (tmp / "tokenizer.json").replace(tok_path)
        tmp.rmdir()
    if stream_path.is_file():
        return tokenizer, np.load(stream_path, mmap_mode="r")
    log("tokenizing the train split")
    stream = encode_split(tokenizer, corpus_dir, "train")
    tmp_path = out_dir / "train_tokens.tmp.npy"
    np.save(tmp_path, stream)
    tmp_path.replace(stream_path)
    return tokenizer, stream


def encode_split(tokenizer: CodeTokenizer, corpus_dir: Path, split: str) -> np.ndarray:
    """One split as a flat token stream, each file framed as the sampler frames canvases:
    [bos] file [eos]."""
    head = [tokenizer.bos_id] if tokenizer.bos_id is not None else []
    tail = [tokenizer.eos_id] if tokenizer.eos_id is not None else []
    if tokenizer.vocab_size > 65535:
        raise ModelError("vocabulary too large for a uint16 token stream")
    parts: list[np.ndarray] = []
    for f in read_split(corpus_dir, split):
        parts.append(np.asarray(head + tokenizer.encode(f.text) + tail, dtype=np.uint16))
    if not parts:
        raise ModelError(f"split {split} of {corpus_dir} is empty")
    return np.concatenate(parts)


class WindowSampler:
    """Fixed-length windows of a token stream in a seeded permutation per epoch; `position`
    (windows consumed so far) is the whole data state."""

    def __init__(self, stream: np.ndarray, seq_len: int, seed: int, position: int = 0) -> None:
        self.stream, self.seq_len, self.seed, self.position = stream, seq_len, seed, position
        self.windows = (len(stream) - seq_len) // seq_len
        if self.windows < 1:
            raise ModelError(f"token stream of {len(stream)} is shorter than two windows")
        self._epoch = -1
        self._order: np.ndarray | None = None
        self._offset = 0

    def _plan(self, epoch: int) -> None:
        rng = np.random.default_rng([self.seed, epoch])
        self._order = rng.permutation(self.windows)
        self._offset = int(rng.integers(self.seq_len))  # a new cut of the stream each epoch
        self._epoch = epoch

    def next_batch(self, batch_size: int) -> torch.Tensor:
        rows = []
        for _ in range(batch_size):
            epoch, index = divmod(self.position, self.windows)
            if epoch != self._epoch:
                self._plan(epoch)
            assert self._order is not None
            start = self._offset + int(self._order[index]) * self.seq_len
            rows.append(np.asarray(self.stream[start:start + self.seq_len], dtype=np.int64))
            self.position += 1
        return torch.from_numpy(np.stack(rows))

    @property
    def epoch_fraction(self) -> float:
        return self.position / self.windows


def newline_ids(tokenizer: CodeTokenizer) -> list[int]:
    """Tokens holding a line break (byte-level BPE merges newline + indentation), so span
    masking can pick whole lines."""
    ids = []
    for i in range(tokenizer.vocab_size):
        text = tokenizer.token_text(i)
        if text and "\u010a" in text:  # byte-level BPE's picture of b"\n"
            ids.append(i)
    return ids


def noise_options(cfg: TrainConfig, tokenizer: CodeTokenizer) -> dict:
    """The masking curriculum: half the rows are noised only inside one span (1-3 whole
    lines or a token span), with up to 8 eos fillers after it so the model learns to end a
    fill early; a few visible tokens are substituted at random. (Canvas rows, see
    `CanvasSampler`, add sites tokenized the way inference sees them.)"""
    return dict(substitution_rate=cfg.substitution_rate, span_masking=cfg.span_rate,
                max_span=48, newline_ids=newline_ids(tokenizer), fill_id=tokenizer.eos_id,
                max_fill=8, max_t=cfg.stream_max_rate)


class CanvasSampler:
    """Training rows laid out exactly as the infill sampler lays out a canvas: a site (a line's
    content, a token, a short token run: `data.pick_site`) whose prefix, middle and suffix are
    tokenized separately (so token boundaries at the site's edges are the ones inference
    sees), middle followed by 0-8 eos fillers (fills that end early), cropped around the
    middle. Only middle and fillers may be masked. Example i is a pure function of (seed, i)."""

    FILLERS = (0, 0, 0, 1, 2, 3, 5, 8)

    def __init__(self, texts: list[str], tokenizer: CodeTokenizer, seq_len: int, seed: int,
                 max_middle: int = 48, position: int = 0) -> None:
        if not texts:
            raise ModelError("no training files for canvas rows")
        self.texts, self.tok, self.seq_len, self.seed = texts, tokenizer, seq_len, seed
        self.max_middle, self.position = max_middle, position
        self.ends = np.cumsum([len(t) for t in texts]).tolist()
        self._lines: dict[int, list[tuple[int, int]]] = {}

    def example(self, index: int) -> tuple[list[int], list[bool]]:
        rng = random.Random(self.seed * 1_000_003 + index)
        tok = self.tok
        for _ in range(100):
            f = bisect.bisect_right(self.ends, rng.random() * self.ends[-1])
            f = min(f, len(self.texts) - 1)
            if f not in self._lines:
                self._lines[f] = code_lines(self.texts[f])
            site = pick_site(self.texts[f], rng, lines=self._lines[f])
            if site is None:
                continue
            mid = tok.encode(site.middle)
            if 0 < len(mid) <= self.max_middle:
                break
        else:
            raise ModelError("could not find an infill site in the training files")
        fillers = [tok.eos_id if tok.eos_id is not None else tok.pad_id] * rng.choice(
            self.FILLERS)
        reach = 8 * self.seq_len  # characters: more than the window can hold
        pre, suf = tok.encode(site.prefix[-reach:]), tok.encode(site.suffix[:reach])
        budget = self.seq_len - len(mid) - len(fillers) - 2
        keep_suf = min(len(suf), max(budget // 3, budget - len(pre)))
        keep_pre = min(len(pre), budget - keep_suf)
        head = [tok.bos_id] if (keep_pre == len(pre) and len(site.prefix) <= reach
                                and tok.bos_id is not None) else []
        tail = [tok.eos_id] if (keep_suf == len(suf) and len(site.suffix) <= reach
                                and tok.eos_id is not None) else []
        ids = head + pre[len(pre) - keep_pre:] + mid + fillers + suf[:keep_suf] + tail
        start = len(head) + keep_pre
        maskable = [start <= i < start + len(mid) + len(fillers) for i in range(len(ids))]
        return ids, maskable

    def next_batch(self, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Tokens [B, seq_len] padded with pad on the right, and the maskable positions."""
        tokens = torch.full((batch_size, self.seq_len), self.tok.pad_id, dtype=torch.long)
        maskable = torch.zeros((batch_size, self.seq_len), dtype=torch.bool)
        for row in range(batch_size):
            ids, can = self.example(self.position)
            self.position += 1
            tokens[row, : len(ids)] = torch.tensor(ids)
            maskable[row, : len(can)] = torch.tensor(can)
        return tokens, maskable


@dataclass
class BugBatch:
    """Rows of corrupted code: the model input and, per token, what the repair head learns."""
    inputs: torch.Tensor     # [B, T] corrupted code, padded with pad
    valid: torch.Tensor      # [B, T] bool: not padding
    corrupted: torch.Tensor  # [B, T] bool: written by the corruption
    newline: torch.Tensor    # [B, T] bool: the token holds a line break
    missing: torch.Tensor    # [B, T] bool: a statement was deleted after this line break
    targets: torch.Tensor    # [B, T] the clean tokens where they align one to one, else pad
    aligned: torch.Tensor    # [B] bool: the row has clean targets


class BugSampler:
    """Windows of training files with one corruption shaped like a real bug (`model.bugs`)
    at a random point of the window's middle three fifths; `clean_share` of the rows are left
    clean, so that "nothing is wrong here" is learned too. The window is the file's text
    tokenized as inference tokenizes a function: in one piece. Example i is a pure function of
    (seed, i)."""

    def __init__(self, texts: list[str], tokenizer: CodeTokenizer, seq_len: int, seed: int,
                 position: int = 0, clean_share: float = 0.1) -> None:
        if not texts:
            raise ModelError("no training files for bug rows")
        self.texts, self.tok, self.seq_len, self.seed = texts, tokenizer, seq_len, seed
        self.position, self.clean_share = position, clean_share
        self.ends = np.cumsum([len(t) for t in texts]).tolist()
        self.newline_ids = set(newline_ids(tokenizer))

    def example(self, index: int) -> dict[str, list]:
        rng = random.Random(self.seed * 2_000_029 + index)
        for _ in range(100):
            f = min(bisect.bisect_right(self.ends, rng.random() * self.ends[-1]),
                    len(self.texts) - 1)
            clean = self.texts[f]
            at = rng.randrange(len(clean))
            if rng.random() < self.clean_share:
                return self._row(clean, clean, at, None, None, rng)
            bug = corrupt(clean, rng, at=at)
            if bug is not None:
                return self._row(bug.text, clean, bug.start, bug.end, bug.missing_after, rng)
        raise ModelError("could not corrupt any training file")

    def _row(self, text: str, clean: str, start: int, end: int | None,
             missing_after: int | None, rng: random.Random) -> dict[str, list]:
        """`start`..`end`: what the corruption wrote (end None: a clean row, centred on
        `start`); `missing_after`: the newline after which a statement was deleted."""
        reach = 6 * self.seq_len  # characters: more than the window can hold
        a = max(0, start - reach)
        newline = text.find("\n", a, start)
        if a and newline >= 0:
            a = newline + 1  # whole lines, as a function is cut
        z = min(len(text), (start if end is None else end) + reach)
        ids, offsets = self.tok.encode_with_offsets(text[a:z])
        grow = len(text) - len(clean)
        clean_ids = self.tok.encode(clean[a:z - grow])
        site = next((i for i, (_, e) in enumerate(offsets) if e > start - a), len(ids) - 1)
        lo = site - rng.randint(self.seq_len // 5, 4 * self.seq_len // 5)
        lo = max(0, min(lo, len(ids) - self.seq_len))
        window = range(lo, min(len(ids), lo + self.seq_len))
        s, e = start - a, (start if end is None else end) - a
        m = None if missing_after is None else missing_after - a

        def written(i: int) -> bool:
            o0, o1 = offsets[i]
            if end is None or m is not None:  # clean, or a whole line was deleted
                return False
            if s == e:  # something was removed inside a line: the tokens at the cut
                return o0 <= s <= o1
            return o0 < e and o1 > s

        aligned = len(clean_ids) == len(ids)
        return {
            "ids": [ids[i] for i in window],
            "corrupted": [written(i) for i in window],
            "newline": [ids[i] in self.newline_ids for i in window],
            "missing": [m is not None and offsets[i][0] <= m < offsets[i][1] for i in window],
            "targets": [clean_ids[i] for i in window] if aligned else [],
        }

    def next_batch(self, batch_size: int) -> BugBatch:
        pad = self.tok.pad_id
        shape = (batch_size, self.seq_len)
        inputs = torch.full(shape, pad, dtype=torch.long)
        targets = torch.full(shape, pad, dtype=torch.long)
        flags = {k: torch.zeros(shape, dtype=torch.bool)
                 for k in ("valid", "corrupted", "newline", "missing")}
        aligned = torch.zeros(batch_size, dtype=torch.bool)
        for row in range(batch_size):
            ex = self.example(self.position)
            self.position += 1
            n = len(ex["ids"])
            inputs[row, :n] = torch.tensor(ex["ids"])
            flags["valid"][row, :n] = True
            for k in ("corrupted", "newline", "missing"):
                flags[k][row, :n] = torch.tensor(ex[k], dtype=torch.bool)
            if ex["targets"]:
                targets[row, :n] = torch.tensor(ex["targets"])
                aligned[row] = True
        return BugBatch(inputs, flags["valid"], flags["corrupted"], flags["newline"],
                        flags["missing"], targets, aligned)


def _balanced_bce(logits: torch.Tensor, labels: torch.Tensor, where: torch.Tensor
                  ) -> torch.Tensor:
    """Binary cross-entropy with positives and negatives weighted equally (a corrupted token
    is ~1 in 256): the mean over positives plus the mean over negatives, halved."""
    bce = F.binary_cross_entropy_with_logits(logits.float(), labels.float(), reduction="none")
    pos, neg = (labels & where).float(), (~labels & where).float()
    return 0.5 * ((bce * pos).sum() / pos.sum().clamp(min=1)
                  + (bce * neg).sum() / neg.sum().clamp(min=1))


def _pointer_loss(repair: torch.Tensor, batch: BugBatch) -> torch.Tensor:
    """One categorical per corrupted row over its positions, the tokens' "corrupted" logits
    beside the line breaks' "statement missing" ones: -log of the share on the bug's
    positions. The per-token losses judge each token alone; localization compares the lines
    of one function, so this ranks the bug above the row's most suspicious clean tokens."""
    where = torch.cat([batch.valid, batch.newline & batch.valid], -1)
    target = torch.cat([batch.corrupted, batch.missing], -1) & where
    rows = target.any(-1)
    if not rows.any():
        return repair.new_zeros(())
    scores = torch.cat([repair[..., 0], repair[..., 1]], -1).float()
    scores = scores.masked_fill(~where, -1e9)[rows]
    hit = scores.masked_fill(~target[rows], -1e9)
    return (scores.logsumexp(-1) - hit.logsumexp(-1)).mean()


def repair_loss(model: DiffusionLM, batch: BugBatch) -> torch.Tensor:
    """Replaced-token detection on every token, "a statement is missing after this line" on
    every newline token, and the clean token at each corrupted position (rows whose clean
    and corrupted tokens align one to one)."""
    hidden, repair = model.repair_hidden(batch.inputs, batch.valid.long())
    loss = _balanced_bce(repair[..., 0], batch.corrupted, batch.valid)
    loss = loss + _balanced_bce(repair[..., 1], batch.missing, batch.newline & batch.valid)
    loss = loss + POINTER_WEIGHT * _pointer_loss(repair, batch)
    fix = batch.corrupted & batch.aligned[:, None]
    if fix.any():
        # Down-weighted: from a model that copies what it sees, this starts near 9 nats and
        # would drown the detection losses (~2.3 each at the start).
        logits = model.lm_head(hidden[fix]).float()  # the vocabulary only where it is learned
        loss = loss + FIX_WEIGHT * F.cross_entropy(logits, batch.targets[fix])
    return loss


def masked_loss(model: DiffusionLM, noised: Noised, pad_id: int | None,
                visible_weight: float = 0.1) -> torch.Tensor:
    """Mean cross-entropy over the masked positions of the whole batch, plus `visible_weight`
    times the mean over visible positions when some were substituted. Unlike the 1/t-weighted
    ELBO, every masked token counts the same: with batches of a few rows the 1/t weights
    (up to 1000 for a nearly clean row) make the gradient too noisy to learn from."""
    attention = None if pad_id is None else noised.valid.long()
    logits = model(noised.inputs, attention_mask=attention).float()
    ce = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), noised.targets.reshape(-1),
                         reduction="none").view_as(noised.targets)
    masked = noised.masked.float()
    loss = (ce * masked).sum() / masked.sum().clamp(min=1)
    if noised.substituted.any():
        visible = (noised.valid & ~noised.masked).float()
        loss = loss + visible_weight * (ce * visible).sum() / visible.sum().clamp(min=1)
    return loss


def stream_loss(model: DiffusionLM, tokens: torch.Tensor, options: dict,
                generator: torch.Generator) -> torch.Tensor:
    cfg = model.config
    noised = noise(tokens, cfg.mask_id, vocab_size=cfg.vocab_size, generator=generator,
                   **options)
    return masked_loss(model, noised, None)


def canvas_loss(model: DiffusionLM, tokens: torch.Tensor, maskable: torch.Tensor, pad_id: int,
                generator: torch.Generator) -> torch.Tensor:
    """Canvas rows: only the middle (and its fillers) is noised."""
    cfg = model.config
    noised = noise(tokens, cfg.mask_id, vocab_size=cfg.vocab_size, pad_id=pad_id,
                   maskable=maskable, generator=generator)
    return masked_loss(model, noised, pad_id)


def learning_rate(cfg: TrainConfig, step: int, progress: float) -> float:
    """Linear warmup over steps, then cosine over the time budget down to min_lr_ratio * lr."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    progress = min(max(progress, 0.0), 1.0)
    floor = cfg.lr * cfg.min_lr_ratio
    return floor + (cfg.lr - floor) * 0.5 * (1 + math.cos(math.pi * progress))


def local_attention_init(model: DiffusionLM, const: float = 0.1, amp: float = 0.3) -> None:
    """Start attention local. Every token embedding gets a shared constant feature (dimension
    0) and every q/k projection a matching column, so that q.k has a content-free part that
    RoPE turns into a kernel peaked at short distances. From the default init, attention is
    uniform and a masked model needs hundreds of small-batch steps to learn to look at its
    neighbours (measured: it sat at unigram accuracy for 600 steps); with this, at once."""
    with torch.no_grad():
        model.embed.weight[:, 0] = const
        for block in model.blocks:
            block.attn.q_proj.weight[:, 0] = amp
            block.attn.k_proj.weight[:, 0] = amp


def make_optimizer(model: DiffusionLM, cfg: TrainConfig) -> torch.optim.AdamW:
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        (decay if p.dim() >= 2 and "norm" not in name else no_decay).append(p)
    return torch.optim.AdamW(
        [{"params": decay, "weight_decay": cfg.weight_decay},
         {"params": no_decay, "weight_decay": 0.0}],
        lr=cfg.lr, betas=(0.9, 0.95), eps=1e-8,
    )


def save_checkpoint(path: Path, state: dict) -> None:
    """Atomic: a crash mid-write leaves the previous checkpoint intact."""
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: Path) -> dict:
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # a truncated or foreign file
        raise ModelError(f"cannot read checkpoint {path}: {exc}") from None


class Logger:
    def __init__(self, path: Path, echo: bool = True) -> None:
        self.path, self.echo = path, echo

    def __call__(self, message: str) -> None:
        line = f"{time.strftime('%H:%M:%S')} {message}"
        with self.path.open("a") as fh:
            fh.write(line + "\n")
        if self.echo:
            print(line, file=sys.stderr, flush=True)


def validation_batches(tokenizer: CodeTokenizer, corpus_dir: Path, seq_len: int,
                       count: int, seed: int) -> list[torch.Tensor]:
    """A fixed handful of validation windows for a cheap loss curve."""
    try:
        stream = encode_split(tokenizer, corpus_dir, "validation")
    except ModelError:
        return []
    sampler = WindowSampler(stream, seq_len, seed)
    return [sampler.next_batch(8) for _ in range(min(count, max(1, sampler.windows // 8)))]


@torch.no_grad()
def repair_metrics(model: DiffusionLM, batch: BugBatch) -> dict[str, float]:
    """On fixed corrupted validation windows: the AUC of the corruption logit over tokens, how
    often the most suspicious token of a corrupted row is a corrupted one, and how often the
    LM head names the clean token at a corrupted position (rows that align)."""
    model.eval()
    logits, repair = model.repair_logits(batch.inputs, batch.valid.long())
    model.train()
    score = repair[..., 0].float().masked_fill(~batch.valid, -1e9)
    rows = batch.corrupted.any(-1)
    hits = batch.corrupted.gather(1, score.argmax(-1, keepdim=True))[:, 0]
    fix = batch.corrupted & batch.aligned[:, None]
    named = (logits[fix].argmax(-1) == batch.targets[fix]).float()
    return {"val_detect_auc": round(roc_auc(score[batch.valid], batch.corrupted[batch.valid]), 4),
            "val_detect_top1": round(float(hits[rows].float().mean()), 4),
            "val_fix_top1": round(float(named.mean()), 4) if fix.any() else 0.0}


@torch.no_grad()
def validation_metrics(model: DiffusionLM, batches: list[torch.Tensor], options: dict,
                       seed: int, bugs: BugBatch | None = None) -> dict[str, float]:
    """On fixed windows with fixed noise: the training loss (no substitution), and masked-token
    top-1 accuracy with 15% of tokens masked; with `bugs` (and a repair head), the repair
    metrics too."""
    if not batches:
        return {}
    extra = repair_metrics(model, bugs) if bugs is not None and model.repair else {}
    model.eval()
    gen = torch.Generator().manual_seed(seed)
    opts = {**options, "substitution_rate": 0.0}
    losses, right, total = [], 0, 0
    for b in batches:
        losses.append(float(stream_loss(model, b, opts, gen)))
        masked = torch.rand(b.shape, generator=gen) < 0.15
        pred = model(b.masked_fill(masked, model.config.mask_id)).argmax(-1)
        right += int((pred[masked] == b[masked]).sum())
        total += int(masked.sum())
    model.train()
    return {"val_loss": round(sum(losses) / len(losses), 4),
            "val_top1": round(right / max(total, 1), 4), **extra}


def train(
    corpus_dir: Path,
    out_dir: Path,
    size: str = "small",
    cfg: TrainConfig | None = None,
    vocab_size: int = 4096,
    resume: bool = True,
    echo: bool = True,
    max_steps: int | None = None,
    init: Path | None = None,
) -> dict:
    """Train (or resume) until the time budget or `max_steps` is spent; returns a summary.

    `init`: an exported model directory (config.json, model.safetensors, tokenizer.json) to
    warm-start a new run from: its shape, weights and tokenizer, with a new optimizer and
    learning-rate schedule (warmup included). Ignored when the run resumes from a checkpoint.
    The run's thread count (`TrainConfig.threads`) holds while it trains only: the caller's
    is restored afterwards, whatever happens (a process that trains and then serves or tests
    must not be left on the training's count)."""
    threads = torch.get_num_threads()
    try:
        return _train(corpus_dir, out_dir, size, cfg, vocab_size, resume, echo, max_steps, init)
    finally:
        torch.set_num_threads(threads)


def _train(
    corpus_dir: Path,
    out_dir: Path,
    size: str,
    cfg: TrainConfig | None,
    vocab_size: int,
    resume: bool,
    echo: bool,
    max_steps: int | None,
    init: Path | None,
) -> dict:
    out_dir.mkdir(parents=True, exist_ok=True)
    log = Logger(out_dir / LOG, echo)
    ckpt_path = out_dir / CHECKPOINT
    state = load_checkpoint(ckpt_path) if resume and ckpt_path.is_file() else None
    init_net = None if state is not None or init is None else load_init(init, out_dir)
    if state is not None:
        # The budget, the thread count (and the text rows' noise ceiling) may change on
        # resume; everything else comes from the checkpoint.
        changed = {} if cfg is None else {"minutes": cfg.minutes, "threads": cfg.threads}
        if cfg is not None and cfg.stream_max_rate != TrainConfig.stream_max_rate:
            changed["stream_max_rate"] = cfg.stream_max_rate
        cfg = TrainConfig.from_dict({**state["train_config"], **changed})
    cfg = cfg or TrainConfig()
    if init_net is not None and cfg.data_seed is None:
        cfg = replace(cfg, data_seed=cfg.seed + 1)
    data_seed = cfg.seed if cfg.data_seed is None else cfg.data_seed
    torch.set_num_threads(cfg.threads)
    tokenizer, stream = prepare_tokens(corpus_dir, out_dir, vocab_size, log)
    if state is not None:
        mcfg = ModelConfig.from_dict(state["model_config"])
    elif init_net is not None:
        mcfg = replace(init_net.config, repair_head=init_net.config.repair_head or
                       cfg.bug_rows > 0)
        if cfg.seq_len > mcfg.max_seq_len or tokenizer.mask_id != mcfg.mask_id:
            raise ModelError(f"{init}: window {mcfg.max_seq_len} or mask id {mcfg.mask_id} "
                             f"does not fit seq_len {cfg.seq_len} / its tokenizer")
    else:
        mcfg = ModelConfig.sized(size, vocab_size=tokenizer.vocab_size, max_seq_len=cfg.seq_len,
                                 mask_id=tokenizer.mask_id, repair_head=cfg.bug_rows > 0)
    torch.manual_seed(cfg.seed)
    model = DiffusionLM(mcfg)
    if init_net is not None:
        # Weights exported before the repair head existed leave only the head to initialize.
        missing, _ = model.load_state_dict(init_net.state_dict(), strict=False)
        if any(not name.startswith("repair.") for name in missing):
            raise ModelError(f"{init}: missing weights {', '.join(missing)}")
    elif state is None and cfg.local_init:
        local_attention_init(model)
    optimizer = make_optimizer(model, cfg)
    step, tokens_seen, train_seconds, position, canvas_position, bug_position = 0, 0, 0.0, 0, 0, 0
    gen = torch.Generator().manual_seed(data_seed)
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        step, tokens_seen = state["step"], state["tokens_seen"]
        train_seconds, position = state["train_seconds"], state["data_position"]
        canvas_position = state.get("canvas_position", 0)
        bug_position = state.get("bug_position", 0)
        gen.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])
        random.setstate(state["python_rng"])
        log(f"resumed at step {step}, {tokens_seen:,} tokens, {train_seconds / 60:.1f} min, "
            f"text rows masked up to {cfg.stream_max_rate:g}")
    else:
        origin = f"warm start from {init}" if init_net is not None else f"new {size} model"
        log(f"{origin}: {model.num_parameters():,} parameters, vocab "
            f"{mcfg.vocab_size}, seq {cfg.seq_len}, batch {cfg.batch_size}, lr {cfg.lr:g}, "
            f"text rows masked up to {cfg.stream_max_rate:g}, {cfg.minutes:g} min budget")
    sampler = WindowSampler(stream, cfg.seq_len, data_seed, position)
    canvases = None
    if cfg.canvas_rows:
        texts = [f.text for f in read_split(corpus_dir, "train")]
        canvases = CanvasSampler(texts, tokenizer, cfg.canvas_len, data_seed, cfg.max_middle,
                                 canvas_position)
    bugs, val_bugs = None, None
    if cfg.bug_rows and mcfg.repair_head:
        texts = texts if cfg.canvas_rows else [f.text for f in read_split(corpus_dir, "train")]
        bugs = BugSampler(texts, tokenizer, cfg.seq_len, data_seed, bug_position)
        val_texts = [f.text for f in read_split(corpus_dir, "validation")]
        if val_texts:
            val_bugs = BugSampler(val_texts, tokenizer, cfg.seq_len, cfg.seed).next_batch(64)
    val = validation_batches(tokenizer, corpus_dir, cfg.seq_len, 4, cfg.seed)
    budget = cfg.minutes * 60.0
    options = noise_options(cfg, tokenizer)
    if init_net is not None:  # the baseline, on the same fixed validation windows and noise
        metrics = validation_metrics(model, val, options, cfg.seed, val_bugs)
        log(f"init step 0 {json.dumps(metrics)}")

    def snapshot() -> None:
        save_checkpoint(ckpt_path, {
            "model": model.state_dict(), "optimizer": optimizer.state_dict(),
            "model_config": mcfg.to_dict(), "train_config": asdict(cfg), "step": step,
            "tokens_seen": tokens_seen, "train_seconds": train_seconds,
            "data_position": sampler.position, "generator": gen.get_state(),
            "canvas_position": canvases.position if canvases else 0,
            "bug_position": bugs.position if bugs else 0,
            "torch_rng": torch.get_rng_state(), "python_rng": random.getstate(),
        })

    model.train()
    last_ckpt = time.monotonic()
    window_start, window_tokens, window_loss, window_n = time.monotonic(), 0, 0.0, 0
    loss_value = float("nan")
    while train_seconds < budget and (max_steps is None or step < max_steps):
        t0 = time.monotonic()
        lr = learning_rate(cfg, step, train_seconds / budget)
        for group in optimizer.param_groups:
            group["lr"] = lr
        batch = sampler.next_batch(cfg.batch_size)
        loss = stream_loss(model, batch, options, gen)
        step_tokens = batch.numel()
        if canvases is not None:
            canvas_tokens, maskable = canvases.next_batch(cfg.canvas_rows)
            loss = 0.5 * (loss + canvas_loss(model, canvas_tokens, maskable, tokenizer.pad_id,
                                             gen))
            step_tokens += canvas_tokens.numel()
        if bugs is not None:
            bug_batch = bugs.next_batch(cfg.bug_rows)
            loss = loss + cfg.bug_weight * repair_loss(model, bug_batch)
            step_tokens += bug_batch.inputs.numel()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        optimizer.step()
        loss_value = float(loss.detach())
        if not math.isfinite(loss_value):
            raise ModelError(f"loss became {loss_value} at step {step}: lower the learning rate")
        step += 1
        tokens_seen += step_tokens
        train_seconds += time.monotonic() - t0
        window_tokens += step_tokens
        window_loss += loss_value
        window_n += 1
        if step % cfg.log_every == 0:
            elapsed = time.monotonic() - window_start
            log(f"step {step} loss {window_loss / window_n:.4f} lr {lr:.2e} "
                f"tok/s {window_tokens / max(elapsed, 1e-9):.0f} tokens {tokens_seen:,} "
                f"epoch {sampler.epoch_fraction:.3f} min {train_seconds / 60:.1f}")
            window_start, window_tokens, window_loss, window_n = time.monotonic(), 0, 0.0, 0
        if time.monotonic() - last_ckpt > cfg.checkpoint_minutes * 60:
            metrics = validation_metrics(model, val, options, cfg.seed, val_bugs)
            snapshot()
            last_ckpt = time.monotonic()
            log(f"checkpoint step {step} {json.dumps(metrics)}")
    snapshot()
    summary = {"step": step, "tokens_seen": tokens_seen, "train_minutes": train_seconds / 60,
               "loss": loss_value, "parameters": model.num_parameters(),
               **validation_metrics(model, val, options, cfg.seed, val_bugs)}
    log("done " + json.dumps(summary))
    return summary


def load_init(init: Path, out_dir: Path) -> DiffusionLM:
    """The network of an exported model directory, in fp32; its tokenizer becomes the run's
    (copied to out_dir, so prepare_tokens and a resumed run use it, never a new one)."""
    lm = load_model(init, device="cpu")
    source = Path(init) / "tokenizer.json"
    target = out_dir / "tokenizer.json"
    if not target.is_file():
        shutil.copyfile(source, target)
    elif target.read_bytes() != source.read_bytes():
        raise ModelError(f"{target} differs from the tokenizer of {init}: use another --out")
    return lm.net.float()


def export_weights(run_dir: Path, out_dir: Path, dtype: torch.dtype = torch.float16) -> Path:
    """The run's last checkpoint as a model directory (config.json, model.safetensors in
    `dtype`, tokenizer.json): what `load_model` reads and what ships in model/weights/."""
    from greenpatch.model.checkpoint import save_model, wrap
    from safetensors.torch import load_file, save_file

    state = load_checkpoint(run_dir / CHECKPOINT)
    net = DiffusionLM(ModelConfig.from_dict(state["model_config"]))
    net.load_state_dict(state["model"])
    tokenizer = CodeTokenizer.load(run_dir / "tokenizer.json")
    tmp = out_dir.with_name(out_dir.name + ".tmp")
    save_model(wrap(net, tokenizer, name=str(run_dir)), tmp)
    weights = tmp / "model.safetensors"
    tensors = {k: v.to(dtype) for k, v in load_file(str(weights)).items()}
    save_file(tensors, str(weights), metadata={"step": str(state["step"]),
                                               "tokens_seen": str(state["tokens_seen"])})
    weights.chmod(0o644)  # package data: readable by whoever installs it
    out_dir.mkdir(parents=True, exist_ok=True)
    for f in tmp.iterdir():
        f.replace(out_dir / f.name)
    tmp.rmdir()
    return out_dir
