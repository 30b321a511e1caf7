"""Tests sharded over a Ray cluster: one warm Pool per node, chunks to whichever node is free.

    with ClusterPool(root, commit, "auto", pool_args) as cluster:   # one actor per node
        for result in cluster.run(files, tests):                    # TestResult as chunks end
            ...

The commit goes to the nodes as a git bundle, put once in Ray's object store (each node fetches
it once, however many actors or tasks read it). Each node's actor unpacks it into a clone of its
own and starts a `Pool` there: the same sandboxed warm workers as a local run, so everything of
the repository runs in the node's sandboxes. Chunks of the selected tests go to the actors as
they free up (two in flight each, so a node never idles between chunks); a chunk whose node died
is handed to another node. Ray is an optional dependency: `connect` says how to install it.
"""

from __future__ import annotations

import contextlib
import logging
import math
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import astuple, dataclass, field
from pathlib import Path
from typing import Any

from greenpatch.runner.errors import RunnerError
from greenpatch.runner.pool import Job, Pool
from greenpatch.runner.results import TestResult
from greenpatch.sandboxes import safegit

RAY_HINT = "--cluster ray needs Ray: pip install 'ray==2.60.0'"
# Chunks per worker of the whole cluster: small enough that a slow node does not hold the end of
# the run, large enough that the round trip per chunk (tens of ms) stays small.
CHUNKS_PER_WORKER = 4
IN_FLIGHT_PER_NODE = 2
START_TIMEOUT = 300.0
CONNECT_TIMEOUT = 10.0


def connect(address: str | None) -> Any:
    """The `ray` module, connected to the cluster at `address` ('auto', HOST:PORT, ray://...).
    RunnerError (exit 2) when Ray is not installed or the cluster cannot be reached."""
    try:
        import ray
    except ImportError:
        raise RunnerError(RAY_HINT) from None
    if ray.is_initialized():
        return ray
    where = address or "auto"
    _check_reachable(where if where != "auto" else _auto_address())
    _errors_to_stderr()
    try:
        # The nodes' own output stays in their logs: `--json -` keeps stdout for the JSON.
        ray.init(address=where, logging_level=logging.ERROR, log_to_driver=False)
    except (ConnectionError, ValueError, RuntimeError, TimeoutError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise RunnerError(f"cannot connect to the Ray cluster at {where}: {first}") from None
    return ray


def _errors_to_stderr() -> None:
    """Ray's driver prints the cluster's error messages ("Task ... failed, retrying") to
    standard output whatever log_to_driver says; `--json -` owns standard output, so they go
    to standard error (pinned Ray: its own printer, called with the error flag set)."""
    from ray._private import worker

    printer = getattr(worker, "print_to_stdstream", None)
    if printer is None or getattr(printer, "greenpatch", False):
        return

    def to_stderr(data: dict, ignore_prefix: bool) -> None:
        printer({**data, "is_err": True}, ignore_prefix)

    to_stderr.greenpatch = True  # type: ignore[attr-defined]
    worker.print_to_stdstream = to_stderr


def _auto_address() -> str:
    """What `auto` means to Ray here (RAY_ADDRESS, else the cluster this machine runs)."""
    from ray._private import services  # pinned Ray: its own lookup, not a guess of ours

    try:
        found = services.canonicalize_bootstrap_address("auto")
    except (ConnectionError, ValueError) as exc:
        raise RunnerError(f"no Ray cluster found: {_one_line(exc)}") from None
    if not found:
        raise RunnerError("no Ray cluster found: start one (ray start --head) or pass "
                          "--ray-address HOST:PORT")  # fmt: skip
    return found


def _check_reachable(address: str) -> None:
    """HOST:PORT and ray://HOST:PORT answer a TCP connection within seconds, else RunnerError:
    ray.init itself keeps retrying an address that does not answer for minutes."""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=CONNECT_TIMEOUT):
            return
    except ValueError:
        raise RunnerError(
            f"--ray-address must be auto, HOST:PORT or ray://HOST:PORT, got '{address}'"
        ) from None
    except OSError as exc:
        why = exc.strerror or type(exc).__name__
        raise RunnerError(f"cannot connect to the Ray cluster at {address}: {why}") from None


