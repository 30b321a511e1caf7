"""Drafting with a model behind HTTP (`--model http(s)://HOST/v1`): canvases to FIM, functions to
chat with the failure in the prompt.

It offers what the fix loop asks of `agent.pipeline.draft.Drafter` (`name`, `stages`, `stage`,
`refine`, `count_tokens`, `busy`), so the loop, the runner and the validation are the same for both:
- "substitution", "edit" and "widen": the model-free fills, from a model-free Drafter;
- "sample": each of the most suspicious sites' canvases goes to the server's FIM route. A
  diffusion model served by `agent serve` fills exactly `max_tokens` masks, so it is asked once
  per span length, like the in-process sampler; any other server stops by itself and is asked
  once per site (a single-line site's fill is cut at its first newline). Fills are ranked by
  the server's /fim/score extension when it has one, else in the server's order;
  then, in the same stage (the loop's explorer knows these three stages), the function around
  the line goes to chat with the failure: the failing test's source, its error and traceback
  (trimmed) and the function itself; the reply (code block or unified diff) is read into
  whole-function candidates (`agent.pipeline.replies`). A follow-up (a candidate that made progress,
  `refine`) asks chat again with the failure it still has.
A server without FIM gets chat alone. Token usage is kept per fix (`usage`).

Why here and not in model/: turning sites into prompts needs the agent's sites, drafts and test
failures; model/remote.py is the transport, which knows none of them.
"""

from __future__ import annotations

import ast
import itertools
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from greenpatch.agent.pipeline.draft import Draft, Drafter, model_canvas
from greenpatch.agent.pipeline.localize import is_protected
from greenpatch.agent.pipeline.replies import enclosing_function, rewrites
from greenpatch.agent.pipeline.sites import Site, apply, dedupe_fills, rough_token_count
from greenpatch.model.remote import RemoteError, RemoteModel, Usage

# Sites of a line whose canvases go to FIM, most suspicious first: as many as the in-process
# sampler takes (agent.pipeline.draft.SAMPLED_SITES); each costs a request per span length on a
# diffusion server.
FIM_SITES = 2
# Characters of file around a canvas: plenty for a remote model; `agent serve` keeps what
# fits its window (the end of the prefix, the start of the suffix).
CONTEXT_CHARS = 6000
# Chat prompt parts, trimmed: the error text's tail, a test's and a function's lines.
ERROR_CHARS = 1500
TEST_LINES = 60
FUNCTION_LINES = 150
TARGETS_SHOWN = 2
CHAT_MAX_TOKENS = 2048
SYSTEM = ("You repair Python code so that failing tests pass. Change as little as possible. "
          "Reply with the whole corrected function in one ```python code block.")  # fmt: skip
STAGES = {"model": ("substitution", "edit", "widen", "sample"), "model-only": ("sample",)}


@dataclass(frozen=True)
class Failure:
    """A target test at the base commit: its id, its source (trimmed) and its error text."""

    test_id: str
    source: str
    message: str


def _test_source(root: Path, test_id: str) -> str:
    """The test function's lines (first TEST_LINES), or '' when it cannot be found."""
    path, _, rest = test_id.partition("::")
    name = rest.split("::")[-1].split("[")[0]
    try:
        text = (root / path).read_text(encoding="utf-8")
        tree = ast.parse(text)
    except (OSError, UnicodeDecodeError, SyntaxError, ValueError):
        return ""
    lines = text.splitlines()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name == name:
            end = min(node.end_lineno or node.lineno, node.lineno - 1 + TEST_LINES)
            return "\n".join(lines[node.lineno - 1 : end])
    return ""


def failures_of(root: Path, targets: Sequence[str], messages: Mapping[str, str]) -> list[Failure]:
    """The failures a chat prompt shows: the first TARGETS_SHOWN targets."""
    return [Failure(t, _test_source(root, t), messages.get(t, "")) for t in
            targets[:TARGETS_SHOWN]]  # fmt: skip


def chat_prompt(path: str, function: str, failures: Sequence[Failure], cond: str) -> str:
    """The user message: the failing tests and their errors (`cond`, the failure a candidate
    still has, replaces the base commit's), then the function to repair."""
    parts = []
    for f in failures:
        parts.append(f"The test `{f.test_id}` fails.")
        if f.source:
            parts.append(f"```python\n{f.source}\n```")
        error = (cond or f.message)[-ERROR_CHARS:].strip()
        if error:
            parts.append(f"Its error (trimmed):\n```\n{error}\n```")
    if not failures and cond:
        parts.append(f"A test fails with (trimmed):\n```\n{cond[-ERROR_CHARS:].strip()}\n```")
    parts.append(f"The fault is most likely in this function of `{path}`:\n"
                 f"```python\n{function.rstrip()}\n```")  # fmt: skip
    parts.append("Reply with the whole corrected function in one ```python code block (a "
                 "unified diff of the file also works). Tests are correct: do not change them.")
    return "\n\n".join(parts)


