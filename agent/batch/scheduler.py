"""Runs a batch's tickets: several in flight, one shared model, budgets shared fairly.

Each ticket runs `agent fix`'s orchestration (agent.pipeline.fix.run_fix) on its own thread,
`parallel` at a time: while one ticket drafts (the model's lock), the others' candidates run in
their sandboxes, so neither the model nor the workers wait on one ticket's critical path. Every
ticket gets at most `--budget` seconds, and under `--time-limit` at most its fair share of what is
left (the slots times the time left, over the tickets not started yet), so a hard ticket cannot
starve the rest; tickets that finish early leave their time to those after them.

Durability: the journal is written before and after every step that changes the world (running,
then the branch is committed by run_fix, then green). A ticket found `running` on resume, or
queued with its branch already there, is decided from the repository (agent.batch.recover).
"""

from __future__ import annotations

import ctypes
import queue
import threading
import time
import traceback
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import git
from greenpatch.agent.batch.board import Board, TicketView
from greenpatch.agent.batch.journal import Entry, Journal
from greenpatch.agent.batch.publish import publish_entry
from greenpatch.agent.batch.recover import existing_fix
from greenpatch.agent.config import Settings, load_settings
from greenpatch.agent.errors import EXIT_CANNOT_REPRODUCE, USER_ERRORS, AgentError
from greenpatch.agent.pipeline.fix import FixRequest, run_fix
from greenpatch.agent.pipeline.harness import target_python
from greenpatch.agent.pipeline.loop import Options
from greenpatch.agent.pipeline.reproduce import settings_baseline
from greenpatch.agent.publish.branch import default_branch_name
from greenpatch.agent.publish.github import token_from_env
from greenpatch.agent.repo import open_repo

# Under a time limit no ticket gets less than this (unless less is left): a slice too thin to
# reproduce the bug is wasted on every ticket alike.
MIN_SHARE = 30.0
# No new ticket starts with less than this left before the time limit.
MIN_START = 5.0
INTERRUPT_GRACE = 60.0
# Tickets in flight at once on this machine unless --parallel says otherwise: while one drafts
# (the model's lock), the other's candidates run in the sandbox.
LOCAL_PARALLEL = 2


@dataclass
class BatchOptions:
    budget: float | None = None  # per ticket; None: each repository's configured budget
    time_limit: float | None = None  # the whole batch, seconds
    # Tickets in flight at once; None: 2 here, on a cluster as many as its CPUs hold.
    parallel: int | None = None
    drafter: str = "model"
    model: Path | str | None = None  # a directory, or a model server's URL
    model_name: str | None = None  # which of the server's models
    sandbox: str | None = None
    workers: int | None = None
    pr: bool = False
    max_rounds: int = 4
    max_candidates: int = 2000
    seed: int = 0
    cluster: str | None = None  # "ray": each ticket a task on a node (agent.batch.cluster)
    ray_address: str | None = None  # auto, HOST:PORT or ray://HOST:PORT
    # On a cluster: how long past its budget a ticket may run before its task is cancelled.
    cancel_grace: float = 60.0


