"""Isolated execution for untrusted candidate code.

Owns the backends (bubblewrap, Docker, plain process) behind one interface, one worktree per worker
and the resource limits. It imports nothing else of ours.

    tree = Worktree.create(repo_root)
    backend = get_backend("bwrap")
    worker = backend.start(WorkerSpec(argv=[python, script], worktree=tree.path, limits=Limits()))
    worker.stdin.write(b"job\n"); worker.stdin.flush(); worker.stdout.readline()
    worker.stop(); tree.reset()  # next job on a pristine tree
"""

from greenpatch.sandboxes.base import Backend, Limits, SandboxError, Worker, WorkerSpec
from greenpatch.sandboxes.registry import BACKENDS, get_backend
from greenpatch.sandboxes.worktree import Worktree, cleanup_stale

__all__ = [
    "BACKENDS",
    "Backend",
    "Limits",
    "SandboxError",
    "Worker",
    "WorkerSpec",
    "Worktree",
    "cleanup_stale",
    "get_backend",
]
