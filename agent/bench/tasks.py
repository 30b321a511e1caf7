"""A task: an injected bug in one pinned library, frozen as a JSON record. The record is a
recipe: copy the cached pristine repo, put the buggy text at the recorded byte range, commit.
A compound task (`more_sites`) holds further bugs of other tasks, each at its own range."""

from __future__ import annotations

import dataclasses
import difflib
import json
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from greenpatch.agent.bench.libraries import get_library, git, pristine_repo
from greenpatch.agent.errors import AgentError

TASKS_FILE = Path(__file__).resolve().parents[2] / "benchmarks" / "bugs" / "tasks.jsonl"


@dataclass
class Task:
    id: str
    library: str
    version: str
    file: str
    start_byte: int
    end_byte: int
    start_line: int
    end_line: int
    original: str  # the pristine text of the range: the reference fix puts it back
    buggy: str
    kind: str
    failing_tests: list[str]
    ticket_test: str
    ticket: str
    reference_fix: str  # unified diff, buggy -> pristine; hidden from the fixer
    difficulty: str
    split: str
    distance: int = 3  # 0 bug line in the ticket test's traceback ... 3 not even its file
    fix_tokens: int = 0
    extra: dict = field(default_factory=dict)
    # Further bug sites: {file, start_byte, end_byte, start_line, end_line, original, buggy, kind}
    more_sites: list[dict] = field(default_factory=list)

    def sites(self) -> list[dict]:
        """Every bug site of the task, its own first."""
        keys = ("file", "start_byte", "end_byte", "start_line", "end_line", "original", "buggy",
                "kind")  # fmt: skip
        return [{k: getattr(self, k) for k in keys}, *self.more_sites]

    @classmethod
    def from_dict(cls, data: dict) -> Task:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def load_tasks(path: Path = TASKS_FILE) -> list[Task]:
    if not path.is_file():
        raise AgentError(f"task file not found: {path}")
    tasks = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            tasks.append(Task.from_dict(json.loads(line)))
        except (json.JSONDecodeError, TypeError) as exc:
            raise AgentError(f"{path}:{number}: not a task record ({exc})") from None
    return tasks


def buggy_source(task: Task, path: str, pristine: bytes) -> bytes:
    """File `path` with the task's bugs in it; refuses if the pristine text is not where
    recorded."""
    sites = sorted((s for s in task.sites() if s["file"] == path), key=lambda s: -s["start_byte"])
    for site in sites:  # back to front: earlier byte offsets stay valid
        a, z = site["start_byte"], site["end_byte"]
        if pristine[a:z].decode("utf-8", "replace") != site["original"]:
            raise AgentError(f"task {task.id}: {path} does not match the recorded pristine text")
        pristine = pristine[:a] + site["buggy"].encode() + pristine[z:]
    return pristine


def build_task_repo(task: Task, dest: Path) -> Path:
    """A git repo at `dest`: the pristine commit, then the "buggy" commit on top (checked out)."""
    if dest.exists():
        raise AgentError(f"task repo destination already exists: {dest}")
    source = pristine_repo(get_library(task.library))
    shutil.copytree(source, dest, symlinks=True)
    for path in dict.fromkeys(site["file"] for site in task.sites()):
        target = dest / path
        target.write_bytes(buggy_source(task, path, target.read_bytes()))
    git(dest, "commit", "-q", "-a", "-m", f"buggy: {task.id}")
    return dest


def reference_diff(path: str, buggy: bytes, fixed: bytes) -> str:
    lines = difflib.unified_diff(
        buggy.decode().splitlines(keepends=True),
        fixed.decode().splitlines(keepends=True),
        fromfile=f"a/{path}",
        tofile=f"b/{path}",
    )
    return "".join(lines)


def token_count(text: str) -> int:
    return len(re.findall(r"\w+|[^\w\s]+", text))


def difficulty_class(distance: int, n_failing: int, fix_tokens: int) -> str:
    """Harder when the failure shows far from the bug, few tests notice it, and the fix is long."""
    score = distance + (1 if n_failing <= 2 else 0) + (1 if fix_tokens > 5 else 0)
    return "easy" if score <= 1 else "medium" if score <= 3 else "hard"
