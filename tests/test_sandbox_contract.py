"""The Worker contract every backend honours: pipes, exit reasons, limits, environment."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest
from greenpatch.sandboxes import BACKENDS, Limits, SandboxError, WorkerSpec, get_backend

from tests.test_sandbox_helpers import ALL_BACKENDS, use_backend

ECHO = "import sys\nfor line in sys.stdin:\n    print('echo', line.strip(), flush=True)\n"


def spec(worktree: Path, code: str, **limits: object) -> WorkerSpec:
    return WorkerSpec(argv=[sys.executable, "-c", code], worktree=worktree, limits=Limits(**limits))


def test_registry_names_and_unknown() -> None:
    assert set(BACKENDS) == {"bwrap", "docker", "process"}
    with pytest.raises(SandboxError, match="unknown sandbox 'chroot'"):
        get_backend("chroot")
    with pytest.raises(SandboxError, match="bad options"):
        get_backend("process", nonsense=1)


def test_process_is_marked_unisolated() -> None:
    backend = get_backend("process")
    assert backend.isolated is False
    assert "does not isolate" in (backend.warning or "")


@ALL_BACKENDS
def test_echo_round_trip(backend_name: str, tmp_path: Path) -> None:
    backend = use_backend(backend_name)
    with backend.start(spec(tmp_path, ECHO, wall_seconds=30)) as worker:
        for i in range(3):
            worker.stdin.write(f"line{i}\n".encode())
            worker.stdin.flush()
            assert worker.stdout.readline() == f"echo line{i}\n".encode()
        assert worker.alive()
        assert worker.exit_reason() is None
    assert not worker.alive()
    assert worker.exit_reason() == "stopped"


@ALL_BACKENDS
def test_cwd_is_worktree_and_writable(backend_name: str, tmp_path: Path) -> None:
    backend = use_backend(backend_name)
    code = "import os; open('made.txt','w').write('hi'); print(os.getcwd(), flush=True)"
    with backend.start(spec(tmp_path, code, wall_seconds=30)) as worker:
        assert worker.stdout.readline().decode().strip() == str(tmp_path)
        assert worker.wait(20) == 0
    assert (tmp_path / "made.txt").read_text() == "hi"


@ALL_BACKENDS
def test_exit_code_reason(backend_name: str, tmp_path: Path) -> None:
    backend = use_backend(backend_name)
    worker = backend.start(spec(tmp_path, "import sys; sys.exit(3)", wall_seconds=30))
    assert worker.wait(20) == 3
    assert worker.exit_reason() == "exit 3"
    worker.stop()
    assert worker.exit_reason() == "exit 3"  # stop() after a natural exit changes nothing


@ALL_BACKENDS
def test_environment_allowlist(
    backend_name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    backend = use_backend(backend_name)
    monkeypatch.setenv("GITHUB_TOKEN", "tok-123")
    monkeypatch.setenv("LANG", "C.UTF-8")
    monkeypatch.setenv("SOME_RANDOM_HOST_VAR", "host")
    code = "import os, json; print(json.dumps(dict(os.environ)), flush=True)"
    worker = backend.start(
        WorkerSpec(
            argv=[sys.executable, "-c", code],
            worktree=tmp_path,
            env={"MY_FLAG": "1", "AWS_SECRET_ACCESS_KEY": "nope"},
            limits=Limits(wall_seconds=30),
        )
    )
    env = json.loads(worker.stdout.readline())
    worker.stop()
    assert env["MY_FLAG"] == "1"
    assert env["LANG"] == "C.UTF-8"
    for name in ("GITHUB_TOKEN", "AWS_SECRET_ACCESS_KEY", "SOME_RANDOM_HOST_VAR"):
        assert name not in env
    assert env["HOME"] != str(Path.home())


@ALL_BACKENDS
def test_wall_clock_timeout(backend_name: str, tmp_path: Path) -> None:
    backend = use_backend(backend_name)
    start = time.monotonic()
    worker = backend.start(spec(tmp_path, "while True: pass", wall_seconds=1))
    assert worker.wait(20) is not None
    assert time.monotonic() - start < 10
    assert worker.exit_reason() == "timeout"


@ALL_BACKENDS
def test_output_cap(backend_name: str, tmp_path: Path) -> None:
    backend = use_backend(backend_name)
    code = "import sys\nwhile True: sys.stdout.write('x' * 4096)"
    worker = backend.start(spec(tmp_path, code, wall_seconds=30, output_bytes=50_000))
    data = worker.stdout.read()
    assert len(data) <= 50_000
    assert worker.wait(20) is not None
    assert worker.exit_reason() == "output limit"


@ALL_BACKENDS
def test_stderr_tail_kept(backend_name: str, tmp_path: Path) -> None:
    backend = use_backend(backend_name)
    code = "import sys; sys.stderr.write('boom-' * 10000 + 'END'); sys.exit(1)"
    worker = backend.start(spec(tmp_path, code, wall_seconds=30))
    assert worker.wait(20) == 1
    worker.stop()
    tail = worker.stderr_tail()
    assert tail.endswith("END") and len(tail) <= 16 * 1024


@ALL_BACKENDS
def test_memory_limit(backend_name: str, tmp_path: Path) -> None:
    backend = use_backend(backend_name)
    worker = backend.start(
        spec(tmp_path, "x = bytearray(8 * 1024**3)", memory_mb=256, wall_seconds=30)
    )
    assert worker.wait(20) is not None
    assert worker.exit_reason() == "memory"


@ALL_BACKENDS
def test_tmp_and_home_are_private_and_writable(backend_name: str, tmp_path: Path) -> None:
    backend = use_backend(backend_name)
    code = (
        "import multiprocessing, os, tempfile\n"
        "fd, path = tempfile.mkstemp(); os.write(fd, b'x')\n"
        "open(os.path.expanduser('~/.probe'), 'w').write('x')\n"
        "lock = multiprocessing.Lock()\n"
        "with multiprocessing.Pool(2) as pool: print(sum(pool.map(abs, [-1, -2])), flush=True)\n"
    )
    with backend.start(spec(tmp_path, code, wall_seconds=30)) as worker:
        assert worker.stdout.readline() == b"3\n", worker.stderr_tail()
        assert worker.wait(20) == 0


@ALL_BACKENDS
def test_cpu_time_limit(backend_name: str, tmp_path: Path) -> None:
    backend = use_backend(backend_name)
    worker = backend.start(spec(tmp_path, "while True: pass", cpu_seconds=1, wall_seconds=30))
    assert worker.wait(25) is not None
    assert worker.exit_reason() == "cpu time"


@ALL_BACKENDS
def test_file_size_limit(backend_name: str, tmp_path: Path) -> None:
    backend = use_backend(backend_name)
    code = "open('big.bin', 'wb').write(b'x' * (3 * 1024 * 1024))"
    worker = backend.start(spec(tmp_path, code, file_size_mb=1, wall_seconds=30))
    assert worker.wait(20) == 1
    assert worker.exit_reason() == "file size"
    assert (tmp_path / "big.bin").stat().st_size <= 1024 * 1024