class TicketScheduler:
    def __init__(
        self,
        journal: Journal,
        options: BatchOptions,
        board: Board,
        lm: object | None = None,
        warn: Callable[[str], None] = lambda message: None,
        verbose: bool = False,
    ) -> None:
        self.journal = journal
        self.options = options
        self.board = board
        self.lm = lm
        self.warn = warn
        self.verbose = verbose
        self._done: queue.Queue[str] = queue.Queue()
        self._repo_locks: dict[Path, threading.Lock] = {}
        self._shared_repos: set[Path] = set()
        self._deadline: float | None = None
        # Tickets that run at once: what a fair share of the time left is computed over.
        self.slots = options.parallel or LOCAL_PARALLEL

    # --- budgets -----------------------------------------------------------------------------

    def _time_left(self) -> float | None:
        return None if self._deadline is None else self._deadline - time.monotonic()

    def budget_for(self, settings: Settings, not_started: int) -> float:
        """This ticket's budget: --budget (or the repo's), capped by its fair share of the time
        left when the batch has a time limit."""
        budget = self.options.budget or settings.budget
        left = self._time_left()
        if left is None:
            return budget
        share = left * self.slots / max(1, not_started)
        return max(1.0, min(budget, left, max(share, min(budget, MIN_SHARE))))

    # --- the batch ---------------------------------------------------------------------------

    def run(self, entries: list[Entry]) -> None:
        """Run every entry not final yet; returns when all are final, the time limit leaves no
        room to start another, or raises KeyboardInterrupt after stopping the running ones."""
        if self.options.time_limit is not None:
            self._deadline = time.monotonic() + self.options.time_limit
        pending = deque(e for e in entries if not e.final)
        per_repo = Counter(e.item.repo for e in pending)
        self._shared_repos = {repo for repo, n in per_repo.items() if n > 1}
        self._repo_locks = {repo: threading.Lock() for repo in per_repo}
        running: dict[str, threading.Thread] = {}
        try:
            while pending or running:
                left = self._time_left()
                while (
                    pending
                    and len(running) < self.slots
                    and (left is None or left > MIN_START)
                ):
                    entry = pending.popleft()
                    thread = threading.Thread(target=self._work, args=(entry, len(pending) + 1),
                                              name=f"ticket-{entry.id}", daemon=True)  # fmt: skip
                    running[entry.id] = thread
                    thread.start()
                if not running:
                    break  # the time limit leaves no room for the tickets still queued
                try:
                    finished = self._done.get(timeout=0.25)
                except queue.Empty:
                    continue
                running.pop(finished).join()
        except KeyboardInterrupt:
            self._interrupt(list(running.values()))
            raise

    def _interrupt(self, threads: list[threading.Thread]) -> None:
        """Ctrl-C reaches the main thread only: raise it in each ticket's thread too, so that
        its sandboxes and worktrees are cleaned up and its journal entry is settled."""
        for thread in threads:
            if thread.is_alive() and thread.ident is not None:
                ctypes.pythonapi.PyThreadState_SetAsyncExc(
                    ctypes.c_ulong(thread.ident), ctypes.py_object(KeyboardInterrupt)
                )
        end = time.monotonic() + INTERRUPT_GRACE
        for thread in threads:
            thread.join(timeout=max(0.0, end - time.monotonic()))

    # --- one ticket --------------------------------------------------------------------------

    def _work(self, entry: Entry, not_started: int) -> None:
        started = time.monotonic()
        try:
            self._attempt(entry, not_started, started)
        except KeyboardInterrupt:
            self._settle_interrupted(entry, started)
        except BaseException as exc:  # noqa: BLE001 - a ticket's crash must not end the batch
            if self.verbose:
                traceback.print_exc()
            self._finish(entry, "error", started, reason=f"internal error: "
                         f"{type(exc).__name__}: {exc}")  # fmt: skip
        finally:
            self._done.put(entry.id)

    def _finish(self, entry: Entry, state: str, started: float, **fields: object) -> None:
        self.journal.finish(entry.id, state, seconds=time.monotonic() - started, **fields)
        self.board.set(entry.id, state, stage=str(fields.get("reason") or fields.get("branch")
                                                  or ""))  # fmt: skip

    def _prepare(self, entry: Entry, started: float) -> tuple[git.Repo, Settings, str, str] | None:
        """(repo, settings, base, branch) to run `entry` on; None when it is settled already (a
        fix found in the repository, a repository that cannot be used)."""
        item = entry.item
        self.board.set(entry.id, "running", "checking the repository")
        try:
            repo = open_repo(item.repo)
            settings = load_settings(item.repo, sandbox=self.options.sandbox,
                                     workers=self.options.workers)  # fmt: skip
            base = repo.head.commit.hexsha
            branch = entry.branch or default_branch_name(item.ticket)
            found = existing_fix(repo, branch, item.ticket,
                                 entry.base if entry.state == "running" else None)  # fmt: skip
        except (git.GitError, ValueError, OSError) as exc:
            self._finish(entry, "error", started, reason=f"repository {item.repo}: {exc}")
            return None
        except USER_ERRORS as exc:
            self._finish(entry, "error", started, reason=str(exc))
            return None
        if found is not None:
            commit, where = found
            reason = (f"found in the repository: {where} {branch} already holds the fix "
                      "(an earlier run committed it)")  # fmt: skip
            self._finish(entry, "green", started, branch=branch, commit=commit, reason=reason)
            self._publish(entry.id)
            return None
        return repo, settings, base, branch

    def _attempt(self, entry: Entry, not_started: int, started: float) -> None:
        item = entry.item
        prepared = self._prepare(entry, started)
        if prepared is None:
            return
        repo, settings, base, branch = prepared
        budget = self.budget_for(settings, not_started)
        self.journal.start(entry.id, base, branch)
        try:
            self._prewarm(item.repo, settings)
            options = Options(
                budget=max(1.0, budget - (time.monotonic() - started)),
                max_rounds=self.options.max_rounds,
                max_candidates=self.options.max_candidates,
                seed=self.options.seed,
            )
            settings.budget = options.budget
            request = FixRequest(ticket=item.ticket, repo=repo, settings=settings,
                                 model=self.options.model, drafter=self.options.drafter,
                                 branch=branch, pr=False, options=options, lm=self.lm)  # fmt: skip
            report = run_fix(request, TicketView(self.board, entry.id, self.warn)).to_json()
        except AgentError as exc:
            state = "cannot-reproduce" if exc.code == EXIT_CANNOT_REPRODUCE else "error"
            self._finish(entry, state, started, reason=str(exc))
            return
        except USER_ERRORS as exc:
            self._finish(entry, "error", started, reason=str(exc))
            return
        if report["status"] == "green":
            # The fix may be on another name than asked (agent.publish.branch.commit_fix).
            self._finish(entry, "green", started, branch=report["branch"],
                         commit=report["commit"], report=report)  # fmt: skip
            self._publish(entry.id)
        else:
            reason = report.get("reason") or (
                f"no fix within {budget:.0f}s: {report['candidates']} candidates, "
                f"{report['tests_run']} tests, {report['rounds']} round(s)"
            )
            self._finish(entry, "failed", started, reason=reason, report=report)

    def _prewarm(self, root: Path, settings: Settings) -> None:
        """Tickets on one commit share its baseline: the first builds it (the others wait for
        it), the rest find it in the runner's cache instead of building it again side by side."""
        if root not in self._shared_repos:
            return
        with self._repo_locks[root]:
            settings_baseline(root, target_python(settings, root), settings)

    def _publish(self, ticket_id: str) -> None:
        if not self.options.pr:
            return
        entry = self.journal.get(ticket_id)
        self.board.set(ticket_id, stage=f"publishing {entry.branch}")
        done = publish_entry(open_repo(entry.item.repo), entry, token_from_env())
        self.journal.record_pr(ticket_id, done.pull_request, done.compare_url, done.error)
        if done.error:
            self.warn(f"{ticket_id}: {done.error}")
        self.board.set(ticket_id, stage=done.pull_request or done.compare_url or entry.branch)

    def _settle_interrupted(self, entry: Entry, started: float) -> None:
        """Stopped mid-run: green if its branch made it into the repository, else queued again."""
        current = self.journal.get(entry.id)
        if current.final:
            return
        try:
            found = existing_fix(open_repo(entry.item.repo), current.branch or "",
                                 entry.item.ticket, current.base)  # fmt: skip
        except (AgentError, git.GitError, ValueError):
            found = None
        if found is not None:
            self._finish(entry, "green", started, branch=current.branch, commit=found[0],
                         reason="interrupted after its branch was committed")  # fmt: skip
        elif current.state == "running":
            self.journal.requeue(entry.id, "interrupted", time.monotonic() - started)
            self.board.set(entry.id, "queued", "interrupted")

    def publish_pending(self) -> None:
        """On resume with --pr: green tickets whose pull request was not recorded yet."""
        for entry in self.journal.entries():
            unpublished = entry.pull_request is None and entry.compare_url is None
            if entry.state == "green" and unpublished:
                self._publish(entry.id)