def alive_nodes(ray: Any) -> list[dict[str, Any]]:
    """The cluster's live nodes that have CPUs: {id, address, cpus}."""
    nodes = []
    for node in ray.nodes():
        cpus = int(node.get("Resources", {}).get("CPU", 0))
        if node.get("Alive") and cpus > 0:
            nodes.append({"id": node["NodeID"], "address": node["NodeManagerAddress"],
                          "cpus": cpus})  # fmt: skip
    return nodes


# --- shipping the code ---------------------------------------------------------------------------


def _git(cwd: Path, *args: str, env: dict[str, str] | None = None) -> bytes:
    done = subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, check=False)
    if done.returncode != 0:
        why = (done.stderr.decode(errors="replace").strip().splitlines() or ["?"])[-1]
        raise RunnerError(f"git {args[0]} failed in {cwd}: {why}")
    return done.stdout


def bundle_commit(root: Path, commit: str) -> bytes:
    """A git bundle holding `commit` (HEAD of `root`) and its history, to clone from on a node.

    git bundles refs, not bare commits: HEAD is bundled, and checked to still be `commit` (the
    user may have committed meanwhile). No hook or filter of the repository runs (safegit)."""
    env = safegit.environment(root)
    with tempfile.TemporaryDirectory(prefix="greenpatch-bundle-") as tmp:
        path = Path(tmp) / "commit.bundle"
        _git(root, "bundle", "create", "--quiet", str(path), "HEAD", env=env)
        heads = _git(root, "bundle", "list-heads", str(path), env=env).decode().split()
        if commit not in heads:
            raise RunnerError(
                f"HEAD of {root} moved away from {commit[:12]} while it was being shipped"
            )
        return path.read_bytes()


def unpack_commit(bundle: bytes, dest: Path, commit: str) -> Path:
    """A fresh repository at `dest` with `commit` checked out (detached), from `bundle`.

    Only objects come over: none of the user's config, hooks or other branches."""
    dest.mkdir(parents=True, exist_ok=True)
    path = dest.parent / f"{dest.name}.bundle"
    path.write_bytes(bundle)
    try:
        env = safegit.environment(dest.parent)
        _git(dest, "init", "--quiet", env=env)
        _git(dest, "fetch", "--quiet", "--no-write-fetch-head", str(path), "HEAD", env=env)
        _git(dest, "-c", "advice.detachedHead=false", "checkout", "--quiet", "--detach", commit,
             env=env)  # fmt: skip
    finally:
        path.unlink(missing_ok=True)
    return dest


def unpack_branch(root: Path, bundle: bytes) -> dict[str, str]:
    """Store a branch bundle's objects in `root` without touching any ref; {ref: sha} it holds."""
    env = safegit.environment(root)
    with tempfile.TemporaryDirectory(prefix="greenpatch-bundle-") as tmp:
        path = Path(tmp) / "branch.bundle"
        path.write_bytes(bundle)
        _git(root, "bundle", "verify", "--quiet", str(path), env=env)
        listed = _git(root, "bundle", "unbundle", str(path), env=env).decode().splitlines()
    heads = {}
    for line in listed:
        sha, _, ref = line.partition(" ")
        heads[ref.strip()] = sha.strip()
    return heads


def bundle_branch(root: Path, branch: str, base: str) -> bytes:
    """A git bundle of `branch`'s commits on top of `base` (which the receiver has)."""
    env = safegit.environment(root)
    with tempfile.TemporaryDirectory(prefix="greenpatch-bundle-") as tmp:
        path = Path(tmp) / "branch.bundle"
        _git(root, "bundle", "create", "--quiet", str(path), f"refs/heads/{branch}", f"^{base}",
             env=env)  # fmt: skip
        return path.read_bytes()


