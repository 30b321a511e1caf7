"""Which uid a sandboxed worker runs as, and handing its worktree to that uid.

Run by an ordinary user, workers run as that user (in their own user namespace or container).
Run by root, each worker gets an unprivileged uid of its own: root is exempt from RLIMIT_NPROC,
and a root worker writing through a bind mount would write as root.
"""

from __future__ import annotations

import itertools
import os
import threading
from pathlib import Path

from greenpatch.sandboxes.worktree import chown_tree

UID_BASE = 3_000_000


class UidPool:
    """Hands out uids no other worker of this process uses (a range per host pid)."""

    def __init__(self, base: int = UID_BASE) -> None:
        self._uids = itertools.count(base + (os.getpid() % 10_000) * 100)
        self._lock = threading.Lock()

    def claim(self, worktree: Path) -> tuple[int, int] | None:
        """As root: a fresh uid, made owner of `worktree`; (uid, gid). Otherwise None."""
        if os.geteuid() != 0:
            return None
        with self._lock:
            uid = next(self._uids)
        chown_tree(worktree, uid, uid)
        return uid, uid
