"""Localization: which lines most likely hold the bug, ranked best first.

Signals, in order of weight:
- Ochiai over per-test coverage: failed(s) / sqrt(total_failed * (failed(s) + passed(s))), where a
  line counts as executed by a failing test if it is in its coverage or its traceback.
- Traceback frames of the failures: the deepest frame outside protected paths is the most telling,
  the next outer frames less so; averaged over the failing tests.
- The denoiser's disbelief in the line (0..1; `denoiser_disbelief`): one forward pass of the
  repair head over each suspicious function says, per line, how likely a token of it was
  corrupted or a statement is missing after it.

`rank_lines` is a pure function of its inputs. To update localization from new runs (e.g. the
candidates of a round, run on the same source), re-call it with the merged coverage and outcomes.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache

from greenpatch.model.bugs import enclosing_function
from greenpatch.model.checkpoint import LoadedModel
from greenpatch.model.repair import line_suspicion

TRACEBACK_WEIGHT = 0.3
DISBELIEF_WEIGHT = 0.1
# The weight of `denoiser_disbelief` (pass it as `disbelief_weight`; the fix loop does with a
# repair model). `benchmarks/localize_rank.py --split dev` (68 tasks), buggy line top-1 at
# 0.25/0.5/1/2: 44.1/45.6/47.1/48.5% (35.3% without); top-5 best at 0.5 and 1, and a deleted
# statement is missed more often as the weight grows: 0.5.
DENOISER_WEIGHT = 0.5
# Functions the denoiser reads per localization: the ones holding the most suspicious lines.
DENOISED_FUNCTIONS = 24

Coverage = Mapping[str, Mapping[str, Iterable[int]]]
Frames = Mapping[str, Sequence[tuple[str, int]]]


@dataclass(frozen=True)
class SuspiciousLine:
    path: str
    line: int
    score: float
    ochiai: float
    in_traceback: bool
    disbelief: float


@lru_cache(maxsize=256)
def _glob_regex(pattern: str) -> re.Pattern[str]:
    """gitignore-like globs: no slash matches the file name anywhere; `**` spans directories."""
    pattern = pattern.strip().lstrip("/")
    if pattern.endswith("/"):
        pattern += "**"
    if "/" not in pattern:
        pattern = "**/" + pattern
    out, i = [], 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif pattern[i] == "*":
            out.append("[^/]*")
            i += 1
        elif pattern[i] == "?":
            out.append("[^/]")
            i += 1
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    return re.compile("".join(out))


def is_protected(relpath: str, never_edit: Iterable[str]) -> bool:
    """Whether `relpath` (posix, relative to the repo root) matches a `never_edit` glob."""
    path = relpath.replace("\\", "/")
    path = path[2:] if path.startswith("./") else path
    return any(_glob_regex(p).fullmatch(path) for p in never_edit if p.strip())


def ochiai(failed: int, passed: int, total_failed: int) -> float:
    if failed == 0 or total_failed == 0:
        return 0.0
    return failed / math.sqrt(total_failed * (failed + passed))


def _editable(path: str, never_edit: Sequence[str]) -> bool:
    # Frames outside the project (site-packages, stdlib) arrive as absolute or ../ paths.
    return not (path.startswith(("/", "../")) or is_protected(path, never_edit))


def _traceback_weights(
    failing: Sequence[str], tracebacks: Frames, never_edit: Sequence[str]
) -> dict[tuple[str, int], float]:
    """Mean over failing tests of 1/(1+k), k = distance from the deepest project frame."""
    weights: dict[tuple[str, int], float] = {}
    for test in failing:
        frames = [(p, n) for p, n in tracebacks.get(test, ()) if _editable(p, never_edit)]
        seen: dict[tuple[str, int], float] = {}
        for depth, frame in enumerate(reversed(frames)):
            seen.setdefault(frame, 1.0 / (1 + depth))
        for frame, weight in seen.items():
            weights[frame] = weights.get(frame, 0.0) + weight / len(failing)
    return weights


def rank_lines(
    coverage: Coverage,
    failing: Iterable[str],
    passing: Iterable[str],
    tracebacks: Frames | None = None,
    disbelief: Mapping[tuple[str, int], float] | None = None,
    never_edit: Sequence[str] = (),
    limit: int | None = None,
    disbelief_weight: float = DISBELIEF_WEIGHT,
) -> list[SuspiciousLine]:
    """Lines executed by at least one failing test, outside `never_edit`, best first.

    coverage: {test_id: {relpath: lines}}; tracebacks: {test_id: [(relpath, line), ...]} outermost
    frame first (Python's order); disbelief: {(relpath, line): 0..1}. Ties are broken by path, then
    line, so the order is deterministic.
    """
    failing = sorted(set(failing))
    passing = sorted(set(passing) - set(failing))
    tracebacks = tracebacks or {}
    disbelief = disbelief or {}
    failed_count: dict[tuple[str, int], int] = {}
    passed_count: dict[tuple[str, int], int] = {}
    for test in failing:
        executed = {(p, n) for p, lines in coverage.get(test, {}).items() for n in lines}
        executed |= {(p, n) for p, n in tracebacks.get(test, ())}
        for key in executed:
            failed_count[key] = failed_count.get(key, 0) + 1
    for test in passing:
        for path, lines in coverage.get(test, {}).items():
            for n in lines:
                passed_count[(path, n)] = passed_count.get((path, n), 0) + 1
    in_trace = _traceback_weights(failing, tracebacks, never_edit)
    ranked = []
    for (path, line), failed in failed_count.items():
        if not _editable(path, never_edit):
            continue
        base = ochiai(failed, passed_count.get((path, line), 0), len(failing))
        doubt = min(1.0, max(0.0, float(disbelief.get((path, line), 0.0))))
        trace = in_trace.get((path, line), 0.0)
        score = base + TRACEBACK_WEIGHT * trace + disbelief_weight * doubt
        ranked.append(SuspiciousLine(path, line, round(score, 12), base, trace > 0, doubt))
    ranked.sort(key=lambda s: (-s.score, s.path, s.line))
    return ranked[:limit] if limit is not None else ranked


def denoiser_disbelief(
    lm: LoadedModel, sources: Mapping[str, str], lines: Iterable[tuple[str, int]],
    max_functions: int = DENOISED_FUNCTIONS,
) -> dict[tuple[str, int], float]:
    """{(path, line): 0..1} for every line of the functions holding `lines` (most suspicious
    first: the first `max_functions` distinct functions are read, one pass each)."""
    out: dict[tuple[str, int], float] = {}
    done: set[tuple[str, int, int]] = set()
    for path, number in lines:
        if (path, number) in out or path not in sources:
            continue
        text = sources[path]
        at = _line_start(text, number)
        if at is None:
            continue
        start, end = enclosing_function(text, at)
        if (path, start, end) in done:
            continue
        if len(done) >= max_functions:
            break
        done.add((path, start, end))
        for line in line_suspicion(lm, text, start, end):
            out[(path, line.line)] = line.score
    return out


def _line_start(text: str, number: int) -> int | None:
    """The character of the 1-based line's first non-blank: inside the function when the
    line is (its indentation may not be)."""
    lines = text.split("\n")
    if not 1 <= number <= len(lines):
        return None
    line = lines[number - 1]
    return sum(len(x) + 1 for x in lines[:number - 1]) + len(line) - len(line.lstrip())
