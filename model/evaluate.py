"""How well a model infills code, measured on a corpus split (the held-out package or validation).

- masked-token top-1: windows of the split, a fixed share of tokens masked at random, one
  forward pass; the share of masked tokens whose argmax is right;
- masked whole-line exact match: a line's content masked (indentation and newline stay), filled
  with the default sampler settings; the best candidate equals the original line;
- single-token mutant recovery: one operator, number, boolean or identifier of a line replaced
  (a plausible bug); the model sees the mutant's surroundings, the mutated line (or just the
  mutated token) is masked with span lengths taken from the mutant, as the agent would; the
  original is among the top k distinct candidates (k = 1, 10, 50). Two decoders: the default
  sampler settings (whole lines: at most 12 candidates, so k <= 10; tokens: 16 samples per span
  length, up to 48 candidates), and a beam over the span (`beam_infill`: the model's k most
  likely fills, what "top-k infills" means; width 50 for tokens, 10 for whole lines);
- decoding speed of the default sampler settings on this machine: tokens/s, candidates/s;
- repair, for a model with a repair head, on bugs injected into the split (`model.bugs`, every
  kind): corruption-detection AUC over the tokens of bug windows; top-1 localization (the most
  suspicious line of the bug's function, by one pass, is the bug's line; chance is one over
  the function's lines); fix recovery@1/@10 given the line: the candidates a caller makes for
  that line (the agent's model-free fills) ranked by the model against the buggy original,
  the original among the first k (ranked with the model-free order as a prior, as the agent
  ranks them; and by the model's score alone); beside it the same candidates in their
  model-free order, and the share of bugs whose fix is among them at all.

Everything is drawn with a fixed seed, so two models are compared on the same sites.
"""

from __future__ import annotations

import ast
import io
import keyword
import math
import random
import re
import statistics
import time
import tokenize
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from greenpatch.model.bugs import bug_line, corrupt, enclosing_function, roc_auc
from greenpatch.model.checkpoint import LoadedModel
from greenpatch.model.data import TextSpan, pick_site, read_split
from greenpatch.model.errors import ModelError
from greenpatch.model.repair import (
    QUICK_PRIOR,
    has_repair_head,
    line_suspicion,
    quick_scores,
    with_prior,
)
from greenpatch.model.sampler import DecodeStats, beam_infill, infill_site, span_lengths
from greenpatch.model.train import BugSampler, WindowSampler, encode_split

TOP_K = (1, 10, 50)
# Weights of the model-free order's prior tried in the repair ranking (`model.repair.
# with_prior` over `quick_scores`), to choose QUICK_PRIOR on the validation split (0: the
# model alone).
PRIOR_SWEEP = (0.0, 1.0, 2.0, 3.0, 5.0, 10.0)
LINE_BEAM = 10
OPERATOR_SWAPS = {
    "==": "!=", "!=": "==", "<": "<=", "<=": "<", ">": ">=", ">=": ">", "+": "-", "-": "+",
    "*": "/", "/": "*", "//": "/", "%": "//", "and": "or", "or": "and", "is": "==",
    "True": "False", "False": "True", "+=": "-=", "-=": "+=",
}
_IDENT = re.compile(r"[A-Za-z_]\w+")


@dataclass
class EvalConfig:
    windows: int = 48
    mask_rate: float = 0.15
    line_sites: int = 50
    mutant_sites: int = 50
    samples: int = 4          # the sampler's default: candidates per span length (x3 lengths)
    token_samples: int = 16   # token-level mutants: x3 lengths, up to 48 distinct candidates
    context: int = 128        # tokens of prefix + span + suffix the sampler sees
    seed: int = 0
    bug_sites: int = 100      # injected bugs for localization and fix recovery
    bug_windows: int = 64     # bug windows for the detection AUC


@dataclass(frozen=True)
class Mutant:
    site: TextSpan        # the original line (or token) between its original surroundings
    mutant: str       # what the model sees in place of site.middle
    kind: str         # operator, number, identifier


