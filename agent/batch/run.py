"""A whole batch: open (or resume) the journal, load the backlog and the model once, run the
tickets, and build the report. `agent batch` is this plus flags and output files."""

from __future__ import annotations

import hashlib
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from greenpatch.agent.batch.board import Board
from greenpatch.agent.batch.journal import Journal
from greenpatch.agent.batch.report import batch_report
from greenpatch.agent.batch.scheduler import BatchOptions, TicketScheduler
from greenpatch.agent.batch.shared_model import shared_model
from greenpatch.agent.batch.sources import load_backlog
from greenpatch.agent.config import DRAFTERS, MODEL_FREE, SANDBOXES, check_cluster
from greenpatch.agent.errors import AgentError
from greenpatch.agent.output import Reporter
from greenpatch.agent.pipeline.harness import load_model
from greenpatch.agent.pipeline.remote_setup import connect_remote
from greenpatch.model.remote import RemoteModel, is_url
from greenpatch.sandboxes.cacheroot import cache_root
from rich.console import Console
from rich.markup import escape


def default_journal(cwd: Path | None = None) -> Path:
    """One journal per working directory, in the user's cache: `agent batch --resume` run
    where the batch was started finds it without being told."""
    key = hashlib.sha256(str((cwd or Path.cwd()).resolve()).encode()).hexdigest()[:16]
    return cache_root() / "batches" / f"{key}.sqlite"


@dataclass
class BatchRequest:
    backlog: str | None  # None only with resume: the journal knows it
    repo: Path | None = None
    # Flags as given (None: not given). On resume, what is not given comes from the journal.
    flags: dict[str, Any] = field(default_factory=dict)
    journal: Path | None = None
    resume: bool = False
    lm: object | None = None  # an already loaded model (else loaded once from flags)


def _normalized(spec: str) -> str:
    return " ".join(spec.split()) if spec.startswith("gh:") else str(Path(spec).resolve())


def _options(flags: dict[str, Any], stored: dict[str, Any] | None) -> BatchOptions:
    names = {f.name for f in fields(BatchOptions)}
    unknown = set(flags) - names
    if unknown:
        raise ValueError(f"unknown batch options: {sorted(unknown)}")
    values = {k: v for k, v in (stored or {}).items() if k in names}
    values.update({k: v for k, v in flags.items() if v is not None})
    if values.get("model") is not None and not is_url(values["model"]):
        values["model"] = Path(values["model"])
    options = BatchOptions(**values)
    if options.drafter not in DRAFTERS:
        raise AgentError(f"--drafter must be one of {', '.join(DRAFTERS)}, got '{options.drafter}'")
    if options.sandbox is not None and options.sandbox not in SANDBOXES:
        raise AgentError(
            f"--sandbox must be one of {', '.join(SANDBOXES)}, got '{options.sandbox}'"
        )
    check_cluster(options.cluster, options.ray_address)
    return options


def _stored(options: BatchOptions) -> dict[str, Any]:
    data = asdict(options)
    data["model"] = str(options.model) if options.model is not None else None
    return data


def warn_line(message: str, console: Console | None = None) -> None:
    """A warning on one line however long (a path in it stays whole for grep), on stderr even
    when quiet, through the live display's console while it runs."""
    (console or Console(stderr=True)).print(
        f"[yellow]warning:[/yellow] {escape(message)}", highlight=False, soft_wrap=True
    )