class RemoteDrafter:
    """Drafts for the fix loop from a RemoteModel (see the module docstring)."""

    def __init__(
        self,
        remote: RemoteModel,
        never_edit: Sequence[str],
        failures: Sequence[Failure] = (),
        mode: str = "model",
        samples: int = 4,
    ) -> None:
        self.remote = remote
        # No local model: the loop's denoiser localization (it reads `drafter.lm`) is off.
        self.lm = None
        self.local = Drafter(None, never_edit, mode="edits")
        self.never_edit = list(never_edit)
        self.failures = list(failures)
        self.mode = mode
        self.samples = samples
        self.usage = Usage()
        self.chat_off: str | None = None  # why rewrites stopped (the model cannot chat)
        self._own_busy = 0.0
        self._ids = itertools.count(1)
        self._emitted: set[tuple] = set()
        self._asked: set[tuple] = set()

    @property
    def name(self) -> str:
        return self.remote.name if self.mode == "model" else f"{self.remote.name} ({self.mode})"

    @property
    def busy(self) -> float:
        return self._own_busy + self.local.busy

    @property
    def stages(self) -> tuple[str, ...]:
        model = self.remote.fim_route is not None or self.remote.chat
        return tuple(s for s in STAGES[self.mode] if s != "sample" or model)

    def count_tokens(self, text: str) -> int:
        return rough_token_count(text)

    def report(self) -> dict:
        """What the fix's JSON says of the model server."""
        out: dict = {"url": self.remote.base_url, "model": self.remote.model,
                     "fim": self.remote.fim_route, "chat": self.remote.chat and not self.chat_off,
                     "usage": self.usage.as_dict()}  # fmt: skip
        if self.chat_off:
            out["chat_off"] = self.chat_off
        return out

    # -- drafts -------------------------------------------------------------------------------

    def _key(self, draft: Draft) -> tuple:
        return (draft.path, draft.source, *sorted(draft.carried.items()))

    def _make(self, sources: Mapping[str, str], items, origin: str,
              parent: Draft | None) -> list[Draft]:  # fmt: skip
        """Drafts of (site, fill, score) items given best first, as Drafter makes them."""
        inherited = parent.files if parent else {}
        drafts = []
        for site, fill, score in dedupe_fills(sources, items, lambda i: i[0], lambda i: i[1]):
            carried = {p: t for p, t in inherited.items() if p != site.path}
            draft = Draft(f"r{next(self._ids)}", site.path, apply(sources[site.path], site, fill),
                          site, fill, score, origin, parent.id if parent else None, carried)
            if self._key(draft) not in self._emitted:
                self._emitted.add(self._key(draft))
                drafts.append(draft)
        return drafts

    def stage(
        self,
        sources: Mapping[str, str],
        sites: Sequence[Site],
        stage: str,
        cond: str = "",
        parent: Draft | None = None,
        seed: int = 0,
        missing: Sequence[str] = (),
    ) -> list[Draft]:
        if stage in ("substitution", "edit", "widen"):
            drafts = self.local.stage(sources, sites, stage, cond, parent, seed, missing)
            self._emitted.update(self._key(d) for d in drafts)
            return drafts
        sites = [s for s in sites if not is_protected(s.path, self.never_edit)]
        began = time.monotonic()
        try:
            drafts = []
            if self.remote.fim_route is not None:
                drafts = self._make(sources, self._fim(sources, sites), "model", parent)
            if self.remote.chat:
                drafts += self._rewrite(sources, sites, cond, parent)
            return drafts
        finally:
            self._own_busy += time.monotonic() - began

    def refine(self, draft: Draft, cond: str = "") -> list[Draft]:
        """Feedback: the candidate's function rewritten again, told the failure it still has."""
        if not self.remote.chat:
            return []
        began = time.monotonic()
        try:
            return self._rewrite(draft.files, [draft.site], cond, draft)
        finally:
            self._own_busy += time.monotonic() - began

    # -- FIM ----------------------------------------------------------------------------------

    def _fim(self, sources: Mapping[str, str], sites: Sequence[Site]) -> list[tuple]:
        asks = []  # (site, moved, prefix, suffix, max_tokens, stop)
        for site in [s for s in sites if s.kind != "delete"][:FIM_SITES]:
            prefix, suffix, moved = model_canvas(sources[site.path], site)
            prefix, suffix = prefix[-CONTEXT_CHARS:], suffix[:CONTEXT_CHARS]
            if self.remote.exact_spans:
                asks += [(site, moved, prefix, suffix, n, ()) for n in site.span_lengths]
            else:
                one_line = "\n" not in site.original_text
                longest = max(site.span_lengths or (8,))
                asks.append((site, moved, prefix, suffix, 2 * longest + 8,
                             ("\n",) if one_line else ()))  # fmt: skip

        def ask(item):
            site, moved, prefix, suffix, max_tokens, stop = item
            texts = self.remote.fim(prefix, suffix, max_tokens, self.samples, self.usage,
                                    stop=stop)  # fmt: skip
            if stop:
                texts = [t.split("\n", 1)[0] for t in texts]
            return [t.removeprefix(moved) for t in texts]

        with ThreadPoolExecutor(max_workers=self.remote.concurrency) as pool:
            answers = list(pool.map(ask, asks))
        fills: dict[Site, list[str]] = {}
        for (site, *_), texts in zip(asks, answers, strict=True):
            fills.setdefault(site, []).extend(texts)
        items = []
        for site, texts in fills.items():
            texts = [t for t in dict.fromkeys(texts) if t != site.original_text]
            if not texts:
                continue
            if self.remote.can_score:
                prefix, suffix, moved = model_canvas(sources[site.path], site)
                scores = self.remote.score(prefix[-CONTEXT_CHARS:], suffix[:CONTEXT_CHARS],
                                           [moved + t for t in texts], self.usage)  # fmt: skip
            else:  # the server's order, first best, interleaved across sites
                scores = [-float(rank) for rank in range(len(texts))]
            items += [(site, t, s) for t, s in zip(texts, scores, strict=True)]
        items.sort(key=lambda item: -item[2])
        return items

    # -- chat ---------------------------------------------------------------------------------

    def _rewrite(self, sources: Mapping[str, str], sites: Sequence[Site], cond: str,
                 parent: Draft | None) -> list[Draft]:  # fmt: skip
        """One chat request for the function around the sites' line, once per (function,
        parent, failure)."""
        if not sites or self.chat_off:
            return []
        site = sites[0]
        source = sources[site.path]
        function = enclosing_function(source, site.line)
        if function is None:
            return []
        text = function.text(source)
        key = (site.path, function.start, text, parent.id if parent else None, cond)
        if key in self._asked or text.count("\n") > FUNCTION_LINES:
            return []
        self._asked.add(key)
        messages = [{"role": "system", "content": SYSTEM},
                    {"role": "user", "content": chat_prompt(site.path, text, self.failures,
                                                            cond)}]  # fmt: skip
        budget = min(CHAT_MAX_TOKENS, 2 * rough_token_count(text) + 256)
        try:
            replies = self.remote.complete_chat(messages, budget, self.usage)
        except RemoteError as exc:
            status = getattr(exc, "status", None)
            if status not in (400, 404, 405, 422, 501):
                raise
            # The model (or route) does not chat: rewrites stop, the other stages go on.
            self.chat_off = str(exc)
            return []
        items = []
        for reply in replies:
            for new in rewrites(reply, source, function):
                items.append(_changed(site, source, new))
        return self._make(sources, items, "chat", parent)


def _changed(site: Site, source: str, new: str) -> tuple[Site, str, float]:
    """(site, fill, score) of a whole new file: the site spans what differs from `source`, so
    the draft's diff is exactly the change."""
    start = 0
    limit = min(len(source), len(new))
    while start < limit and source[start] == new[start]:
        start += 1
    end = 0
    while end < limit - start and source[-1 - end] == new[-1 - end]:
        end += 1
    changed = Site(site.path, start, len(source) - end, "line", source[start : len(source) - end],
                   (), site.line, site.score)  # fmt: skip
    return changed, new[start : len(new) - end], 0.0


def is_remote(lm: object) -> bool:
    return isinstance(lm, RemoteModel)


def remote_drafter(remote: RemoteModel, request, repro) -> RemoteDrafter:
    """The drafter of one fix (`agent.pipeline.fix.FixRequest`,
    `agent.pipeline.reproduce.Reproduction`): the targets' failures at the base commit go into its
    chat prompts."""
    root = Path(request.repo.working_tree_dir)
    records = repro.baseline.records
    messages = {t: records[t].message for t in repro.targets if t in records}
    return RemoteDrafter(remote, request.settings.never_edit,
                         failures_of(root, repro.targets, messages), mode=request.drafter)