def split_files(corpus_dir: Path, split: str) -> list[str]:
    texts = [f.text for f in read_split(corpus_dir, split)]
    if not texts:
        raise ModelError(f"split {split} of {corpus_dir} has no files")
    return texts


def sample_sites(texts: list[str], count: int, seed: int, kind: str) -> list[TextSpan]:
    """`count` sites of `kind`, files drawn in proportion to their size, fixed by `seed`."""
    rng = random.Random(seed)
    weights = [len(t) for t in texts]
    sites: list[TextSpan] = []
    for _ in range(count * 20):
        if len(sites) == count:
            break
        text = rng.choices(texts, weights)[0]
        site = pick_site(text, rng, kind)
        if site is not None and site.middle.strip():
            sites.append(site)
    return sites


def mutate(site: TextSpan, rng: random.Random) -> Mutant | None:
    """Replace one operator, number, boolean or identifier of the site's line (never inside a
    string or comment). None when the line has nothing to mutate."""
    line = site.middle
    options: list[tuple[int, int, str, str]] = []
    try:
        for tok in tokenize.generate_tokens(io.StringIO(line).readline):
            if tok.start[0] != 1:
                break
            a, z, text = tok.start[1], tok.end[1], tok.string
            if text in OPERATOR_SWAPS:
                options.append((a, z, OPERATOR_SWAPS[text], "operator"))
            elif tok.type == tokenize.NUMBER and text.isdigit():
                value = int(text)
                options.append((a, z, str(value + 1 if value == 0 else value - 1), "number"))
            elif tok.type == tokenize.NAME and not keyword.iskeyword(text) and len(text) > 1:
                options.append((a, z, "", "identifier"))
    except (tokenize.TokenError, IndentationError, SyntaxError):
        pass
    if not options:
        return None
    a, z, new, kind = rng.choice(options)
    if kind == "identifier":
        context = site.prefix[-3000:] + site.suffix[:3000]
        names = sorted({n for n in _IDENT.findall(context)
                        if n != line[a:z] and not keyword.iskeyword(n)})
        if not names:
            return None
        new = rng.choice(names)
    return Mutant(site, line[:a] + new + line[z:], kind)


def token_span(m: Mutant) -> tuple[TextSpan, str]:
    """The token-level variant of a mutant: only the changed characters are masked. Returns
    the original site narrowed to them, and the mutant's text for that span."""
    orig, mut = m.site.middle, m.mutant
    a = 0
    while a < min(len(orig), len(mut)) and orig[a] == mut[a]:
        a += 1
    z_o, z_m = len(orig), len(mut)
    while z_o > a and z_m > a and orig[z_o - 1] == mut[z_m - 1]:
        z_o, z_m = z_o - 1, z_m - 1
    # Widen to whole words so that the span is a token, not a piece of one.
    while a > 0 and (orig[a - 1].isalnum() or orig[a - 1] == "_"):
        a -= 1
    while z_o < len(orig) and (orig[z_o].isalnum() or orig[z_o] == "_"):
        z_o, z_m = z_o + 1, z_m + 1
    # And take the spaces before it: byte-level BPE attaches a space to the next token, so a
    # prefix ending in one is a boundary training never shows (the agent's canvases do the same).
    while a > 0 and orig[a - 1] == " " and orig[:a].strip():
        a -= 1
    site = TextSpan(m.site.prefix + orig[:a], orig[a:z_o], orig[z_o:] + m.site.suffix, "token")
    return site, mut[a:z_m]


