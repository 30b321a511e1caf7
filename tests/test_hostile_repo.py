"""A hostile repository at HEAD: its conftest and tests attack the host during the baseline and
the candidates' jobs. Everything runs in the sandbox; marker files prove nothing ran outside.

For each attack: bwrap and docker contain it; `process` (no isolation, explicit request only) is
a strict xfail where it cannot.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from greenpatch.runner.baseline import BaselineOptions, build_baseline
from greenpatch.runner.pool import Job, Pool
from greenpatch.sandboxes import Limits

from tests.conftest import make_repo
from tests.test_sandbox_adversarial import backends

PYTHON = sys.executable


def conftest(outside: Path, secret: Path) -> str:
    """A conftest that, when imported, leaves a marker outside its worktree with what it read."""
    return (
        "import os\n"
        "from pathlib import Path\n\n"
        "def _steal():\n"
        f"    loot = [os.environ.get('GITHUB_TOKEN', ''), os.environ.get('HOME', '')]\n"
        "    try:\n"
        f"        loot.append(Path({str(secret)!r}).read_text())\n"
        "    except OSError:\n"
        "        pass\n"
        "    try:\n"
        f"        Path({str(outside)!r}).write_text('|'.join(loot))\n"
        "    except OSError:\n"
        "        pass\n\n"
        "_steal()\n"
    )


def hostile(tmp_path: Path, tests: dict[str, str]) -> tuple[Path, Path, Path]:
    outside = Path("/tmp") / f"gp-hostile-{uuid.uuid4().hex}"
    secret = tmp_path / "secret.txt"
    secret.write_text("host-secret")
    files = {
        "lib.py": "def one():\n    return 2\n",
        "tests/conftest.py": conftest(outside, secret),
        "tests/test_lib.py": "from lib import one\n\n\ndef test_one():\n    assert one() == 1\n",
        **tests,
    }
    return make_repo(tmp_path / "repo", files), outside, secret


def options(backend_name: str, **limits) -> BaselineOptions:
    return BaselineOptions(sandbox=backend_name, workers=1, test_timeout=3,
                           limits=Limits(output_bytes=1 << 24, **limits))  # fmt: skip


@backends(reason="the conftest runs as this user, on this machine")
def test_the_baseline_runs_the_repository_in_the_sandbox(backend_name, tmp_path, monkeypatch):
    monkeypatch.setenv("GITHUB_TOKEN", "ghp_hostile_test_token")
    repo, outside, _ = hostile(tmp_path, {})
    try:
        baseline = build_baseline(repo, PYTHON, options(backend_name), cache_dir=tmp_path / "c")
        assert baseline.failing == ["tests/test_lib.py::test_one"]
        assert not outside.exists(), outside.read_text()
    finally:
        outside.unlink(missing_ok=True)


@backends()
def test_an_endless_test_in_the_baseline_is_timed_out(backend_name, tmp_path):
    loop = "def test_forever():\n    while True:\n        pass\n"
    repo, _, _ = hostile(tmp_path, {"tests/test_loop.py": loop})
    start = time.monotonic()
    baseline = build_baseline(repo, PYTHON, options(backend_name), cache_dir=tmp_path / "c")
    # Three runs of a 3 s timeout (the run and two flaky re-runs), plus start-up.
    assert time.monotonic() - start < 40
    record = baseline.records["tests/test_loop.py::test_forever"]
    assert record.outcome == "failed" and "timeout" in record.message


@backends()
def test_the_baseline_has_a_deadline(backend_name, tmp_path):
    slow = "".join(f"def test_slow_{i}():\n    import time; time.sleep(2)\n\n" for i in range(20))
    repo, _, _ = hostile(tmp_path, {"tests/test_slow.py": slow})
    start = time.monotonic()
    with pytest.raises(Exception, match="ran out of time"):
        build_baseline(repo, PYTHON, options(backend_name), cache_dir=tmp_path / "c",
                       deadline=time.monotonic() + 8)  # fmt: skip
    assert time.monotonic() - start < 20


FRAMES = (
    "import os\n\n\n"
    "def test_environ():\n"
    "    path = os.path.join(os.getcwd(), '..', '..', '..', 'proc', 'self', 'environ')\n"
    "    exec(compile('raise ValueError(1)', path, 'exec'))\n\n\n"
    "def test_binary():\n"
    "    exec(compile('raise ValueError(2)', os.path.abspath('data.bin'), 'exec'))\n"
)


@backends()
def test_the_host_keeps_only_tracked_python_frames(backend_name, tmp_path):
    repo, _, _ = hostile(tmp_path, {"tests/test_frames.py": FRAMES, "data.bin": "\x00\xff"})
    baseline = build_baseline(repo, PYTHON, options(backend_name), cache_dir=tmp_path / "c")
    for name in ("test_environ", "test_binary"):
        record = baseline.records[f"tests/test_frames.py::{name}"]
        assert record.outcome == "failed"
        assert all(path in baseline.files | {"data.bin", "tests/test_frames.py"}
                   for path, _ in record.frames)  # fmt: skip
        assert not any("environ" in path for path, _ in record.frames)


LEAK = (
    "from pathlib import Path\n\n\n"
    "def test_clean_start():\n"
    "    assert not Path('leak.txt').exists() and not Path('/tmp/leak.txt').exists()\n"
    "    Path('leak.txt').write_text('x')\n"
    "    Path('/tmp/leak.txt').write_text('x')\n"
)


@backends(reason="its /tmp is the host's own, shared by every job")
def test_nothing_a_job_writes_reaches_the_next(backend_name, tmp_path):
    repo, _, _ = hostile(tmp_path, {"tests/test_leak.py": LEAK})
    test = "tests/test_leak.py::test_clean_start"
    try:
        with Pool(repo, PYTHON, backend_name, workers=1) as pool:
            for n in range(3):
                done = pool.run(Job(f"j{n}", {"lib.py": f"def one():\n    return {n}\n"}, [test]))
                assert done.results[0].outcome == "passed", done.results[0].message
    finally:
        Path("/tmp/leak.txt").unlink(missing_ok=True)


# A candidate whose code, called by the target test, reports the target passed and leaves.
FORGE = (
    "import gc, os\n\n\n"
    "def one():\n"
    "    import gp_plugin\n"
    "    for obj in gc.get_objects():\n"
    "        if isinstance(obj, gp_plugin.ResultStream):\n"
    "            obj._emit({'event': 'result', 'id': 'tests/test_lib.py::test_one',\n"
    "                       'outcome': 'passed', 'seconds': 0.0, 'message': '', 'frames': []})\n"
    "    os._exit(0)\n"
)


@backends()
def test_a_forged_green_is_not_a_verdict(backend_name, tmp_path):
    repo, _, _ = hostile(tmp_path, {})
    targets = ("tests/test_lib.py::test_one",)
    with Pool(repo, PYTHON, backend_name, workers=1) as pool:
        done = pool.run(Job("forged", {"lib.py": FORGE}, list(targets), targets=targets))
    assert [r.outcome for r in done.results] == ["passed"]  # what the forger wrote...
    assert not done.green and done.reason == "unverified"  # ...is not a verdict


FILL = (  # tries 1 GiB in 4 MiB files
    "def test_fill():\n"
    "    for n in range(256):\n"
    "        with open(f'blob{n}', 'wb') as f:\n"
    "            f.write(b'x' * (4 << 20))\n"
    "    import time; time.sleep(10)\n"
)


@backends(reason="the process backend has no disk quota (it is not a sandbox)")
def test_the_worktree_has_a_disk_quota(backend_name, tmp_path):
    repo, _, _ = hostile(tmp_path, {"tests/test_fill.py": FILL})
    with Pool(repo, PYTHON, backend_name, workers=1,
              limits=Limits(disk_mb=32, output_bytes=1 << 24)) as pool:  # fmt: skip
        trees = [slot.tree.path for slot in pool._slots]
        done = pool.run(Job("fill", {}, ["tests/test_fill.py::test_fill"], fail_fast=False))
        assert done.results[0].outcome == "failed"
        assert "disk quota" in done.results[0].message
        used = sum(f.stat().st_size for t in trees for f in t.rglob("blob*"))
    # Polled, so it overshoots by what is written between two looks. Measured on a quiet
    # machine (3 runs each, 32 MiB quota): 34-52 MiB with bwrap and docker; 50-300 MiB when the
    # first look came after a fixed 0.5 s.
    assert used < 128 << 20


@pytest.mark.bwrap
def test_killing_the_agent_during_the_baseline_leaves_nothing_running(tmp_path):
    sleepy = "def test_sleep():\n    import time\n    time.sleep(600)\n"
    repo, _, _ = hostile(tmp_path, {"tests/test_sleep.py": sleepy})
    cache = tmp_path / "cache"
    env = {**os.environ, "XDG_CACHE_HOME": str(cache)}
    agent = subprocess.Popen(
        [PYTHON, "-m", "greenpatch.agent",
         "test", "--all", "--repo", str(repo), "--sandbox", "bwrap",
         "-q"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not _running_under(cache):
            time.sleep(0.2)
        assert _running_under(cache), "the baseline never started"
        time.sleep(2)
    finally:
        agent.send_signal(signal.SIGKILL)
        agent.wait()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and _running_under(cache):
        time.sleep(0.2)
    assert _running_under(cache) == []


def _running_under(path: Path) -> list[int]:
    """Processes whose working directory is under `path` (the agent's worktrees)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if os.readlink(entry / "cwd").startswith(str(path)):
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


@pytest.mark.bwrap
@pytest.mark.parametrize("where", ["test", "conftest"])
def test_fix_keeps_its_budget_when_the_repository_hangs(tmp_path, where):
    # The failing test, or the conftest every test imports, loops forever.
    forever = "while True:\n    pass\n"
    tests = {"tests/test_loop.py": "def test_forever():\n" + "".join(
        f"    {line}\n" for line in forever.splitlines())}  # fmt: skip
    if where == "conftest":
        tests["tests/conftest.py"] = forever
    repo = make_repo(tmp_path / "repo", {"lib.py": "X = 1\n", **tests})
    ticket = tmp_path / "ticket.md"
    ticket.write_text("# It hangs\n\ntests: tests/test_loop.py::test_forever\n")
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache")}
    start = time.monotonic()
    done = subprocess.run(
        [PYTHON, "-m", "greenpatch.agent",
         "fix", str(ticket), "--repo", str(repo), "--budget", "20",
         "--drafter", "mutations", "--sandbox", "bwrap", "--json", str(tmp_path / "out.json")],
        capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip
    assert time.monotonic() - start < 20 + 15, done.stderr
    assert done.returncode == 1, done.stderr  # no fix within the budget
    assert json.loads((tmp_path / "out.json").read_text())["status"] != "green"
    assert "Traceback" not in done.stderr
    assert _running_under(tmp_path / "cache") == []


# Everything at once, end to end: the stockroom example with a hostile conftest (stealing the
# token, HOME and a host secret), hostile git config (hooks, fsmonitor, filters, textconv), a
# tracked symlink to the host secret, a test writing 1 GiB and a test forging results.
STEAL_LINK = (
    "from pathlib import Path\n\n\n"
    "def test_symlink_out():\n"
    "    Path({outside!r}).write_text(Path('secret_link').read_text())\n"
)
FORGE_ALL = (
    "import gc, os\n\n\n"
    "def test_forge():\n"
    "    import gp_plugin\n"
    "    for obj in gc.get_objects():\n"
    "        if isinstance(obj, gp_plugin.ResultStream):\n"
    "            for t in {targets!r}:\n"
    "                obj._emit({{'event': 'result', 'id': t, 'outcome': 'passed',\n"
    "                           'seconds': 0.0, 'message': '', 'frames': []}})\n"
    "    os._exit(0)\n"
)


@pytest.mark.slow
@pytest.mark.parametrize("backend_name", [pytest.param("bwrap", marks=pytest.mark.bwrap),
                                          pytest.param("docker", marks=pytest.mark.docker)])
def test_agent_fix_on_a_hostile_repository(backend_name, tmp_path):
    from tests.test_fix_cli import ROOT, prepare
    from tests.test_git_safety import TOKEN, _ran, arm
    from tests.test_sandbox_helpers import use_backend

    use_backend(backend_name)
    secret = tmp_path / "secret.txt"
    secret.write_text("host-secret")
    outside = Path("/tmp") / f"gp-hostile-{uuid.uuid4().hex}"
    repo = prepare("stockroom", tmp_path / "stockroom")
    targets = ("tests/test_pricing.py::test_discount_starts_exactly_at_tier_minimum",
               "tests/test_pricing.py::test_line_total_at_tier_boundary")  # fmt: skip
    (repo / "conftest.py").write_text(conftest(outside, secret))
    (repo / "secret_link").symlink_to(secret)
    (repo / "tests" / "test_zz_link.py").write_text(STEAL_LINK.format(outside=str(outside)))
    (repo / "tests" / "test_zz_fill.py").write_text(FILL)
    (repo / "tests" / "test_zz_forge.py").write_text(FORGE_ALL.format(targets=targets))
    (repo / ".gitattributes").write_text("*.py filter=evil diff=evil\n")
    subprocess.run(["git", "add", "-A"], cwd=repo, check=True)
    subprocess.run(["git", "commit", "-qm", "hostile"], cwd=repo, check=True)
    markers = tmp_path / "markers"
    markers.mkdir()
    arm(repo, markers)
    env = {**os.environ, "GITHUB_TOKEN": TOKEN, "XDG_CACHE_HOME": str(tmp_path / "cache")}
    try:
        done = subprocess.run(
            [PYTHON, "-m", "greenpatch.agent", "fix", str(ROOT / "examples/tickets/stockroom.md"),
             "--repo", str(repo), "--drafter", "edits", "--sandbox", backend_name,
             "--budget", "240", "--json", "-", "-q"],
            capture_output=True, text=True, timeout=400, env=env,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        report = json.loads(done.stdout)
        assert report["status"] == "green", report
        assert "if quantity >= tier.min_quantity:" in report["diff"]
        assert not outside.exists(), outside.read_text()  # conftest and the symlink stayed in
        assert _ran(markers) == {}  # no hook, fsmonitor, filter or textconv ran
        assert TOKEN not in done.stdout + done.stderr
        # The forged results were not taken for outcomes: both targets failed at baseline.
        assert set(report["targets"]) == set(targets)
    finally:
        outside.unlink(missing_ok=True)


@pytest.mark.docker
def test_killing_the_agent_removes_its_docker_workers(tmp_path):
    from tests.test_sandbox_helpers import use_backend

    engine = use_backend("docker")
    repo = make_repo(tmp_path / "repo", {"test_a.py": "def test_a():\n    pass\n"})
    script = (
        "import sys, time\nfrom runner.pool import Pool\n"
        f"pool = Pool({str(repo)!r}, sys.executable, 'docker', workers=2)\n"
        "pool.start()\nprint('up', flush=True)\ntime.sleep(600)\n"
    )
    owner = subprocess.Popen([PYTHON, "-c", script], stdout=subprocess.PIPE, text=True,
                             env={**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache")})
    try:
        assert owner.stdout.readline().strip() == "up"
        label = f"greenpatch.sandbox={owner.pid}:"
        mine = [c for c in engine.client.containers.list(all=True)
                if c.labels.get("greenpatch.sandbox", "").startswith(label.split("=")[1])]
        assert mine, "the pool's containers should be running"
    finally:
        owner.kill()
        owner.wait()
    deadline = time.monotonic() + 30
    left = mine
    while left and time.monotonic() < deadline:
        time.sleep(0.5)
        left = [c for c in engine.client.containers.list(all=True)
                if c.labels.get("greenpatch.sandbox", "").startswith(f"{owner.pid}:")]
    assert left == []