# --- the node's side -----------------------------------------------------------------------------


class NodeRunner:
    """One node's share: a clone of the commit and a warm Pool on it (a Ray actor)."""

    def __init__(self, bundle: bytes, commit: str, pool_args: dict[str, Any]) -> None:
        self.tmp = Path(tempfile.mkdtemp(prefix="greenpatch-ray-"))
        try:
            root = unpack_commit(bundle, self.tmp / "repo", commit)
            self.pool = Pool(root, commit=commit, **pool_args)
            self.pool.start()
        except BaseException:
            shutil.rmtree(self.tmp, ignore_errors=True)
            raise

    def ready(self) -> str | None:
        """The sandbox's warning, if any, once the workers are warm."""
        return self.pool.warning

    def collect(self) -> tuple[list[str], list[dict]]:
        return self.pool.collect()

    def run(self, chunk_id: str, files: dict[str, str | None], tests: list[str]) -> list[tuple]:
        done = self.pool.run(Job(chunk_id, files, tests, fail_fast=False))
        return [astuple(r) for r in done.results]

    def close(self) -> None:
        self.pool.close()
        shutil.rmtree(self.tmp, ignore_errors=True)


class Notes:
    """A Ray actor next to the driver: tasks leave notes (a ticket's stage), the driver reads
    them. Here, not beside the batch code, because an actor's process imports its class's
    module: this one starts without torch."""

    def __init__(self) -> None:
        self._notes: list[tuple] = []

    def note(self, *note: Any) -> None:
        self._notes.append(note)

    def drain(self) -> list[tuple]:
        notes, self._notes = self._notes, []
        return notes


# --- the driver's side ---------------------------------------------------------------------------


@dataclass
class ClusterStats:
    nodes: int = 0
    workers: int = 0
    chunks: int = 0
    requeued: int = 0  # chunks run again on another node after theirs died
    shipped_bytes: int = 0  # the bundle, once per node
    start_seconds: float = 0.0  # until every node's workers were warm
    lost: list[str] = field(default_factory=list)  # nodes that died or could not start


@dataclass
class _Actor:
    handle: Any
    node: str
    workers: int
    inflight: int = 0


