"""Isolated execution for untrusted candidate code.

Owns the backends (bubblewrap, Docker, plain process) behind one interface, one worktree per worker
and the resource limits. It imports nothing else of ours.

    backend = get_backend("bwrap")
    worker = backend.start(WorkerSpec(argv=[python, script], worktree=tree.path, limits=Limits()))
"""

from sandboxes.base import Backend, Limits, SandboxError, Worker, WorkerSpec
from sandboxes.registry import BACKENDS, get_backend

__all__ = ["BACKENDS", "Backend", "Limits", "SandboxError", "Worker", "WorkerSpec", "get_backend"]
