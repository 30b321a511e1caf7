"""`agent batch --cluster ray`: each ticket a Ray task on a node with the CPUs it asks for.

    driver (this process)                              a node (a Ray task, `run_ticket`)
    journal: running (base, branch)
    the base commit as a git bundle, put in  ───────►  a clone of it (objects only: none of the
    Ray's object store once per commit                 user's config or hooks); `agent fix`'s
                                                       run_fix in the node's sandboxes, its model
                                                       loaded there once (or a server's URL)
    the fix commit's objects, a branch made  ◄───────  the ticket's JSON record + a bundle of the
    next to it (never over another), journal:          fix branch (green) or the reason (not)
    final, then the pull request

The driver alone writes the journal and alone makes branches and pull requests: a node only
returns data, so a task Ray runs twice (its node died) leaves nothing twice. Failures:
- a node dies mid-ticket: Ray runs the task again on another node (`max_retries`); the journal
  notes each attempt's node, the ticket gets one result;
- the driver dies: Ray ends the tasks it owned; `agent batch --resume` takes the journal up;
- a ticket still running `cancel_grace` seconds past its budget: its task is cancelled (the
  worker process killed, its sandboxes with it) and the ticket is failed.
The ticket asks for as many CPUs as its test workers (`--workers` or the repository's setting);
the driver hands Ray no more tickets than the live nodes' CPUs hold, so `running` in the journal
means running on a node, and a node lost shrinks what is handed out.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import time
import traceback
import uuid
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from greenpatch.agent.batch.board import TicketView
from greenpatch.agent.batch.journal import Entry
from greenpatch.agent.batch.recover import cites
from greenpatch.agent.batch.scheduler import MIN_START, TicketScheduler
from greenpatch.agent.batch.sources import BatchTicket
from greenpatch.agent.config import MODEL_FREE, load_settings
from greenpatch.agent.errors import EXIT_CANNOT_REPRODUCE, USER_ERRORS, AgentError
from greenpatch.agent.pipeline.fix import FixRequest, run_fix
from greenpatch.agent.pipeline.loop import Options
from greenpatch.agent.publish.branch import place_commit
from greenpatch.agent.repo import open_repo
from greenpatch.runner.cluster import (
    Notes,
    alive_nodes,
    bundle_branch,
    bundle_commit,
    connect,
    unpack_branch,
)
from greenpatch.runner.cluster import unpack_commit as _unpack_commit

# Ray runs a task again when its node (or worker process) dies: this many times at most.
NODE_RETRIES = 3
NODES_EVERY = 2.0  # seconds between looks at which nodes are alive
NOTES_WAIT = 2.0  # seconds the driver waits for the notes at most, once a loop
NOTE_EVERY = 0.5  # a node reports a ticket's stage at most this often (the last one always)

# --- the node's side -----------------------------------------------------------------------------

_MODELS: dict[str, Any] = {}  # loaded once per Ray worker process, for every ticket it runs


def _node_model(job: dict[str, Any]) -> object | None:
    """The ticket's model on this node: a server's URL connected to, or a checkpoint loaded
    once per worker process (the embedded one when none is named)."""
    from greenpatch.model.remote import is_url

    if job["drafter"] in MODEL_FREE:
        return None
    model = job["model"]
    if is_url(model):
        from greenpatch.agent.pipeline.remote_setup import connect_remote

        return connect_remote(model, job["model_name"])
    key = str(model)
    if key not in _MODELS:
        import torch
        from greenpatch.agent.batch.shared_model import shared_model
        from greenpatch.model.checkpoint import load_model

        # The ticket's CPUs, not the node's: other tickets run beside it.
        torch.set_num_threads(max(1, job["cpus"]))
        _MODELS[key] = shared_model(load_model(Path(model) if model else None))
    return _MODELS[key]


class _Notes:
    """What TicketView calls a board: stages go to the driver's Notes actor, throttled."""

    def __init__(self, progress: Any, ticket_id: str, node: str, attempt: str) -> None:
        self.progress, self.ticket_id, self.node, self.attempt = progress, ticket_id, node, attempt
        self._last = 0.0

    def send(self, stage: str, force: bool = False) -> None:
        now = time.monotonic()
        if self.progress is None or (not force and now - self._last < NOTE_EVERY):
            return
        self._last = now
        with contextlib.suppress(Exception):  # progress is a nicety: never fail a ticket on it
            self.progress.note.remote(self.ticket_id, self.node, self.attempt, stage)

    def set(self, ticket_id: str, state: str | None = None, stage: str | None = None) -> None:
        if stage:
            self.send(stage)