class ClusterPool:
    """A warm Pool on every live node of the cluster (see the module docstring)."""

    def __init__(
        self,
        root: Path,
        commit: str,
        address: str | None,
        pool_args: dict[str, Any],
        workers_per_node: int | None = None,
    ) -> None:
        self.root = Path(root)
        self.commit = commit
        self.address = address
        self.pool_args = pool_args
        self.workers_per_node = workers_per_node
        self.stats = ClusterStats()
        self.warnings: list[str] = []
        self._actors: list[_Actor] = []
        self._ray: Any = None

    def __enter__(self) -> ClusterPool:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self) -> None:
        ray = self._ray = connect(self.address)
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        began = time.monotonic()
        bundle = bundle_commit(self.root, self.commit)
        shipped = ray.put(bundle)
        remote = ray.remote(NodeRunner)
        pending = []
        for node in alive_nodes(ray):
            workers = min(self.workers_per_node or node["cpus"], node["cpus"])
            handle = remote.options(
                num_cpus=workers, max_restarts=0,
                scheduling_strategy=NodeAffinitySchedulingStrategy(node["id"], soft=False),
            ).remote(shipped, self.commit, {**self.pool_args, "workers": workers})  # fmt: skip
            actor = _Actor(handle, f"{node['address']}/{node['id'][:8]}", workers)
            pending.append((actor, handle.ready.remote()))
        if not pending:
            raise RunnerError("the Ray cluster has no live node with a CPU")
        for actor, ready in pending:
            try:
                warning = ray.get(ready, timeout=START_TIMEOUT)
            except Exception as exc:  # noqa: BLE001 - one node failing leaves the others
                self._lost(actor, f"did not start: {_one_line(exc)}")
                continue
            if warning and warning not in self.warnings:
                self.warnings.append(warning)
            self._actors.append(actor)
            self.stats.shipped_bytes += len(bundle)
        if not self._actors:
            raise RunnerError(f"no node of the Ray cluster could start test workers: "
                              f"{'; '.join(self.stats.lost)}")  # fmt: skip
        self.stats.nodes = len(self._actors)
        self.stats.workers = sum(a.workers for a in self._actors)
        self.stats.start_seconds = time.monotonic() - began

    def _lost(self, actor: _Actor, why: str) -> None:
        self.stats.lost.append(f"node {actor.node} {why}")
        self.warnings.append(f"node {actor.node} {why}")
        with contextlib.suppress(Exception):
            self._ray.kill(actor.handle)

    def collect(self) -> tuple[list[str], list[dict]]:
        """The suite's test ids and collection errors, collected on one node."""
        for actor in list(self._actors):
            try:
                tests, errors = self._ray.get(actor.handle.collect.remote())
            except self._ray.exceptions.RayActorError as exc:
                self._actors.remove(actor)
                self._lost(actor, f"died: {_one_line(exc)}")
                continue
            except self._ray.exceptions.RayTaskError as exc:
                raise RunnerError(_one_line(exc.cause or exc)) from None
            return list(tests), list(errors)
        raise RunnerError("every node of the Ray cluster died before the suite was collected")

    def run(self, files: dict[str, str | None], tests: list[str]) -> Iterator[TestResult]:
        """Every test of `tests` run once with `files` applied, results as each chunk ends."""
        ray = self._ray
        size = max(1, math.ceil(len(tests) / max(1, self.stats.workers * CHUNKS_PER_WORKER)))
        queue = [tests[i : i + size] for i in range(0, len(tests), size)]
        self.stats.chunks += len(queue)
        queue.reverse()  # popped from the end: the suite's order, module by module
        inflight: dict[Any, tuple[_Actor, list[str]]] = {}
        serial = 0
        while queue or inflight:
            for actor in self._actors:
                while queue and actor.inflight < IN_FLIGHT_PER_NODE:
                    chunk = queue.pop()
                    serial += 1
                    ref = actor.handle.run.remote(f"chunk-{serial}", files, chunk)
                    inflight[ref] = (actor, chunk)
                    actor.inflight += 1
            if not inflight:
                raise RunnerError("every node of the Ray cluster died before the tests ran")
            ready, _ = ray.wait(list(inflight), num_returns=1)
            actor, chunk = inflight.pop(ready[0])
            actor.inflight -= 1
            try:
                rows = ray.get(ready[0])
            except ray.exceptions.RayActorError as exc:
                # The node (or its actor) died: its chunks go to the nodes left.
                if actor in self._actors:
                    self._actors.remove(actor)
                    self._lost(actor, f"died: {_one_line(exc)}")
                queue.append(chunk)
                self.stats.requeued += 1
                continue
            except ray.exceptions.RayTaskError as exc:
                raise RunnerError(f"node {actor.node}: {_one_line(exc.cause or exc)}") from None
            for row in rows:
                yield _result(row)

    def close(self) -> None:
        if self._ray is None:
            return
        closing = [a.handle.close.remote() for a in self._actors]
        with contextlib.suppress(Exception):
            self._ray.get(closing, timeout=60)
        for actor in self._actors:
            with contextlib.suppress(Exception):
                self._ray.kill(actor.handle)
        self._actors = []


def _result(row: tuple) -> TestResult:
    job_id, test_id, outcome, seconds, message, frames, cached = row
    return TestResult(job_id, test_id, outcome, seconds, message,
                      tuple(tuple(f) for f in frames), cached)  # fmt: skip


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return lines[-1] if lines else type(exc).__name__