@torch.inference_mode()
def token_accuracy(lm: LoadedModel, corpus_dir: Path, split: str, cfg: EvalConfig) -> dict:
    """Masked-token top-1 at a fixed mask rate over fixed windows of the split."""
    stream = encode_split(lm.tokenizer, corpus_dir, split)
    seq = min(cfg.context, lm.config.max_seq_len)
    windows = WindowSampler(stream, seq, cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    special = torch.tensor([i for i in (lm.tokenizer.bos_id, lm.tokenizer.eos_id)
                            if i is not None])
    right = total = 0
    for _ in range(max(1, cfg.windows // 8)):
        batch = windows.next_batch(8)
        masked = (torch.rand(batch.shape, generator=gen) < cfg.mask_rate)
        masked &= ~torch.isin(batch, special)
        logits = lm.net(batch.masked_fill(masked, lm.mask_id).to(lm.device))
        pred = logits.argmax(-1).cpu()
        right += int((pred[masked] == batch[masked]).sum())
        total += int(masked.sum())
    return {"masked_token_top1": right / max(total, 1), "masked_tokens": total}


def _fill(lm: LoadedModel, site: TextSpan, shown: str, samples: int, extra: tuple[int, ...],
          cfg: EvalConfig, seed: int) -> tuple[list[str], int, float]:
    """Distinct fills best first for the site's prefix/suffix, span lengths from `shown`;
    plus the number of span slots decoded and the seconds it took."""
    lengths = span_lengths(lm, shown, extra)
    start = time.perf_counter()
    cands = infill_site(lm, site.prefix, site.suffix, lengths, samples=samples,
                        context=cfg.context, seed=seed)
    return [c.text for c in cands], sum(lengths) * samples, time.perf_counter() - start


def line_exact(lm: LoadedModel, texts: list[str], cfg: EvalConfig,
               tick: Callable[[], None]) -> dict:
    """Whole-line infill with the default sampler settings; also its decoding speed."""
    sites = sample_sites(texts, cfg.line_sites, cfg.seed, "line")
    exact = top10 = slots = rows = 0
    seconds = 0.0
    for i, site in enumerate(sites):
        fills, n, dt = _fill(lm, site, site.middle, cfg.samples, (0, 3, 8), cfg, cfg.seed + i)
        want = site.middle.rstrip()
        exact += bool(fills) and fills[0].rstrip() == want
        top10 += any(f.rstrip() == want for f in fills[:10])
        slots, rows, seconds = slots + n, rows + 3 * cfg.samples, seconds + dt
        tick()
    count = max(len(sites), 1)
    return {"line_exact_top1": exact / count, "line_exact_top10": top10 / count,
            "line_sites": len(sites), "decode_tokens_per_s": slots / max(seconds, 1e-9),
            "decode_candidates_per_s": rows / max(seconds, 1e-9)}


def mutant_recovery(lm: LoadedModel, texts: list[str], cfg: EvalConfig,
                    tick: Callable[[], None]) -> dict:
    """Single-token mutants: is the original among the top k fills, masking the whole line
    and masking only the mutated token?"""
    rng = random.Random(cfg.seed + 1)
    mutants: list[Mutant] = []
    for site in sample_sites(texts, cfg.mutant_sites * 3, cfg.seed + 1, "line"):
        m = mutate(site, rng)
        if m is not None and m.mutant != site.middle:
            mutants.append(m)
        if len(mutants) == cfg.mutant_sites:
            break
    hits = {f"{v}@{k}": 0 for v in ("line", "token", "line_beam", "token_beam") for k in TOP_K}
    kinds: dict[str, int] = {}
    for i, m in enumerate(mutants):
        kinds[m.kind] = kinds.get(m.kind, 0) + 1
        fills, _, _ = _fill(lm, m.site, m.mutant, cfg.samples, (0, 3, 8), cfg, i)
        rank = _rank(fills, m.site.middle)
        narrow, shown = token_span(m)
        tfills, _, _ = _fill(lm, narrow, shown, cfg.token_samples, (0, 1, 2), cfg, i)
        trank = _rank(tfills, narrow.middle)
        ranks = {"line": rank, "token": trank}
        # Whole lines: a beam of 10 (k <= 10; a line is ~20 positions of 50 rows otherwise).
        spans = (("line", m.site, m.mutant, 3, LINE_BEAM), ("token", narrow, shown, 2, max(TOP_K)))
        for name, span, text, slack, width in spans:
            n = len(lm.tokenizer.encode(text)) + slack
            beam = beam_infill(lm, span.prefix, span.suffix, n, width, context=cfg.context)
            ranks[f"{name}_beam"] = _rank([c.text for c in beam], span.middle)
        for k in TOP_K:
            for name, found in ranks.items():
                hits[f"{name}@{k}"] += found is not None and found < k
        tick()
    count = max(len(mutants), 1)
    widest = {"line": 3 * cfg.samples, "line_beam": LINE_BEAM}
    out = {f"mutant_recovery_{name}": v / count for name, v in hits.items()
           if int(name.split("@")[1]) <= widest.get(name.split("@")[0], max(TOP_K))}
    out.update({"mutant_sites": len(mutants), "mutant_kinds": kinds})
    return out


def _rank(fills: list[str], want: str) -> int | None:
    want = want.rstrip()
    return next((i for i, f in enumerate(fills) if f.rstrip() == want), None)


# (buggy source, 1-based line) -> candidate edits (start, end, replacement) in a model-free
# order, best first.
Candidates = Callable[[str, int], list[tuple[int, int, str]]]
# The same by sampling (best first), adding what its decoding cost to the stats.
Sampled = Callable[[str, int, DecodeStats], list[tuple[int, int, str]]]


def repair_eval(lm: LoadedModel, texts: list[str], cfg: EvalConfig,
                candidates: Candidates | None, tick: Callable[[], None],
                sampled: Sampled | None = None) -> dict:
    """Detection AUC, top-1 line localization and fix recovery given the line (see the
    module docstring); with `sampled` (the line's fills by sampling that edits, best first),
    fix recovery with them added to the candidates' ranking (`_merged`)."""
    bugs = BugSampler(texts, lm.tokenizer, lm.config.max_seq_len, cfg.seed).next_batch(
        cfg.bug_windows)
    with torch.no_grad():
        _, logits = lm.net.repair_logits(bugs.inputs.to(lm.device), bugs.valid.long().to(
            lm.device))
    auc = roc_auc(logits[..., 0].float().cpu()[bugs.valid], bugs.corrupted[bugs.valid])
    rng = random.Random(cfg.seed + 1)
    weights = [len(t) for t in texts]
    hits = chance = 0.0
    count = reachable = 0
    model_at = {k: 0 for k in (1, 10)}
    fixed_at = {k: 0 for k in (1, 10)}
    sweep: dict[float, list[int]] = {w: [] for w in PRIOR_SWEEP}
    per_kind: dict[str, list[int]] = {}
    seconds = sample_seconds = 0.0
    scored = 0
    stats = DecodeStats()
    merged = _Merged()
    kinds_sampled: dict[str, list[int]] = {}
    kinds_reached: dict[str, list[int]] = {}
    kinds_at10: dict[str, list[int]] = {}
    while count < cfg.bug_sites:
        clean = rng.choices(texts, weights)[0]
        bug = corrupt(clean, rng, at=rng.randrange(len(clean)))
        if bug is None:
            continue
        count += 1
        tick()
        line = bug_line(bug)
        start, end = enclosing_function(bug.text, bug.start)
        lines = line_suspicion(lm, bug.text, start, end)
        top = max(lines, key=lambda s: s.score).line if lines else None
        hits += top == line
        chance += 1 / max(1, len(lines))
        per_kind.setdefault(bug.kind, []).append(int(top == line))
        if candidates is None:
            continue
        edits = candidates(bug.text, line)
        want = "".join(clean.split())  # the fix, up to whitespace
        right = [_fixes(bug.text, edit, want, clean) for edit in edits]
        scores = None
        if any(right):
            began = time.perf_counter()
            scores = quick_scores(lm, bug.text, edits)
            seconds += time.perf_counter() - began
            scored += len(edits)
        if sampled is not None:
            began = time.perf_counter()
            fills = sampled(bug.text, line, stats)
            sample_seconds += time.perf_counter() - began
            merged.add(lm, bug.text, edits, right,
                       None if scores is None else with_prior(scores, QUICK_PRIOR),
                       fills, [_fixes(bug.text, f, want, clean) for f in fills])
            kinds_sampled.setdefault(bug.kind, []).append(int(merged.last_found))
            kinds_reached.setdefault(bug.kind, []).append(int(merged.last_found or any(right)))
            kinds_at10.setdefault(bug.kind, []).append(int(merged.last_at10))
        if scores is None:
            continue
        reachable += 1
        model_rank = _first_right(with_prior(scores, QUICK_PRIOR), right)
        fixed_rank = right.index(True)
        for w in PRIOR_SWEEP:
            sweep[w].append(_first_right(with_prior(scores, w), right))
        for k in model_at:
            model_at[k] += model_rank < k
            fixed_at[k] += fixed_rank < k
    out = {"detect_auc": auc, "bug_sites": count, "localize_top1": hits / count,
           "localize_chance": chance / count,
           "localize_top1_by_kind": {k: sum(v) / len(v) for k, v in sorted(per_kind.items())}}
    if candidates is not None:
        out.update({"fix_reachable": reachable / count,
                    "ms_per_candidate_ranked": 1000 * seconds / max(1, scored),
                    "prior_sweep": {str(w): {"at1": sum(r < 1 for r in ranks) / count,
                                             "at10": sum(r < 10 for r in ranks) / count,
                                             "median_rank": statistics.median(ranks) + 1
                                             if ranks else None}
                                    for w, ranks in sweep.items()}})
        for k in model_at:
            out[f"fix_recovery@{k}"] = model_at[k] / count
            out[f"fix_recovery_fixed_order@{k}"] = fixed_at[k] / count
    if sampled is not None:
        out.update(merged.summary(count))
        for name, table in (("sampled_by_kind", kinds_sampled),
                            ("reachable_with_sampled_by_kind", kinds_reached),
                            (f"fix_recovery_with_sampled_offset_{HEADLINE_OFFSET:g}@10_by_kind",
                             kinds_at10)):
            out[name] = {k: (sum(v) / len(v), len(v)) for k, v in sorted(table.items())}
        out["ms_per_span_sampled"] = 1000 * sample_seconds / max(1, stats.spans)
        out["ms_per_line_sampled"] = 1000 * sample_seconds / count
    return out


def _fixes(text: str, edit: tuple[int, int, str], want: str, clean: str) -> bool:
    """The edit restores the clean program: the same text up to whitespace, or, where the two
    differ only in parentheses (`not (x).y` for `not x.y`), the same syntax tree."""
    a, z, fill = edit
    fixed = text[:a] + fill + text[z:]
    got = "".join(fixed.split())
    if got == want:
        return True
    if got.replace("(", "").replace(")", "") != want.replace("(", "").replace(")", ""):
        return False
    try:
        return ast.dump(ast.parse(fixed)) == ast.dump(ast.parse(clean))
    except SyntaxError:
        return False


# Offsets (nats) tried when the sampled fills join the ranked candidates: a sampled fill's key
# is its `quick_scores` score (the disbelief it removes, as the candidates') minus
# QUICK_PRIOR * log(1 + its rank among the sampled fills) minus the offset.
SAMPLED_OFFSETS = (0.0, 4.0, 8.0, 12.0)
# The offset the figures quote (chosen on the validation split); its recovery@10 by kind.
HEADLINE_OFFSET = 8.0


class _Merged:
    """Fix recovery with the sampled fills joined to the ranked model-free candidates, one
    list ordered by the repair head's keys (`SAMPLED_OFFSETS`); sampled fills that repeat a
    candidate's program (up to whitespace) are dropped. Counted over every bug, as the other
    recovery figures."""

    def __init__(self) -> None:
        self.alone = {1: 0, 10: 0}
        self.joined = {w: {1: 0, 10: 0} for w in SAMPLED_OFFSETS}
        self.found = self.union = 0
        self.fills = 0
        self.last_found = False
        self.last_at10 = False

    def add(self, lm: LoadedModel, text: str, edits: list[tuple[int, int, str]],
            right: list[bool], keys: list[float] | None, fills: list[tuple[int, int, str]],
            fill_right: list[bool]) -> None:
        """One bug: the candidates (`keys`: their ranking keys, None when none is right) and
        the sampled fills, best first."""
        seen = {"".join((text[:a] + f + text[z:]).split()) for a, z, f in edits}
        kept = [(edit, r) for edit, r in zip(fills, fill_right, strict=True)
                if "".join((text[:edit[0]] + edit[2] + text[edit[1]:]).split()) not in seen]
        self.fills += len(fills)
        self.last_found = any(fill_right)
        self.last_at10 = False
        self.found += any(fill_right)
        self.union += any(fill_right) or any(right)
        first = next((i for i, r in enumerate(fill_right) if r), None)
        for k in self.alone:
            self.alone[k] += first is not None and first < k
        if not any(r for _, r in kept) and not any(right):
            return
        keys = keys if keys is not None else [-math.inf] * len(edits)
        sampled = with_prior(quick_scores(lm, text, [e for e, _ in kept]), QUICK_PRIOR)
        for w in SAMPLED_OFFSETS:
            ranked = sorted(zip(keys + [k - w for k in sampled], right + [r for _, r in kept],
                                strict=True), key=lambda item: -item[0])
            for k in (1, 10):
                self.joined[w][k] += any(r for _, r in ranked[:k])
            if w == HEADLINE_OFFSET:
                self.last_at10 = any(r for _, r in ranked[:10])

    def summary(self, count: int) -> dict:
        out = {"sampled_reachable": self.found / count,
               "reachable_with_sampled": self.union / count,
               "sampled_fills_per_bug": self.fills / count}
        for k, v in self.alone.items():
            out[f"sampled_recovery@{k}"] = v / count
        for w, hits in self.joined.items():
            for k, v in hits.items():
                out[f"fix_recovery_with_sampled_offset_{w:g}@{k}"] = v / count
        return out


def _first_right(keys: list[float], right: list[bool]) -> int:
    """0-based rank of the first right candidate when sorted by key, highest first (stable:
    ties keep the given order)."""
    order = sorted(range(len(keys)), key=lambda i: -keys[i])
    return next(r for r, i in enumerate(order) if right[i])


def evaluate(lm: LoadedModel, corpus_dir: Path, split: str, cfg: EvalConfig | None = None,
             tick: Callable[[str, int], None] | None = None,
             candidates: Candidates | None = None, repair_only: bool = False,
             sampled: Sampled | None = None) -> dict:
    """All metrics on one split (`repair_only`: masked-token top-1 and the repair metrics, no
    sampling). `tick(stage, total)`
    is called once per site for progress; `candidates` makes the fills that fix recovery
    ranks."""
    cfg = cfg or EvalConfig()
    texts = split_files(corpus_dir, split)
    tick = tick or (lambda stage, total: None)
    start = time.perf_counter()
    result = {"split": split, "model": lm.name, "parameters": lm.net.num_parameters(),
              "config": asdict(cfg)}
    result.update(token_accuracy(lm, corpus_dir, split, cfg))
    if not repair_only:
        result.update(line_exact(lm, texts, cfg, lambda: tick("line", cfg.line_sites)))
        result.update(mutant_recovery(lm, texts, cfg, lambda: tick("mutant", cfg.mutant_sites)))
    if has_repair_head(lm):
        result.update(repair_eval(lm, texts, cfg, candidates,
                                  lambda: tick("repair", cfg.bug_sites), sampled))
    result["seconds"] = time.perf_counter() - start
    return result