def run_ticket(job: dict[str, Any], bundle: bytes, progress: Any = None) -> dict[str, Any]:
    """One ticket on this node (a Ray task): clone the bundle, run the fix, return the result.

    `job` is what the driver decided (ticket record, base, branch, budget, drafter, model...).
    Returns {state, reason, report, bundle (green only), node, timings}; errors of the ticket
    (cannot reproduce, bad configuration) are results, not exceptions."""
    import ray

    began = time.monotonic()
    began_at = time.time()
    node = ray.get_runtime_context().get_node_id()
    notes = _Notes(progress, job["id"], node, uuid.uuid4().hex[:8])
    notes.send("started", force=True)
    tmp = Path(tempfile.mkdtemp(prefix="greenpatch-ray-"))
    result: dict[str, Any] = {"node": node, "state": "error", "reason": "", "report": None,
                              "began_at": began_at, "attempt": notes.attempt}  # fmt: skip
    try:
        root = _unpack_commit(bundle, tmp / "repo", job["base"])
        result["unpack_seconds"] = round(time.monotonic() - began, 4)
        item = BatchTicket.from_record({**job["record"], "repo": str(root)})
        settings = load_settings(root, sandbox=job["sandbox"], workers=job["workers"])
        settings.budget = job["budget"]
        options = Options(budget=job["budget"], max_rounds=job["max_rounds"],
                          max_candidates=job["max_candidates"], seed=job["seed"])  # fmt: skip
        request = FixRequest(ticket=item.ticket, repo=open_repo(root), settings=settings,
                             model=None, drafter=job["drafter"], branch=job["branch"], pr=False,
                             options=options, lm=_node_model(job))  # fmt: skip
        reporter = TicketView(notes, job["id"], lambda message: notes.send(message, True))
        fixing = time.monotonic()
        try:
            report = run_fix(request, reporter).to_json()
        except AgentError as exc:
            state = "cannot-reproduce" if exc.code == EXIT_CANNOT_REPRODUCE else "error"
            result.update(state=state, reason=str(exc))
            return result
        except USER_ERRORS as exc:
            result.update(state="error", reason=str(exc))
            return result
        finally:
            result["fix_seconds"] = round(time.monotonic() - fixing, 4)
        result["report"] = report
        if report["status"] == "green":
            result["state"] = "green"
            result["bundle"] = bundle_branch(root, report["branch"], job["base"])
        else:
            result["state"] = "failed"
            result["reason"] = report.get("reason") or (
                f"no fix within {job['budget']:.0f}s: {report['candidates']} candidates, "
                f"{report['tests_run']} tests, {report['rounds']} round(s)"
            )
        return result
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        result["task_seconds"] = round(time.monotonic() - began, 4)
        notes.send("done", force=True)


# --- the driver's side ---------------------------------------------------------------------------


@dataclass
class _Flight:
    entry: Entry
    ref: Any
    base: str
    branch: str
    budget: float
    cpus: int
    submitted: float
    ship_seconds: float
    shipped_bytes: int
    attempts: list[tuple[str, str]] = field(default_factory=list)  # (attempt, node)
    attempt_started: float | None = None
    submitted_at: float = 0.0  # wall clock: the node's start is told in wall-clock time


