"""What a fix tells the world: the typed report (its JSON is the CLI contract) and the events a
view subscribes to while it runs. The fix itself prints nothing: the terminal (agent fix), a
batch board row or nothing at all (bench, tests) is a view chosen by the caller."""

from __future__ import annotations

from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Protocol

from greenpatch.agent.pipeline.live import FixState

# Optional fields left out of the JSON while unset, as before there was a type for them.
_OPTIONAL = ("tests_confirmed", "reason", "first_candidate_seconds", "pull_request",
             "compare_url", "pr_body", "model_server", "error")  # fmt: skip


@dataclass
class FixReport:
    """One fix, as it stands: filled in while it runs, so a run stopped midway still reports
    what it did. Statuses: green, no-fix, error, interrupted, cannot-reproduce."""

    ticket: str
    status: str = "no-fix"
    branch: str | None = None  # where the fix was committed (the requested name if it was free)
    branch_requested: str | None = None
    commit: str | None = None
    diff: str = ""
    rounds: int = 0
    candidates: int = 0
    tests_run: int = 0
    seconds: float = 0.0
    failing_before: list[str] = field(default_factory=list)
    failing_after: list[str] = field(default_factory=list)
    targets: list[str] = field(default_factory=list)
    model: str = ""  # the drafter's name
    sandbox: str = ""
    busy: dict[str, float] = field(default_factory=dict)  # seconds each party was busy
    localization: list[dict[str, Any]] = field(default_factory=list)  # {path, line, score}
    baseline_complete: bool = False
    collect_errors: list[dict[str, Any]] = field(default_factory=list)
    validated: int = 0  # candidates whose tests finished
    phases: dict[str, float] = field(default_factory=dict)  # where the time went
    timeline: list[dict[str, Any]] = field(default_factory=list)  # {lane, start, end, kind, label}
    attempts: list[dict[str, Any]] = field(default_factory=list)  # every candidate and its fate
    tests_confirmed: dict[str, str] | None = None  # test -> outcome in the confirmation run
    reason: str | None = None  # why a run that drafted something is not green
    first_candidate_seconds: float | None = None
    pull_request: str | None = None
    compare_url: str | None = None
    pr_body: str | None = None
    model_server: dict[str, Any] | None = None  # requests, retries and tokens of a remote model
    error: str | None = None

    @property
    def green(self) -> bool:
        return self.status == "green"

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        head = {key: data.pop(key) for key in ("status", "ticket")}
        published = self.pr_body is not None  # then both places are said, found or not
        return {**head, **{k: v for k, v in data.items()
                           if k not in _OPTIONAL or v is not None
                           or published and k in ("pull_request", "compare_url")}}  # fmt: skip

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> FixReport:
        """A report read back (a batch journal's): unknown keys are dropped, missing ones
        take their defaults."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


@dataclass(frozen=True)
class Reproduced:
    """The targets fail at the base commit; drafting starts."""

    targets: int
    commit: str
    drafter: str

    def line(self) -> str:
        return (f"{self.targets} target test(s) fail at {self.commit[:10]}; "
                f"drafting with {self.drafter}")  # fmt: skip


@dataclass(frozen=True)
class Warned:
    text: str


@dataclass(frozen=True)
class Unpublished:
    """Green and pushed, but no pull request could be opened: the body is for a person to use."""

    body: str


FixEvent = Reproduced | Warned | Unpublished


class ProgressLike(Protocol):
    """The part of rich's Progress a fix drives (the baseline's stages, the model loading)."""

    def add_task(self, description: str, total: float | None = None, **kw: Any) -> Any: ...

    def update(self, task: Any, **kw: Any) -> None: ...


class FixView(Protocol):
    def progress(self) -> AbstractContextManager[ProgressLike]: ...

    def live(self, state: FixState) -> AbstractContextManager[object]: ...

    def event(self, event: FixEvent) -> None: ...
