"""The denoiser as a repair critic: which lines of a function look corrupted, and how much
better a candidate edit looks than the buggy original at its site.

Both read the repair head (`DiffusionLM.repair_hidden`, trained on bug noise by
`model.train.BugSampler`) over code as it is, unmasked, tokenized in one piece as training
tokenized it. A line's suspicion is its most suspicious token's probability of having been
corrupted, or, for "a statement is missing here", the probability on the line break after it.
A candidate's score is how much "wrongness" (summed over the lines around its site: every
token's -log P(clean)) it removes compared with the original: a fix should make those lines
look like ordinary code, and a candidate that makes its surroundings look wrong (an unbound
name, a broken call) pays for it. Original and candidate are read over the same lines of the
original plus the fill: a window of a fixed token count would let a longer fill push the
suspicious tokens out of view and look like a fix.

Sampling that edits (`sample_edits`) starts a denoising from the buggy code: the head's
disbelief picks the few tokens of a line to re-mask (the rest stays as written), with spare
slots so a fill can grow, and a statement is sampled after a line the head says is followed by
a missing one.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import torch
import torch.nn.functional as F
from greenpatch.model.checkpoint import LoadedModel
from greenpatch.model.sampler import Candidate, Canvas, DecodeStats, TokenCanvas, infill
from greenpatch.model.tokenizer import CodeTokenizer

# Lines of context either side of a candidate's site. A line has a few hundred candidates and
# the cost is linear in the tokens read (128 tokens measured 162 ms per candidate on the
# shared 2-core machine at load ~15, 1 thread): the far context changes little between
# candidates of one site.
SCORE_LINES = 1
# At most this many tokens are read per candidate (around the site) when the lines are long.
SCORE_WINDOW = 96
# The model-free order as a prior beside the model's score: a candidate's key is its score
# minus PRIOR_WEIGHT * log(1 + its position in that order), i.e. a power-law prior over the
# fixed order times the model's likelihood ratio. Chosen on validation bugs (model card); 0
# ranks by the model alone.
PRIOR_WEIGHT = 3.0
# Lines of context either side of a site for `quick_scores` (one pass per site: a wider view
# costs nothing per candidate).
QUICK_LINES = 2
# `quick_scores` with the model-free order as prior (`with_prior`): the weight with the best
# fix recovery@10 given the line on validation bugs (`agent model eval --repair-only --split
# validation` sweeps it; model card).
QUICK_PRIOR = 1.0
# Rows per forward pass when scoring candidates.
SCORE_BATCH = 64


@dataclass(frozen=True)
class LineSuspicion:
    line: int        # 1-based line of the text
    corrupted: float  # P(a token of the line was corrupted), the line's most suspicious token
    missing: float    # P(a statement is missing after the line)

    @property
    def score(self) -> float:
        return max(self.corrupted, self.missing)


def has_repair_head(lm: LoadedModel | None) -> bool:
    return lm is not None and getattr(lm.net, "repair", None) is not None


def _line_of(text: str, char: int) -> int:
    return text.count("\n", 0, char) + 1


@torch.no_grad()
def line_suspicion(lm: LoadedModel, text: str, start: int = 0, end: int | None = None
                   ) -> list[LineSuspicion]:
    """Every line of `text[start:end]` (a function, say; `start` at a line start) scored by one
    pass of the repair head (several overlapping windows when it is longer than the model's
    window: each token keeps its highest score). Line numbers are `text`'s."""
    end = len(text) if end is None else end
    ids, offsets = lm.tokenizer.encode_with_offsets(text[start:end])
    if not ids:
        return []
    size = lm.config.max_seq_len
    stride = max(1, size * 3 // 4)
    corrupt = torch.full((len(ids),), -1e9)
    missing = torch.full((len(ids),), -1e9)
    for lo in range(0, max(1, len(ids) - size + stride), stride):
        window = torch.tensor(ids[lo:lo + size], device=lm.device)[None]
        _, logits = lm.net.repair_hidden(window)
        logits = logits[0].float().cpu()
        part = slice(lo, lo + window.shape[1])
        corrupt[part] = torch.maximum(corrupt[part], logits[:, 0])
        missing[part] = torch.maximum(missing[part], logits[:, 1])
    piece = text[start:end]
    lines: dict[int, list[float]] = {}
    for i, (a, b) in enumerate(offsets):
        token = piece[a:b]
        stripped = len(token) - len(token.lstrip())
        # A token that opens with a line break ("\n    ") ends the line before it: its
        # "missing" logit is about that line; its "corrupted" one is about the text it holds.
        first = a + stripped if token.strip() else a
        line = _line_of(text, start + first)
        entry = lines.setdefault(line, [0.0, 0.0])
        if token.strip():
            entry[0] = max(entry[0], float(torch.sigmoid(corrupt[i])))
        newline = token.find("\n")
        if newline >= 0:
            before = _line_of(text, start + a + newline)
            slot = lines.setdefault(before, [0.0, 0.0])
            slot[1] = max(slot[1], float(torch.sigmoid(missing[i])))
    return [LineSuspicion(n, c, m) for n, (c, m) in sorted(lines.items())]


def _lines_around(text: str, start: int, end: int, lines: int) -> tuple[int, int]:
    """Characters of the lines holding [start, end) and `lines` more lines either side."""
    a = text.rfind("\n", 0, start) + 1
    for _ in range(lines):
        if a == 0:
            break
        a = text.rfind("\n", 0, a - 1) + 1
    z = end if end > start and text[end - 1:end] == "\n" else text.find("\n", end)
    z = len(text) if z < 0 else z
    for _ in range(lines):
        if z >= len(text):
            break
        nxt = text.find("\n", z + 1)
        z = len(text) if nxt < 0 else nxt
    return a, min(len(text), z + 1)


@torch.no_grad()
def wrongness(lm: LoadedModel, texts: Sequence[str], centres: Sequence[int],
              window: int = SCORE_WINDOW) -> list[float]:
    """For each text, the repair head's total disbelief over its tokens (at most `window`,
    around the character `centres[i]`): the sum over tokens of -log P(not corrupted), plus
    over line breaks of -log P(no statement missing). Batched: rows of similar length share a
    pass (little padding), and the vocabulary projection is skipped."""
    tok = lm.tokenizer
    rows: list[list[int]] = []
    for text, centre in zip(texts, centres, strict=True):
        ids, offsets = tok.encode_with_offsets(text)
        site = next((i for i, (_, e) in enumerate(offsets) if e > centre), len(ids) - 1)
        lo = max(0, min(site - window // 2, len(ids) - window))
        rows.append(ids[lo:lo + window])
    newline = _newline_table(lm)
    out = [0.0] * len(rows)
    order = sorted(range(len(rows)), key=lambda i: len(rows[i]))
    for b in range(0, len(order), SCORE_BATCH):
        chunk = order[b:b + SCORE_BATCH]
        width = max(len(rows[i]) for i in chunk)
        ids = torch.full((len(chunk), width), tok.pad_id, dtype=torch.long)
        valid = torch.zeros((len(chunk), width), dtype=torch.bool)
        for j, i in enumerate(chunk):
            ids[j, :len(rows[i])] = torch.tensor(rows[i])
            valid[j, :len(rows[i])] = True
        ids, valid = ids.to(lm.device), valid.to(lm.device)
        _, logits = lm.net.repair_hidden(ids, valid.long())
        logits = logits.float()
        bad = F.softplus(logits[..., 0]) * valid  # -log(1 - sigmoid(x)) = softplus(x)
        gone = F.softplus(logits[..., 1]) * (valid & newline[ids])
        for i, value in zip(chunk, (bad.sum(-1) + gone.sum(-1)).tolist(), strict=True):
            out[i] = value
    return out


@lru_cache(maxsize=4)
def _newline_ids(tokenizer: CodeTokenizer) -> frozenset[int]:
    """Tokens holding a line break (byte-level BPE's picture of b"\\n" is U+010A)."""
    return frozenset(i for i in range(tokenizer.vocab_size)
                     if "\u010a" in (tokenizer.token_text(i) or ""))


def _newline_table(lm: LoadedModel) -> torch.Tensor:
    """[V] bool: the token holds a line break."""
    table = torch.zeros(lm.config.vocab_size, dtype=torch.bool)
    table[list(_newline_ids(lm.tokenizer))] = True
    return table.to(lm.device)


def rank_candidates(lm: LoadedModel, source: str, edits: Sequence[tuple[int, int, str]],
                    lines: int = SCORE_LINES) -> list[float]:
    """How much better each edit (start, end, replacement: characters of `source`) looks than
    the original at its site: the original's wrongness minus the candidate's, each read over
    the same lines around the site (plus the fill). Higher is better; 0 is "no better"."""
    if not edits:
        return []
    texts, centres, originals, ocentres = [], [], [], []
    for start, end, fill in edits:
        a, z = _lines_around(source, start, end, lines)
        texts.append(source[a:start] + fill + source[end:z])
        centres.append(start - a)
        originals.append(source[a:z])
        ocentres.append(start - a)
    # The original once per distinct window (candidates at one site share it).
    unique = list(dict.fromkeys(zip(originals, ocentres, strict=True)))
    base = dict(zip(unique, wrongness(lm, [u[0] for u in unique], [u[1] for u in unique]),
                    strict=True))
    scores = wrongness(lm, texts, centres)
    return [base[(o, c)] - s for o, c, s in zip(originals, ocentres, scores, strict=True)]


@torch.no_grad()
def quick_scores(lm: LoadedModel, source: str, edits: Sequence[tuple[int, int, str]],
                 lines: int = QUICK_LINES, mean: bool = False) -> list[float]:
    """One pass per site instead of one per candidate: how much of the original's "wrongness"
    each edit (start, end, replacement) removes, read from a single pass of the repair head
    over the lines around it, as the buggy code is: the sum over the original tokens the edit
    replaces of -log P(not corrupted) (for a pure insertion after a line break, -log P(no
    statement missing) there; inside a line, nothing). Edits that replace the tokens the model
    disbelieves come first; what a candidate writes is not read (a per-candidate pass,
    `rank_candidates`, reads it at ~100x the cost). With `mean`, log(1 + the mean odds of
    corruption of the tokens replaced) instead of the sum: evidence that the bug lies in the
    span, which a rewrite of a whole line does not gain by replacing more tokens."""
    tok = lm.tokenizer
    out: list[float] = [0.0] * len(edits)
    windows: dict[tuple[int, int], list[int]] = {}
    for i, (start, end, _) in enumerate(edits):
        windows.setdefault(_lines_around(source, start, end, lines), []).append(i)
    size = lm.config.max_seq_len
    for (a, z), members in windows.items():
        text = source[a:z]
        ids, offsets = tok.encode_with_offsets(text)
        if not ids:
            continue
        centre = min(edits[i][0] for i in members) - a
        site = next((k for k, (_, e) in enumerate(offsets) if e > centre), len(ids) - 1)
        lo = max(0, min(site - size // 2, len(ids) - size))
        window = torch.tensor(ids[lo:lo + size], device=lm.device)[None]
        _, logits = lm.net.repair_hidden(window)
        # Per token: the odds of corruption (`mean`), or -log P(not corrupted).
        bad = (logits[0, :, 0].float().exp() if mean else F.softplus(logits[0, :, 0].float())
               ).tolist()
        gone = F.softplus(logits[0, :, 1].float()).tolist()
        for i in members:
            start, end, fill = edits[i]
            changed = tok.encode(text[:start - a] + fill + text[end - a:])
            # The original tokens the edit changes: what differs between the two token
            # sequences once their common beginning and end are set aside.
            p = 0
            while p < min(len(ids), len(changed)) and ids[p] == changed[p]:
                p += 1
            q = 0
            while q < min(len(ids), len(changed)) - p and ids[-1 - q] == changed[-1 - q]:
                q += 1
            first, last = p - lo, len(ids) - q - lo
            span = slice(max(0, first), max(0, min(len(bad), last)))
            if last > first and mean:
                out[i] = math.log1p(sum(bad[span]) / max(1, len(bad[span])))
            elif last > first:
                out[i] = sum(bad[span])
            elif 0 < first <= len(gone) and ids[lo + first - 1] in _newline_ids(tok):
                out[i] = gone[first - 1]  # a statement inserted after a line break
            # An insertion inside a line has no evidence either way: reading the two tokens at
            # the cut (which training flags where a corruption removed something) put the fix
            # later on 19 of the 48 dev-split tasks, earlier on 2 (`benchmarks/draft_rank.py
            # --split dev`, 51 against 49.5).
    return out


def with_prior(scores: Sequence[float], weight: float = PRIOR_WEIGHT) -> list[float]:
    """Ranking keys of candidates given in the model-free order, with their model scores
    (see PRIOR_WEIGHT): higher first."""
    return [s - weight * math.log1p(i) for i, s in enumerate(scores)]


# -- sampling that edits ---------------------------------------------------------------------

# The most disbelieved tokens of a line re-masked one at a time (each widened to its whole
# word), and the runs joining the top 2 and top 3 when they lie close together.
EDIT_TOP = 3
# Slots a re-masked run may grow by: a fill can also end early (end tokens), so the longest
# span covers shorter rewrites; +5 lets one token become a call (`b` -> `max(a, b)`).
EDIT_GROW = (0, 2, 5)
# A run joining the top tokens is re-masked only when it spans at most this many tokens:
# wider, it is a blank line again.
EDIT_RUN = 8
# Slots for a call written around a disbelieved run (` float(`, ` max(a, `), for the runs of
# the WRAPPED_RUNS most disbelieved tokens.
WRAPPER_SLOTS = (2, 5)
WRAPPED_RUNS = 2
# Span lengths of a statement sampled after a line ("a statement is missing after it").
INSERT_LENGTHS = (8, 16)
# Sample a statement after the line when P(statement missing) reaches this, or exceeds every
# token's P(corrupted) on the line.
MISSING_AT = 0.5
# The log-likelihood credited to deleting a run (sampled fills of this model average about
# -1 per token).
DELETE_LOGP = -1.0
# Samples per re-masked run (the first greedy).
EDIT_SAMPLES = 4
# Sampler options: short spans in a window of 128 tokens, at most 4 passes, one full pass
# then passes over the span tokens against cached context keys/values. The first pass over
# every canvas is half the cost; 128 tokens of context instead of 192 found the same fixes
# (held-out 14 of 60 injected bugs, 14 in the first 10 against 13; validation 6 and 6).
EDIT_OPTIONS = {"steps": 4, "context": 128, "top_k": 40, "top_p": None, "cache_every": 4}
# Characters of the source tokenized either side of the line (cut at line starts): enough for
# the model's window.
_REGION_CHARS = 2048


@dataclass(frozen=True)
class EditFill:
    """A sampled edit of the source: characters [start, end) replaced by `text` (the line's
    content rewritten, or a statement inserted after it: whole lines at a line start).
    `score` ranks the fills of one line, higher first: the disbelief that justified re-masking
    (-log P(not corrupted) of the run's most disbelieved token; for an inserted statement,
    -log P(none missing)) plus the sampler's mean log-likelihood of the fill (DELETE_LOGP
    for an empty one)."""
    start: int
    end: int
    text: str
    score: float


@dataclass
class _Region:
    """A tokenized stretch of the source around a line, with the repair head's verdicts."""
    start: int                    # its first character in the source
    ids: list[int]
    offsets: list[tuple[int, int]]  # per token, characters relative to `start`
    starts_file: bool
    ends_file: bool
    bad: list[float]              # per token: -log P(not corrupted); 0 outside the head's window
    gone: list[float]             # per token: -log P(no statement missing after its newline)


def _region(lm: LoadedModel, source: str, a: int, z: int) -> _Region:
    ra = source.rfind("\n", 0, max(0, a - _REGION_CHARS)) + 1 if a > _REGION_CHARS else 0
    rz = source.find("\n", z + _REGION_CHARS)
    rz = len(source) if rz < 0 else rz + 1
    ids, offsets = lm.tokenizer.encode_with_offsets(source[ra:rz])
    site = next((k for k, (_, e) in enumerate(offsets) if ra + e > a), len(ids) - 1)
    size = lm.config.max_seq_len
    lo = max(0, min(site - size // 2, len(ids) - size))
    window = torch.tensor(ids[lo:lo + size], device=lm.device)[None]
    _, logits = lm.net.repair_hidden(window)
    bad = [0.0] * len(ids)
    gone = [0.0] * len(ids)
    bad[lo:lo + size] = F.softplus(logits[0, :, 0].float()).tolist()
    gone[lo:lo + size] = F.softplus(logits[0, :, 1].float()).tolist()
    return _Region(ra, ids, offsets, ra == 0, rz == len(source), bad, gone)


def _word(region: _Region, source: str, i: int, j: int, first: int, last: int
          ) -> tuple[int, int]:
    """Tokens [i, j) widened to whole identifiers within tokens [first, last): a name of
    several tokens (`max`, `_`, `len`) is re-masked whole."""
    def joined(k: int) -> bool:  # token k continues the word of token k - 1
        s, e = region.offsets[k]
        prev = source[region.start + region.offsets[k - 1][1] - 1]
        here = source[region.start + s]
        return (prev.isalnum() or prev == "_") and (here.isalnum() or here == "_")
    while i > first and joined(i):
        i -= 1
    while j < last and joined(j):
        j += 1
    return i, j


def _runs(region: _Region, source: str, line: list[int]) -> list[tuple[int, int]]:
    """Token ranges of the line to re-mask, most disbelieved first."""
    first, last = line[0], line[-1] + 1
    top = sorted(line, key=lambda k: -region.bad[k])[:EDIT_TOP]
    runs = [_word(region, source, k, k + 1, first, last) for k in top]
    for n in range(2, len(top) + 1):
        i, j = min(runs[:n])[0], max(r[1] for r in runs[:n])
        if j - i <= EDIT_RUN:
            runs.append((i, j))
    return list(dict.fromkeys(runs))


def _operands(region: _Region, source: str, runs: list[tuple[int, int]], first: int
              ) -> list[tuple[int, int]]:
    """The runs with the token before each (`or x`, `and self`, `- 1`): deleted, an operand
    (a condition made too specific, an extra term) goes."""
    return [_word(region, source, i - 1, j, first, j) for i, j in runs if i > first]


def _wrapped_run(region: _Region, source: str, run: tuple[int, int]
                 ) -> tuple[int, int, str, float]:
    """The run as the argument of a call to write before it: (characters replaced, the run's
    text without its leading space, its disbelief)."""
    i, j = run
    start, end = region.start + region.offsets[i][0], region.start + region.offsets[j - 1][1]
    text = source[start:end]
    return start, end, text.lstrip(), max(region.bad[i:j])


def _wrapper_canvases(lm: LoadedModel, region: _Region, source: str, run: tuple[int, int]
                      ) -> list[TokenCanvas]:
    """A missing wrapper call (`max(a, b)` written `b`): slots before the most disbelieved
    run for the callee and its first arguments, the run kept as the last argument, `)` after
    it."""
    _, _, inner, _ = _wrapped_run(region, source, run)
    i, j = run
    kept = tuple(lm.tokenizer.encode(inner + ")")) + tuple(region.ids[j:])
    return [TokenCanvas(tuple(region.ids[:i]), kept, n, region.starts_file, region.ends_file)
            for n in WRAPPER_SLOTS]


@torch.no_grad()
def sample_edits(lm: LoadedModel, source: str, line: int, *, samples: int = EDIT_SAMPLES,
               seed: int = 0, grow: Sequence[int] = EDIT_GROW,
               insert: bool | None = None, stats: DecodeStats | None = None
               ) -> list[EditFill]:
    """Sampling that edits: fills for the 1-based `line` of `source` that start from the code
    as written. One repair-head pass says which tokens of the line the model disbelieves; the
    most disbelieved (see `EDIT_TOP`, `EDIT_RUN`) are re-masked, each with `grow` spare slots,
    the rest of the code kept, and denoised in one batch. A statement is also sampled after the
    line when the head says one is missing there (`insert=None`; True/False force it).
    Distinct edits, best first (see `EditFill.score`); no-ops dropped. `stats`, when given,
    is updated with the decoding's cost."""
    a = 0
    for _ in range(line - 1):
        a = source.find("\n", a) + 1
        if a == 0:
            return []
    z = source.find("\n", a)
    z = len(source) if z < 0 else z
    region = _region(lm, source, a, z)
    base = region.start
    mine = [k for k, (s, e) in enumerate(region.offsets)
            if base + s >= a and base + e <= z and source[base + s:base + e].strip()]
    canvases: list[Canvas | TokenCanvas] = []
    spans: list[tuple[int, int, float]] = []  # per canvas: characters replaced, disbelief
    deletions: list[tuple[int, int, float]] = []
    runs = _runs(region, source, mine) if mine else []
    if mine:
        for i, j in _operands(region, source, runs, mine[0]):
            deletions.append((base + region.offsets[i][0], base + region.offsets[j - 1][1],
                              max(region.bad[i:j])))
        for i, j in runs:
            prefix, suffix = tuple(region.ids[:i]), tuple(region.ids[j:])
            span = (base + region.offsets[i][0], base + region.offsets[j - 1][1],
                    max(region.bad[i:j]))
            deletions.append(span)
            for extra in grow:
                canvases.append(TokenCanvas(prefix, suffix, j - i + extra, region.starts_file,
                                            region.ends_file))
                spans.append(span)
        for n, run in enumerate(runs[:WRAPPED_RUNS]):
            wrappers = _wrapper_canvases(lm, region, source, run)
            canvases += wrappers
            spans += [(-1 - n, -1, 0.0)] * len(wrappers)
    newline = next((k for k, (s, e) in enumerate(region.offsets) if base + s <= z < base + e),
                   None)
    missing = region.gone[newline] if newline is not None else 0.0
    if insert is None:
        # -log(1 - p) >= -log(1 - MISSING_AT), or above every token of the line's.
        insert = newline is not None and (
            missing >= -math.log1p(-MISSING_AT)
            or missing > max((region.bad[k] for k in mine), default=0.0))
    if insert and z < len(source):
        for n in INSERT_LENGTHS:
            canvases.append(Canvas(source[:z + 1], source[z + 1:], n))
            spans.append((z + 1, z + 1, missing))
    if not canvases:
        return []
    results = infill(lm, canvases, samples, seed=seed, stats=stats, **EDIT_OPTIONS)
    # Every run also deleted outright (an empty fill, which sampling rarely ends on at once),
    # with a typical fill's log-likelihood.
    results += [[Candidate("", DELETE_LOGP)] for _ in deletions]
    spans += deletions
    best: dict[tuple[int, int, str], float] = {}
    for (start, end, removed), found in zip(spans, results, strict=True):
        if start < 0:  # a call wrapped around run -1 - start: fill + run + ")"
            start, end, inner, removed = _wrapped_run(region, source, runs[-1 - start])
            found = [Candidate(c.text + inner + ")", c.score) for c in found if c.text.strip()]
        for c in found:
            if start == end:  # an inserted statement is whole lines
                if not c.text.strip():
                    continue
                key = (start, end, c.text if c.text.endswith("\n") else c.text + "\n")
            else:  # as a rewrite of the line: runs that write the same line agree
                key = (a, z, source[a:start] + c.text + source[end:z])
            # A fill that ends at once is a deletion: the end token's confidence is no
            # evidence for it, so it is credited as the deletions are.
            logp = c.score if c.text else DELETE_LOGP
            if key[2] != source[key[0]:key[1]]:
                best[key] = max(best.get(key, -math.inf), removed + logp)
    ranked = sorted(best.items(), key=lambda item: -item[1])
    return [EditFill(s, e, t, v) for (s, e, t), v in ranked]