class ClusterScheduler(TicketScheduler):
    """The batch's tickets as Ray tasks (see the module docstring); same journal, board and
    publishing as the local TicketScheduler, whose checks before a ticket runs it shares."""

    def run(self, entries: list[Entry]) -> None:
        ray = connect(self.options.ray_address)
        self._ray = ray
        if self.options.time_limit is not None:
            self._deadline = time.monotonic() + self.options.time_limit
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        # Pinned to the head (the cluster ends with it anyway): a worker node lost takes no
        # notes with it, not even the one this driver happens to be attached to.
        head = next((n["NodeID"] for n in ray.nodes() if n.get("Alive")
                     and "node:__internal_head__" in n.get("Resources", {})),
                    ray.get_runtime_context().get_node_id())  # fmt: skip
        self._progress = ray.remote(Notes).options(
            num_cpus=0, scheduling_strategy=NodeAffinitySchedulingStrategy(head, soft=True)
        ).remote()  # fmt: skip
        self._task = ray.remote(run_ticket)
        self._bundles: dict[tuple[Path, str], tuple[Any, int, float]] = {}
        self._names: dict[str, str] = {}
        self._prepared_in: dict[str, float] = {}
        self._nodes: list[dict[str, Any]] = []
        self._looked = 0.0
        pending = deque(e for e in entries if not e.final)
        flights: dict[Any, _Flight] = {}
        held: tuple[Entry, float, tuple] | None = None  # prepared, waiting for free CPUs
        try:
            while pending or flights or held:
                self._look_at_nodes(flights)
                free = sum(n["cpus"] for n in self._nodes) - sum(f.cpus for f in flights.values())
                left = self._time_left()
                while ((held or (pending and free > 0)) and self._room_for_one(flights)
                       and (left is None or left > MIN_START)):
                    if held is None:
                        entry = pending.popleft()
                        started = time.monotonic()
                        prepared = self._prepare(entry, started)
                        if prepared is None:
                            continue
                        held = (entry, started, prepared)
                    cpus = max(1, held[2][1].workers)
                    biggest = max((n["cpus"] for n in self._nodes), default=0)
                    if self._nodes and cpus > biggest:
                        self._finish(held[0], "error", held[1], reason=(
                            f"asks for {cpus} CPUs (its test workers) and the largest live node "
                            f"has {biggest}: lower --workers"))  # fmt: skip
                        held = None
                        continue
                    if cpus > free:
                        self.board.set(held[0].id, "queued", f"waiting for {cpus} free CPUs")
                        break
                    flight = self._submit(*held, not_started=len(pending) + 1)
                    flights[flight.ref] = flight
                    free -= flight.cpus
                    held = None
                if not flights:
                    if held is None and not pending:
                        break
                    if left is not None and left <= MIN_START:
                        if held is not None:  # no room left for it: it stays queued
                            self.board.set(held[0].id, "queued", "not started (time limit)")
                        break
                    self._wait_for_nodes(held)
                    continue
                ready, _ = ray.wait(list(flights), num_returns=1, timeout=0.5)
                self._read_notes(flights)
                for ref in ready:
                    self._land(flights.pop(ref))
                self._cancel_overdue(flights)
        except KeyboardInterrupt:
            for flight in flights.values():
                with contextlib.suppress(Exception):
                    ray.cancel(flight.ref, force=True)
                self._settle_interrupted(flight.entry, flight.submitted)
            if held is not None:
                self._settle_interrupted(held[0], held[1])
            raise
        finally:
            with contextlib.suppress(Exception):
                ray.kill(self._progress)

    def _room_for_one(self, flights: dict[Any, _Flight]) -> bool:
        """--parallel caps the tickets in flight; without it, free CPUs alone do."""
        return self.options.parallel is None or len(flights) < self.options.parallel

    # --- nodes -------------------------------------------------------------------------------

    def _look_at_nodes(self, flights: dict[Any, _Flight]) -> None:
        now = time.monotonic()
        if now - self._looked < NODES_EVERY and self._nodes:
            return
        self._looked = now
        self._nodes = alive_nodes(self._ray)
        # Tickets at once, for the fair share under --time-limit (CPUs over a ticket's ask).
        self.slots = max(1, sum(n["cpus"] for n in self._nodes) // (self.options.workers or 1))
        if self.options.parallel is not None:
            self.slots = min(self.slots, self.options.parallel)
        self._names.update({n["id"]: f"{n['address']}/{n['id'][:8]}" for n in self._nodes})
        cpus = sum(n["cpus"] for n in self._nodes)
        # The table's caption counts tickets by state (running, green, failed...).
        self.board.where = f"on ray: {len(self._nodes)} live nodes, {cpus} CPUs"

    def _wait_for_nodes(self, held: tuple | None) -> None:
        """Nothing runs and the next ticket does not fit: wait for a node to join (a cluster
        that scales up), saying so once."""
        if held is not None:
            cpus = max(1, held[2][1].workers)
            self.warn(f"waiting for a live node with {cpus} free CPU(s) for {held[0].id}")
        elif not self._nodes:
            self.warn("waiting for a live node with CPUs to join the Ray cluster")
        time.sleep(0.5)

    def _node(self, node_id: str) -> str:
        return self._names.get(node_id, node_id[:8])

    # --- one ticket --------------------------------------------------------------------------

    def _prepare(self, entry: Entry, started: float) -> tuple | None:
        began = time.monotonic()
        try:
            return super()._prepare(entry, started)
        finally:  # the driver's own time per ticket (git look-ups), for the cluster's facts
            self._prepared_in[entry.id] = time.monotonic() - began

    def _shipped(self, root: Path, base: str) -> tuple[Any, int, float]:
        """The base commit's bundle in the object store: made and put once per commit."""
        key = (root, base)
        if key not in self._bundles:
            began = time.monotonic()
            bundle = bundle_commit(root, base)
            self._bundles[key] = (self._ray.put(bundle), len(bundle), time.monotonic() - began)
        return self._bundles[key]

    def _submit(self, entry: Entry, started: float, prepared: tuple, not_started: int) -> _Flight:
        repo, settings, base, branch = prepared
        budget = self.budget_for(settings, not_started)
        started = time.monotonic()  # a ticket held for CPUs starts its clock now
        self.journal.start(entry.id, base, branch)
        self.board.set(entry.id, "running", "shipping the commit")
        ref, size, ship_seconds = self._shipped(Path(repo.working_tree_dir), base)
        cpus = max(1, settings.workers)
        job = {
            "id": entry.id, "record": entry.item.to_record(), "base": base, "branch": branch,
            "budget": max(1.0, budget - (time.monotonic() - started)),
            "sandbox": self.options.sandbox, "workers": self.options.workers, "cpus": cpus,
            "drafter": self.options.drafter,
            "model": None if self.options.model is None else str(self.options.model),
            "model_name": self.options.model_name, "max_rounds": self.options.max_rounds,
            "max_candidates": self.options.max_candidates, "seed": self.options.seed,
        }  # fmt: skip
        task = self._task.options(num_cpus=cpus, max_retries=NODE_RETRIES, retry_exceptions=False,
                                  name=f"greenpatch:{entry.id}")  # fmt: skip
        self.board.set(entry.id, stage="waiting for a node")
        flight = _Flight(entry, task.remote(job, ref, self._progress), base, branch,
                         job["budget"], cpus, started, ship_seconds, size)  # fmt: skip
        flight.submitted_at = time.time()
        return flight

    def _read_notes(self, flights: dict[Any, _Flight]) -> None:
        """The nodes' notes: waited for briefly (the actor may be starting), never long, so
        results are landed however slow the notes are."""
        try:
            notes = self._ray.get(self._progress.drain.remote(), timeout=NOTES_WAIT)
        except Exception:  # noqa: BLE001 - progress is a nicety; results come by the task
            return
        by_id = {f.entry.id: f for f in flights.values()}
        for ticket_id, node, attempt, stage in notes:
            flight = by_id.get(ticket_id)
            if flight is None:
                continue
            if not flight.attempts or flight.attempts[-1][0] != attempt:
                self._attempt_on(flight, attempt, node)
            if stage not in ("started", "done"):
                self.board.set(ticket_id, stage=f"{self._node(node)}: {stage}")
            elif stage == "started":
                self.board.set(ticket_id, stage=f"{self._node(node)}: started")

    def _attempt_on(self, flight: _Flight, attempt: str, node: str, how: str = "") -> None:
        """A new attempt of the ticket, on `node`: after the first, Ray runs it again because
        its node (or worker) died; each is counted and noted in the journal."""
        ticket_id = flight.entry.id
        if flight.attempts:
            lost = self._node(flight.attempts[-1][1])
            self.journal.start(ticket_id, flight.base, flight.branch)
            self.warn(f"{ticket_id}: node {lost} lost mid-ticket; running it again")
        flight.attempts.append((attempt, node))
        flight.attempt_started = time.monotonic()
        self.journal.note(ticket_id, "node",
                          f"attempt {len(flight.attempts)} on {self._node(node)}{how}")

    def _cancel_overdue(self, flights: dict[Any, _Flight]) -> None:
        now = time.monotonic()
        for ref, flight in list(flights.items()):
            # From its start on a node (a retry starts afresh); without word from the node, from
            # its submission (handed out only when CPUs are free, it starts about then).
            began = flight.attempt_started or flight.submitted
            if now - began <= flight.budget + self.options.cancel_grace:
                continue
            with contextlib.suppress(Exception):
                self._ray.cancel(ref, force=True)
            del flights[ref]
            node = self._node(flight.attempts[-1][1]) if flight.attempts else "?"
            self._finish(flight.entry, "failed", flight.submitted, reason=(
                f"cancelled on {node}: still running {now - began:.0f}s into a "
                f"{flight.budget:.0f}s budget"))  # fmt: skip

    def _land(self, flight: _Flight) -> None:
        """A task's result: the ticket's final state, its branch made here when green."""
        entry = flight.entry
        ray = self._ray
        try:
            result = ray.get(flight.ref)
        except ray.exceptions.TaskCancelledError:
            return  # settled by whoever cancelled it
        except ray.exceptions.RayTaskError as exc:
            if self.verbose:
                traceback.print_exc()
            cause = exc.cause if getattr(exc, "cause", None) is not None else exc
            self._finish(entry, "error", flight.submitted, reason=(
                f"internal error on a node: {type(cause).__name__}: {_last_line(cause)}"))
            return
        except ray.exceptions.RayError as exc:  # the node died, every retry too
            self._finish(entry, "error", flight.submitted, reason=(
                f"lost {len(flight.attempts)} node(s) running it: {_last_line(exc)}"))
            return
        if not flight.attempts or flight.attempts[-1][0] != result["attempt"]:
            # Done before its node's word about this attempt came: noted all the same.
            self._attempt_on(flight, result["attempt"], result["node"], " (told with its result)")
        report = result.get("report")
        if report is not None:
            report["cluster"] = self._facts(flight, result)
        if result["state"] != "green":
            self._finish(entry, result["state"], flight.submitted, reason=result["reason"],
                         report=report)  # fmt: skip
            return
        began = time.monotonic()
        try:
            commit, branch = self._adopt(entry, flight, result["bundle"], report["branch"])
        except (AgentError, OSError) as exc:
            self._finish(entry, "error", flight.submitted, reason=str(exc), report=report)
            return
        except USER_ERRORS as exc:
            self._finish(entry, "error", flight.submitted, reason=str(exc), report=report)
            return
        report["cluster"]["adopt_seconds"] = round(time.monotonic() - began, 4)
        report["cluster"]["driver_seconds"] = round(time.monotonic() - flight.submitted, 4)
        report.update(branch=branch, commit=commit)
        self._finish(entry, "green", flight.submitted, branch=branch, commit=commit,
                     report=report)  # fmt: skip
        self._publish(entry.id)

    def _facts(self, flight: _Flight, result: dict[str, Any]) -> dict[str, Any]:
        """Where and how the ticket ran, what went over the wire, the cluster's own time."""
        return {
            "node": self._node(result["node"]),
            "attempts": max(1, len(flight.attempts)),
            "shipped_bytes": flight.shipped_bytes,
            "returned_bytes": len(result.get("bundle") or b""),
            "prepare_seconds": round(self._prepared_in.get(flight.entry.id, 0.0), 4),
            "ship_seconds": round(flight.ship_seconds, 4),
            # Submission to the task's start on its node (clocks of two machines: approximate
            # on a real cluster); a new worker process of a node pays its imports here once.
            "start_seconds": round(result["began_at"] - flight.submitted_at, 4),
            "unpack_seconds": result.get("unpack_seconds"),
            "fix_seconds": result.get("fix_seconds"),
            "task_seconds": result.get("task_seconds"),
            "driver_seconds": round(time.monotonic() - flight.submitted, 4),
        }

    def _adopt(self, entry: Entry, flight: _Flight, bundle: bytes, node_branch: str
               ) -> tuple[str, str]:  # fmt: skip
        """The node's fix commit into the user's repository: objects first (no ref touched),
        checked to be one commit on the base that cites the ticket, then a new branch at it."""
        root = entry.item.repo
        heads = unpack_branch(root, bundle)
        sha = heads.get(f"refs/heads/{node_branch}")
        if sha is None:
            raise AgentError(f"the node's result holds no branch {node_branch}")
        repo = open_repo(root)
        commit = repo.commit(sha)
        if [p.hexsha for p in commit.parents] != [flight.base] or not cites(commit,
                                                                            entry.item.ticket):
            raise AgentError(f"the node's branch {node_branch} is not one fix commit on "
                             f"{flight.base[:12]}")  # fmt: skip
        return sha, place_commit(repo, sha, flight.branch)


def _last_line(exc: BaseException) -> str:
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    return lines[-1] if lines else type(exc).__name__