class Batch:
    """Set up with the constructor (journal, backlog, options), then `run()` once."""

    def __init__(self, request: BatchRequest, reporter: Reporter) -> None:
        self.reporter = reporter
        self.journal_path = Path(request.journal or default_journal())
        self.resume_hint = "agent batch --resume" + (
            f" --journal {self.journal_path}" if request.journal else ""
        )
        self.journal = Journal(self.journal_path)
        try:
            self._setup(request)
        except BaseException:
            self.journal.close()
            raise

    def _setup(self, request: BatchRequest) -> None:
        meta = self.journal.meta()
        entries = self.journal.entries()
        stored = meta.get("options") if request.resume else None
        spec = request.backlog
        repo = request.repo
        if request.resume and "backlog" in meta:
            if spec is not None and _normalized(spec) != meta["backlog"]:
                raise AgentError(
                    f"the journal {self.journal_path} is for the backlog {meta['backlog']}, "
                    f"not {spec}; pass --journal PATH for another batch"
                )
            spec = meta["backlog"]
            repo = repo or (Path(meta["repo"]) if meta.get("repo") else None)
        elif request.resume and spec is None:
            raise AgentError(f"nothing to resume: no batch in the journal {self.journal_path}")
        elif spec is None:
            raise AgentError(
                "missing BACKLOG (a folder, a .jsonl file or gh:OWNER/REPO label:NAME)"
            )
        elif entries and not all(e.final for e in entries):
            done = sum(1 for e in entries if e.final)
            raise AgentError(
                f"an unfinished batch ({done} of {len(entries)} tickets done, backlog "
                f"{meta.get('backlog')}) is in the journal {self.journal_path}: continue it "
                "with --resume, or pass --journal PATH to start another"
            )
        elif entries:
            self.journal.reset()  # the previous batch in this journal is finished
        self.options = _options(request.flags, stored)
        self.backlog = load_backlog(spec, repo)
        self.spec = _normalized(spec)
        self.journal.set_meta({
            "backlog": self.spec,
            "repo": str(repo.resolve()) if repo is not None else None,
            "options": _stored(self.options),
        })  # fmt: skip
        self.journal.add(self.backlog.tickets)
        for problem in self.backlog.problems:
            warn_line(f"skipped {problem}")
        self.lm = request.lm
        work = [e for e in self.journal.entries() if not e.final]
        if self.options.cluster and work:
            from greenpatch.runner.cluster import connect

            # Ray installed, the cluster reachable (else exit 2); the model loads on the nodes.
            connect(self.options.ray_address)
            return
        if self.options.drafter not in MODEL_FREE and work and is_url(self.options.model):
            # One server for every ticket: checked once here (unreachable, unknown model:
            # exit 2), its request cap shared by the tickets in flight.
            self.lm = connect_remote(str(self.options.model), self.options.model_name)
        if self.options.drafter not in MODEL_FREE and work and self.lm is None:
            self.lm = load_model(self.options.model, self.options.workers or 2)
        if self.lm is not None and not isinstance(self.lm, RemoteModel):
            self.lm = shared_model(self.lm)

    def run(self) -> dict[str, Any]:
        """Run what is not finished; the report (see agent.batch.report), with `interrupted`
        set when Ctrl-C or SIGTERM stopped it."""
        started = time.monotonic()
        board = Board()
        for entry in self.journal.entries():
            board.add(entry.id, entry.item.repo.name, entry.state, entry.reason, entry.seconds)
        seen: set[str] = set()
        live = not self.reporter.quiet

        def warn(message: str) -> None:
            if message not in seen:
                seen.add(message)
                warn_line(message, self.reporter.err if live else None)

        if self.options.cluster:
            from greenpatch.agent.batch.cluster import ClusterScheduler as kind
        else:
            kind = TicketScheduler
        scheduler = kind(self.journal, self.options, board, self.lm, warn, self.reporter.verbose)
        todo = sum(1 for e in self.journal.entries() if not e.final)
        self.reporter.info(
            f"{todo} of {len(board.rows)} tickets to run; journal {self.journal_path} "
            f"(if stopped: {self.resume_hint})"
        )
        interrupted = False
        try:
            with board.live(self.reporter.err, enabled=live):
                if self.options.pr:
                    scheduler.publish_pending()
                scheduler.run(self.journal.entries())
        except KeyboardInterrupt:
            interrupted = True
        report = batch_report(self.spec, self.journal.entries(), self.backlog.problems,
                              time.monotonic() - started, str(self.journal_path))  # fmt: skip
        report["interrupted"] = interrupted
        net = getattr(self.lm, "net", None)
        report["model"] = {
            "drafter": self.options.drafter,
            "forward_passes": getattr(net, "calls", 0),
            "forward_seconds": round(getattr(net, "busy", 0.0), 3),
        }
        return report

    def close(self) -> None:
        self.journal.close()
