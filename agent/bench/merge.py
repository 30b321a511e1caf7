"""Bench reports of one code commit run in shards (`agent bench --shard K/N`), joined into one:
a run too long for one sitting is split by tasks, each shard's JSON kept, and the tables made
from the union, as if one run had measured every task."""

from __future__ import annotations

import json
from pathlib import Path

from greenpatch.agent.bench.libraries import git
from greenpatch.agent.bench.run import Config, report
from greenpatch.agent.errors import AgentError

CHECKOUT = Path(__file__).resolve().parents[2]
# What must agree for shards to be one run: the same fixer, budget and configurations, on the
# same code.
SAME = ("code", "fixer", "budget")


def code_commit(root: Path = CHECKOUT) -> str:
    """The greenpatch commit the bench runs ("+dirty" with uncommitted changes to tracked
    files; "unknown" outside a git checkout): what a shard's figures belong to."""
    try:
        head = git(root, "rev-parse", "HEAD").strip()
        dirty = git(root, "status", "--porcelain", "--untracked-files=no").strip()
    except AgentError:
        return "unknown"
    return head + ("+dirty" if dirty else "")


def parse_shard(text: str) -> tuple[int, int]:
    """"K/N" -> (K, N) with 1 <= K <= N."""
    k, sep, n = text.partition("/")
    if not (sep and k.isdigit() and n.isdigit() and 1 <= int(k) <= int(n)):
        raise AgentError(f"--shard wants K/N with 1 <= K <= N, got '{text}'")
    return int(k), int(n)


def _load(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except OSError as exc:
        raise AgentError(f"cannot read {path}: {exc.strerror}") from None
    except json.JSONDecodeError as exc:
        raise AgentError(f"{path} is not a bench report: {exc.msg} at line {exc.lineno}") from None
    if not isinstance(data, dict) or not isinstance(data.get("configs"), dict):
        raise AgentError(f"{path} is not a bench report (no 'configs')")
    return data


def merge_reports(paths: list[Path]) -> dict:
    """One report from the shards' JSON reports; refuses shards of different code, fixer,
    budget or configurations, and a task measured twice."""
    shards = [_load(p) for p in paths]
    first = shards[0]
    configs = [Config(name, tuple(data["flags"])) for name, data in first["configs"].items()]
    seen: dict[str, Path] = {}
    results: list[dict] = []
    for path, shard in zip(paths, shards, strict=True):
        for key in SAME:
            if shard.get(key) != first.get(key):
                raise AgentError(f"{path} ran with {key} {shard.get(key)!r}, "
                                 f"{paths[0]} with {first.get(key)!r}: not one run")
        mine = [Config(name, tuple(data["flags"])) for name, data in shard["configs"].items()]
        if mine != configs:
            raise AgentError(f"{path} has other configurations than {paths[0]}")
        for task in shard["tasks"]:
            if task in seen:
                raise AgentError(f"task {task} is in both {seen[task]} and {path}")
            seen[task] = path
        results += [r for data in shard["configs"].values() for r in data["tasks"]]
    return {
        "split": "merged",
        "tasks": list(seen),
        "budget": first.get("budget"),
        "fixer": first.get("fixer"),
        "code": first.get("code"),
        "shards": [str(p) for p in paths],
        "seconds": round(sum(s.get("seconds", 0.0) for s in shards), 2),
        "configs": report(results, configs),
    }
