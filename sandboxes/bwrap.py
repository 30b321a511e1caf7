"""`bwrap` (default on Linux): bubblewrap namespaces around each worker.

What the worker sees: /usr (and the /bin, /lib... links) and a few /etc files read-only, the
interpreter's prefixes and site-packages and `spec.readonly` read-only at their host paths, the
worktree read-write at its host path, a private tmpfs /tmp (also HOME), a fresh /proc and a minimal
/dev. Nothing else: no /home, no /root contents, no network (new, empty net namespace), its own
pid/ipc/uts/cgroup namespaces; `--die-with-parent` and a new session.

Limits: rlimits (memory as address space, CPU, processes, file size) are set inside, by `prlimit`.
RLIMIT_NPROC counts processes per real uid and never applies to root, so:
- run by an ordinary user, the worker runs in a new user namespace, where the kernel counts its
  processes per namespace;
- run by root, the worker gets an unprivileged uid of its own (from `uid_base` up) via `setpriv`,
  with every capability dropped; bubblewrap itself needs no user namespace then. The worktree is
  handed to that uid (see `worktree.Worktree`, which keeps it so).
"""

from __future__ import annotations

import os
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from greenpatch.sandboxes import hostfs, rlimits
from greenpatch.sandboxes.base import Backend, SandboxError, Worker, WorkerSpec
from greenpatch.sandboxes.environment import worker_env
from greenpatch.sandboxes.identity import UID_BASE, UidPool
from greenpatch.sandboxes.interpreter import minimal_roots, python_paths
from greenpatch.sandboxes.popen import PopenWorker

SANDBOX_HOME = "/tmp"
NAMESPACES_WITHOUT_USER = (
    "--unshare-pid",
    "--unshare-net",
    "--unshare-ipc",
    "--unshare-uts",
    "--unshare-cgroup-try",
)
MISSING = "bubblewrap is not installed: apt-get install bubblewrap (or your distribution's package)"

# PR_SET_PDEATHSIG (--die-with-parent) fires when the *thread* that forked bwrap ends, so every
# bwrap is forked from this one thread, which lives as long as the process.
_spawner = ThreadPoolExecutor(max_workers=1, thread_name_prefix="bwrap-spawner")


class BwrapBackend(Backend):
    name = "bwrap"
    isolated = True

    def __init__(self, bwrap: str | None = None, uid_base: int = UID_BASE) -> None:
        found = shutil.which(bwrap or "bwrap")
        if found is None:
            raise SandboxError(MISSING)
        self.bwrap = found
        self.as_root = os.geteuid() == 0
        for tool in ("prlimit", "setpriv") if self.as_root else ("prlimit",):
            if shutil.which(tool) is None:
                raise SandboxError(f"{tool} is not installed: apt-get install util-linux")
        self._uids = UidPool(uid_base)

    def command(self, spec: WorkerSpec, uid: int | None, ready_fd: int) -> list[str]:
        """The bwrap command line for `spec`, run as `uid` inside (root mode) or as is.

        Once inside the finished sandbox, a shell writes one byte to `ready_fd` before exec'ing
        the worker (bwrap's own --info-fd is written before the mounts are made).
        """
        worktree = str(spec.worktree)
        argv = [self.bwrap]
        argv += NAMESPACES_WITHOUT_USER if uid is not None else ("--unshare-all",)
        argv += ["--die-with-parent", "--new-session", "--hostname", "sandbox"]
        for path, target in hostfs.system_links().items():
            argv += ["--symlink", target, path]
        for path in hostfs.system_dirs() + hostfs.etc_files():
            argv += ["--ro-bind", path, path]
        argv += ["--proc", "/proc", "--dev", "/dev"]
        # tmpfs pages escape RLIMIT_AS: each tmpfs is capped at the memory limit instead.
        size = str(spec.limits.memory_mb * 1024 * 1024)
        for tmp in ("/tmp", "/dev/shm"):
            argv += ["--perms", "1777", "--size", size, "--tmpfs", tmp]
        readonly = minimal_roots([*python_paths(spec.argv[0]), *spec.readonly])
        made = {"/", "/usr", "/etc", "/tmp", "/proc", "/dev"}
        for path in [*readonly, spec.worktree]:
            # Directories bwrap would create on the way are root-only; make them traversable.
            for parent in reversed(Path(path).parents):
                if str(parent) not in made:
                    made.add(str(parent))
                    argv += ["--perms", "0755", "--dir", str(parent)]
        for path in readonly:
            if not Path(worktree).is_relative_to(path):
                argv += ["--ro-bind", str(path), str(path)]
        argv += ["--bind", worktree, worktree, "--chdir", worktree]
        # (dash cannot redirect fds above 9, hence /proc; the write end stays open, unread.)
        ready = f'printf x >/proc/self/fd/{ready_fd} && exec "$@"'
        argv += ["--", "/bin/sh", "-c", ready, "sh", *rlimits.prlimit_argv(spec.limits)]
        if uid is not None:
            argv += [
                "setpriv",
                f"--reuid={uid}",
                f"--regid={uid}",
                "--clear-groups",
                "--inh-caps=-all",
                "--bounding-set=-all",
                "--",
            ]
        return argv + spec.argv

    def start(self, spec: WorkerSpec) -> Worker:
        if not spec.worktree.is_dir():
            raise SandboxError(f"worktree {spec.worktree} does not exist")
        hostfs.check_readonly(spec.readonly)
        owner = self._uids.claim(spec.worktree)
        uid = owner[0] if owner else None
        env = worker_env(spec.env, SANDBOX_HOME)
        ready_read, ready_write = os.pipe()
        argv = self.command(spec, uid, ready_write)
        try:
            worker = _spawner.submit(
                PopenWorker,
                argv,
                env,
                "/",
                spec.limits,
                pass_fds=(ready_write,),
                status_offset_signals=True,
            ).result()
        finally:
            os.close(ready_write)
        with os.fdopen(ready_read, "rb") as ready:
            # End of file without the byte: bwrap failed to set up; its reason is on stderr.
            started = ready.read(1)
        if not started:
            worker.wait(10)
            worker.stop()
            lines = worker.stderr_tail().strip().splitlines()
            raise SandboxError(f"bwrap could not start: {lines[-1] if lines else 'no message'}")
        worker.watch_disk(spec.worktree)
        return worker
