"""bwrap specifics: clear errors, per-worker process limits, the unprivileged-user path."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import pytest
from greenpatch.sandboxes import Limits, SandboxError, WorkerSpec, get_backend

pytestmark = pytest.mark.bwrap

FORK_TO_LIMIT = textwrap.dedent(
    """
    import os, sys, time
    n = 0
    for _ in range(200):
        try:
            if os.fork() == 0:
                time.sleep(30)
                os._exit(0)
        except OSError:
            break
        n += 1
    print(os.getuid(), n, flush=True)
    sys.stdin.read()
    """
)


def test_missing_bwrap_names_the_package() -> None:
    with pytest.raises(SandboxError, match="apt-get install bubblewrap"):
        get_backend("bwrap", bwrap="/nonexistent/bwrap")


def test_missing_readonly_path(tmp_path: Path) -> None:
    backend = get_backend("bwrap")
    spec = WorkerSpec(["true"], tmp_path, readonly=(tmp_path / "nope",))
    with pytest.raises(SandboxError, match="does not exist"):
        backend.start(spec)


def test_setup_failure_is_one_clear_error(tmp_path: Path) -> None:
    backend = get_backend("bwrap")
    # Exists here, but bwrap resolves it to a name ("net:[...]") that it then cannot find.
    odd = Path("/proc/self/ns/net")
    with pytest.raises(SandboxError, match="^bwrap could not start: bwrap: Can't find source"):
        backend.start(WorkerSpec(["true"], tmp_path, readonly=(odd,)))


def test_refuses_to_expose_home(tmp_path: Path) -> None:
    backend = get_backend("bwrap")
    for path in (Path("/"), Path.home(), Path.home().parent):
        with pytest.raises(SandboxError, match="home directory"):
            backend.start(WorkerSpec(["true"], tmp_path, readonly=(path,)))


def test_process_limit_is_per_worker(tmp_path: Path) -> None:
    """Two workers at their limit at once: neither eats into the other's budget."""
    backend = get_backend("bwrap")
    limits = Limits(processes=16, wall_seconds=30)
    workers = []
    for name in ("a", "b"):
        tree = tmp_path / name
        tree.mkdir()
        workers.append(
            backend.start(WorkerSpec([sys.executable, "-c", FORK_TO_LIMIT], tree, limits=limits))
        )
    try:
        results = [w.stdout.readline().split() for w in workers]
    finally:
        for w in workers:
            w.stop()
    counts = [int(n) for _, n in results]
    assert all(12 <= n < 16 for n in counts), counts
    if os.geteuid() == 0:
        uids = {uid for uid, _ in results}
        assert len(uids) == 2 and b"0" not in uids  # a uid of its own each, never root


# Only root can switch to another uid to exercise the unprivileged path; CI runs as root, so
# this runs there. /usr/bin/python3 is the interpreter an unprivileged user can read.
@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to become an unprivileged user")
@pytest.mark.skipif(not Path("/usr/bin/python3").exists(), reason="needs /usr/bin/python3")
def test_unprivileged_user_mode() -> None:
    """Run by an ordinary user, bwrap uses a user namespace and its per-namespace NPROC."""
    tmp_path = Path(tempfile.mkdtemp(prefix="gp-nobody-"))  # pytest's tmp dirs are root-only
    request_cleanup = tmp_path
    tree = tmp_path / "tree"
    tree.mkdir()
    os.chmod(tmp_path, 0o755)
    shutil.chown(tree, 65534, 65534)
    # The system interpreter, not our venv: greenpatch.sandboxes is this checkout's folder.
    namespace = tmp_path / "path" / "greenpatch"
    namespace.mkdir(parents=True)
    (namespace / "sandboxes").symlink_to(Path(__file__).resolve().parents[1] / "sandboxes")
    driver = textwrap.dedent(
        f"""
        import sys
        from pathlib import Path
        from greenpatch.sandboxes import Limits, WorkerSpec, get_backend
        backend = get_backend("bwrap")
        code = {FORK_TO_LIMIT!r}
        spec = WorkerSpec(["/usr/bin/python3", "-c", code], Path({str(tree)!r}),
                          limits=Limits(processes=16, wall_seconds=20))
        with backend.start(spec) as worker:
            print(worker.stdout.readline().decode().strip(), worker.stderr_tail())
        """
    )
    try:
        done = subprocess.run(
            ["/usr/bin/python3", "-c", driver],
            user=65534,
            group=65534,
            extra_groups=[],
            env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path),
                 "PYTHONPATH": str(tmp_path / "path")},
            cwd=tree,
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        shutil.rmtree(request_cleanup)
    assert done.returncode == 0, done.stderr
    uid, count = done.stdout.split()[:2]
    assert uid == "65534"
    assert 12 <= int(count) < 16
