"""`--cluster ray`: agent batch and agent test on a real Ray cluster of two nodes on 127.0.0.1.

The fast tests pin the edges: a bad --cluster, --ray-address alone, Ray not installed, a cluster
that does not answer (each one line and exit 2), and the git bundles that carry the code to a
node and the fix back. The cluster tests (marked `ray`) start a head and a second node (`ray
start`, one CPU each; see tests/ray_cluster.py), run `agent test --cluster ray` on a real
library's suite against a local run, cancel a ticket stuck past its budget, and run a batch of
four tickets across both nodes while the node running one of them is killed. The cluster is
stopped at the end, also when a test fails, and nothing of it may be left running.
"""

from __future__ import annotations

import difflib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from greenpatch.agent.batch.journal import FINAL
from greenpatch.runner.cluster import bundle_branch, bundle_commit, unpack_branch, unpack_commit

from tests.conftest import git, make_repo
from tests.ray_cluster import LocalCluster, available, stockroom_backlog
from tests.test_compat_subset import load_compat

ROOT = Path(__file__).resolve().parents[1]
HINT = "--cluster ray needs Ray: pip install 'ray==2.60.0'"
# Ray made unimportable, as on a machine without the extra: the CLI runs on unchanged.
WITHOUT_RAY = ("import sys; sys.modules['ray'] = None; "
               "from greenpatch.agent.commands.cli import main; main()")


def _agent(*args: object, code: str | None = None, timeout: float = 120,
           cwd: Path | None = None) -> subprocess.CompletedProcess:  # fmt: skip
    head = ["-c", code] if code else ["-m", "greenpatch.agent"]
    return subprocess.run([sys.executable, *head, *map(str, args)], capture_output=True,
                          text=True, timeout=timeout, cwd=cwd)  # fmt: skip


def _one_line_error(done: subprocess.CompletedProcess, text: str) -> None:
    assert done.returncode == 2, done.stderr
    lines = [ln for ln in done.stderr.splitlines() if ln.strip()]
    assert lines == [f"error: {text}"], done.stderr
    assert "Traceback" not in done.stderr


def test_bad_cluster_flags_are_one_line_and_exit_2(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    backlog = tmp_path / "backlog.jsonl"
    backlog.write_text(json.dumps({"id": "t", "title": "t", "body": "b", "repo": str(repo)}))
    journal = tmp_path / "j.sqlite"
    _one_line_error(_agent("test", "--repo", repo, "--cluster", "dask"),
                    "--cluster must be 'ray', got 'dask'")  # fmt: skip
    _one_line_error(_agent("test", "--repo", repo, "--ray-address", "127.0.0.1:6379"),
                    "--ray-address needs --cluster ray")  # fmt: skip
    _one_line_error(_agent("batch", backlog, "--journal", journal, "--cluster", "dask"),
                    "--cluster must be 'ray', got 'dask'")  # fmt: skip
    # A cluster that does not answer: said at once, not after Ray's minutes of retries.
    began = time.monotonic()
    _one_line_error(
        _agent("test", "--repo", repo, "--all", "--cluster", "ray", "--ray-address", "127.0.0.1:1"),
        "cannot connect to the Ray cluster at 127.0.0.1:1: Connection refused",
    )
    assert time.monotonic() - began < 60


def test_without_ray_the_install_hint_and_exit_2(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    backlog = tmp_path / "backlog.jsonl"
    backlog.write_text(json.dumps({"id": "t", "title": "t", "body": "b", "repo": str(repo)}))
    done = _agent("test", "--repo", repo, "--all", "--cluster", "ray", code=WITHOUT_RAY)
    _one_line_error(done, HINT)
    done = _agent("batch", backlog, "--journal", tmp_path / "j.sqlite", "--drafter", "edits",
                  "--cluster", "ray", code=WITHOUT_RAY)  # fmt: skip
    _one_line_error(done, HINT)
    # Without --cluster nothing needs Ray.
    assert _agent("test", "--help", code=WITHOUT_RAY).returncode == 0


def test_bundles_carry_the_commit_there_and_the_fix_back(tmp_path: Path) -> None:
    user = make_repo(tmp_path / "user", {"calc.py": "def add(a, b):\n    return a - b\n"})
    git(user, "config", "core.hooksPath", "/nonexistent-on-the-node")
    (user / "scratch.txt").write_text("uncommitted\n")
    base = git(user, "rev-parse", "HEAD").strip()
    node = unpack_commit(bundle_commit(user, base), tmp_path / "node" / "repo", base)
    # The node has the commit and nothing else of the user's: no config, no untracked file.
    assert git(node, "rev-parse", "HEAD").strip() == base
    assert (node / "calc.py").read_text() == "def add(a, b):\n    return a - b\n"
    assert not (node / "scratch.txt").exists()
    assert "hooksPath" not in (node / ".git" / "config").read_text()
    # A fix committed on the node comes back as objects only: no ref of the user's moves.
    (node / "calc.py").write_text("def add(a, b):\n    return a + b\n")
    git(node, "-c", "user.name=n", "-c", "user.email=n@n", "commit", "-qam", "fix")
    git(node, "branch", "greenpatch/fix")
    fix = git(node, "rev-parse", "HEAD").strip()
    refs_before = git(user, "for-each-ref")
    heads = unpack_branch(user, bundle_branch(node, "greenpatch/fix", base))
    assert heads == {"refs/heads/greenpatch/fix": fix}
    assert git(user, "for-each-ref") == refs_before
    assert git(user, "cat-file", "-t", fix).strip() == "commit"
    assert git(user, "status", "--porcelain") == "?? scratch.txt\n"


# --- on a real cluster ---------------------------------------------------------------------------



def on_cluster(timeout: float):
    """A test on the real cluster: slow, marked `ray`, skipped where none can be made."""

    def mark(test):
        for decorator in (pytest.mark.timeout(timeout), pytest.mark.slow, pytest.mark.ray,
                          pytest.mark.skipif(available() is not None, reason=str(available()))):
            test = decorator(test)
        return test

    return mark


@pytest.fixture(scope="module")
def cluster():
    """A head and a second node, one CPU each; stopped at the end whatever happened."""
    local = LocalCluster(cpus_per_node=1)
    try:
        local.start(nodes=2)
        yield local
    finally:
        local.stop()
        assert local.leftovers() == [], "ray processes left running"


def _in_cluster(cluster: LocalCluster, *args: object, cache: Path) -> subprocess.Popen:
    env = {**cluster.env, "XDG_CACHE_HOME": str(cache), "GREENPATCH_CACHE": str(cache / "gp")}
    command = cluster.command(sys.executable, "-m", "greenpatch.agent", *args)
    # A session of its own: killing the driver kills nothing of the test's.
    return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)  # fmt: skip


def _outcomes(path: Path) -> dict[str, str]:
    return {t["id"]: t["outcome"] for t in json.loads(path.read_text())["tests"]}


@on_cluster(timeout=900)
def test_agent_test_on_the_cluster_matches_a_local_run(cluster: LocalCluster,
                                                       tmp_path: Path) -> None:  # fmt: skip
    compat = load_compat()
    (spec,) = compat.load_specs(only=["six"])
    repo = compat.prepare_repo(spec, compat.fetch_sdist(spec))
    python = compat.prepare_venv(spec, repo)
    tree_before = git(repo, "status", "--porcelain")  # pip's editable install may touch egg-info
    # A mutant: iterkeys yields the values. Some tests fail, the rest pass, in both runs.
    text = (repo / "six.py").read_text()
    bad = text.replace("return iter(d.keys(**kw))", "return iter(d.values(**kw))", 1)
    assert bad != text
    patch = tmp_path / "mutant.patch"
    patch.write_text("".join(difflib.unified_diff(text.splitlines(True), bad.splitlines(True),
                                                  "a/six.py", "b/six.py")))  # fmt: skip
    cache = tmp_path / "cache"
    for name, extra in (("all", ["--all"]), ("mutant", ["--patch", patch])):
        runs = {}
        for where in ("local", "cluster"):
            out = tmp_path / f"{name}-{where}.json"
            args = ["test", "--repo", repo, "--python", python, *extra, "--json", out,
                    "--junit", tmp_path / f"{name}-{where}.xml", "-q"]  # fmt: skip
            if where == "cluster":
                args += ["--cluster", "ray", "--ray-address", cluster.address]
            proc = _in_cluster(cluster, *args, cache=cache)
            _, err = proc.communicate(timeout=600)
            assert proc.returncode in (0, 1), err
            runs[where] = _outcomes(out)
        assert runs["cluster"] == runs["local"], name
        report = json.loads((tmp_path / f"{name}-cluster.json").read_text())
        assert report["cluster"]["nodes"] == 2
        junit = (tmp_path / f"{name}-cluster.xml").read_text()
        assert junit.count("<testcase") == len(runs["cluster"])
        if name == "all":
            # The whole suite, in chunks over both nodes.
            assert len(runs["local"]) > 50 and report["cluster"]["chunks"] > 2
            assert set(runs["local"].values()) <= {"passed", "skipped"}
        else:
            # The tests selection picks for the change; the one on dict iterators fails.
            assert runs["cluster"]["test_six.py::test_dictionary_iterators"] == "failed"
    assert git(repo, "status", "--porcelain") == tree_before


def _events(journal: Path) -> list[tuple[str, str, str]]:
    """The journal's events, read beside the running batch (SQLite WAL allows a reader)."""
    if not journal.exists():
        return []
    db = sqlite3.connect(f"file:{journal}?mode=ro", uri=True, timeout=10)
    try:
        return list(db.execute("SELECT id, state, detail FROM events ORDER BY seq"))
    except sqlite3.OperationalError:
        return []
    finally:
        db.close()


# A model server that accepts connections and never answers (a hung GPU box): it notes each one.
BLACK_HOLE = """
import socket, sys, time
server = socket.create_server(("127.0.0.1", 0))
print(server.getsockname()[1], flush=True)
held = []
while True:
    conn, _ = server.accept()
    held.append(conn)
    with open(sys.argv[1], "a") as log:
        log.write("connection\\n")
"""


@on_cluster(timeout=600)
def test_a_ticket_stuck_past_its_budget_is_cancelled(cluster: LocalCluster,
                                                     tmp_path: Path) -> None:  # fmt: skip
    log = tmp_path / "connections.log"
    server = subprocess.Popen(cluster.command(sys.executable, "-c", BLACK_HOLE, log),
                              stdout=subprocess.PIPE, text=True)  # fmt: skip
    try:
        port = int(server.stdout.readline())
        test = "from calc import add\n\n\ndef test_add():\n    assert add(2, 3) == 5\n"
        repo = make_repo(tmp_path / "calc", {"calc.py": "def add(a, b):\n    return a - b\n",
                                             "test_calc.py": test})  # fmt: skip
        backlog = tmp_path / "backlog.jsonl"
        backlog.write_text(json.dumps({"id": "stuck", "title": "add subtracts", "body": "add",
                                       "repo": str(repo), "tests": ["test_calc.py::test_add"]}))
        journal = tmp_path / "journal.sqlite"
        # The node waits on the server (minutes of timeouts and retries) far past the ticket's
        # 5 s budget. The cancel grace is not a flag: set through the batch's API.
        code = (
            "from pathlib import Path\n"
            "from greenpatch.agent.batch.run import Batch, BatchRequest\n"
            "from greenpatch.agent.output import Reporter\n"
            f"flags = dict(model='http://127.0.0.1:{port}/v1', workers=1, budget=5, "
            f"cancel_grace=5, cluster='ray', ray_address={cluster.address!r})\n"
            f"batch = Batch(BatchRequest({str(backlog)!r}, None, flags, Path({str(journal)!r})),"
            " Reporter(None, quiet=True))\n"
            "report = batch.run()\nbatch.close()\n"
            "print(report['tickets'][0]['status'], report['tickets'][0]['reason'])\n"
        )
        env = {**cluster.env, "XDG_CACHE_HOME": str(tmp_path / "cache")}
        began = time.monotonic()
        done = subprocess.run(cluster.command(sys.executable, "-c", code), env=env,
                              capture_output=True, text=True, timeout=400)  # fmt: skip
        took = time.monotonic() - began
    finally:
        server.kill()
        server.wait()
    assert done.returncode == 0, done.stderr
    status, reason = done.stdout.strip().splitlines()[-1].split(" ", 1)
    assert status == "failed" and reason.startswith("cancelled on 127.0.0.1/"), reason
    assert log.read_text().count("connection") >= 1  # it was stuck on the server
    # Cancelled at budget + grace after its start (a new worker's imports come before), not
    # after the server's minutes of timeouts.
    assert took < 120
    assert [s for i, s, _ in _events(journal) if s in FINAL] == ["failed"]


def _branches(repos: list[Path]) -> dict[str, str]:
    """{branch: sha} of every branch but main; each must be one commit on main."""
    made = {}
    for repo in repos:
        main = git(repo, "rev-parse", "main").strip()
        for line in git(repo, "for-each-ref", "--format=%(refname:short) %(objectname)",
                        "refs/heads/").splitlines():  # fmt: skip
            name, sha = line.split()
            if name != "main":
                made[name] = sha
                assert git(repo, "rev-parse", f"{sha}^").strip() == main
        assert git(repo, "status", "--porcelain") == ""
        assert git(repo, "symbolic-ref", "HEAD").strip() == "refs/heads/main"
    return made


@on_cluster(timeout=900)
def test_a_driver_killed_mid_batch_resumes(cluster: LocalCluster, tmp_path: Path) -> None:
    backlog, repos = stockroom_backlog(tmp_path, copies=1)
    journal = tmp_path / "journal.sqlite"
    args = ["batch", backlog, "--journal", journal, "--drafter", "edits", "--workers", "1",
            "--budget", "200", "--cluster", "ray", "--ray-address", cluster.address, "-q",
            "--json", "-"]  # fmt: skip
    proc = _in_cluster(cluster, *args, cache=tmp_path / "cache")
    # SIGKILL, as a driver machine that dies, once both tickets run on the nodes.
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        notes = [i for i, s, d in _events(journal) if s == "node" and "with its result" not in d]
        if len(set(notes)) == 2:
            os.killpg(proc.pid, signal.SIGKILL)
            break
        time.sleep(0.3)
    proc.communicate()
    assert proc.returncode == -signal.SIGKILL, "the batch ended before both tickets ran"
    proc = _in_cluster(cluster, *args, "--resume", cache=tmp_path / "cache")
    out, err = proc.communicate(timeout=800)
    assert proc.returncode == 0, err
    report = json.loads(out)
    events = _events(journal)
    for ticket in report["tickets"]:
        states = [s for i, s, _ in events if i == ticket["id"]]
        assert [s for s in states if s in FINAL] == ["green"], (ticket["id"], states)
    with sqlite3.connect(journal) as db:
        green = dict(db.execute("SELECT branch, sha FROM tickets WHERE state='green'"))
    assert _branches(repos) == green and len(green) == 2


@on_cluster(timeout=600)
def test_parallel_caps_the_tickets_in_flight_on_the_cluster(cluster: LocalCluster,
                                                              tmp_path: Path) -> None:
    # Two nodes have room for two tickets at once; --parallel 1 asks for one at a time.
    backlog, _ = stockroom_backlog(tmp_path, copies=1)
    journal = tmp_path / "journal.sqlite"
    proc = _in_cluster(cluster, "batch", backlog, "--journal", journal, "--drafter", "edits",
                       "--workers", "1", "--budget", "200", "--parallel", "1", "--cluster",
                       "ray", "--ray-address", cluster.address, "-q", "--json", "-",
                       cache=tmp_path / "cache")  # fmt: skip
    out, err = proc.communicate(timeout=500)
    assert proc.returncode == 0, err
    steps = [(i, s) for i, s, _ in _events(journal) if s in ("running", "green")]
    # Each ticket is green before the next one starts running.
    first, second = steps[0][0], steps[2][0]
    assert steps == [(first, "running"), (first, "green"), (second, "running"),
                     (second, "green")] and first != second, steps
    assert len(json.loads(out)["tickets"]) == 2


@on_cluster(timeout=900)
def test_batch_across_two_nodes_survives_a_node_killed_mid_ticket(
    cluster: LocalCluster, tmp_path: Path
) -> None:
    backlog, repos = stockroom_backlog(tmp_path, copies=2)
    journal = tmp_path / "journal.sqlite"
    (second,) = [node for node, alive, head in cluster.node_ids() if alive and not head]
    proc = _in_cluster(cluster, "batch", backlog, "--journal", journal, "--drafter", "edits",
                       "--workers", "1", "--budget", "200", "--cluster", "ray",
                       "--ray-address", cluster.address, "-q", "--json", "-",
                       cache=tmp_path / "cache")  # fmt: skip
    # Kill the second node while a ticket runs on it: the node told the driver it started the
    # ticket (the journal notes it), and its worker still runs the task (titled by its name).
    victim = None
    deadline = time.monotonic() + 300
    while victim is None and time.monotonic() < deadline and proc.poll() is None:
        events = _events(journal)
        finished = {i for i, s, _ in events if s in FINAL}
        # Told by the node as it starts (not with a result: that ticket is done).
        on_second = [i for i, s, d in events
                     if s == "node" and second[:8] in d and "with its result" not in d]
        if (on_second and on_second[-1] not in finished
                and cluster.running(1, "ray::greenpatch:")):  # fmt: skip
            victim = on_second[-1]
            cluster.kill_node(1)
        time.sleep(0.2)
    assert victim is not None, "no ticket ever ran on the second node"
    out, err = proc.communicate(timeout=800)
    assert proc.returncode == 0, err  # every ticket green
    report = json.loads(out)  # standard output holds the JSON and nothing else, Ray's too
    assert sorted(t["id"] for t in report["tickets"]) == sorted(
        ["stock-1-minimum", "stock-1-total", "stock-2-minimum", "stock-2-total"])
    events = _events(journal)
    nodes = {}
    for ticket in report["tickets"]:
        states = [s for i, s, _ in events if i == ticket["id"]]
        assert [s for s in states if s in FINAL] == ["green"], (ticket["id"], states)
        nodes[ticket["id"]] = [d for i, s, d in events if i == ticket["id"] and s == "node"]
    # The killed node's ticket ran again on the head, and was reported once.
    assert len(nodes[victim]) == 2 and second[:8] in nodes[victim][0], nodes
    assert second[:8] not in nodes[victim][1]
    assert {t["id"]: t["attempts"] for t in report["tickets"]}[victim] == 2
    assert f"{victim}: node 127.0.0.1/{second[:8]} lost mid-ticket" in err
    # Both nodes ran tickets before the kill.
    assert len({d.split(" on ")[1].split(" (")[0] for ds in nodes.values() for d in ds}) == 2
    # The branches are exactly the journal's, one commit each on main; the user's trees clean.
    with sqlite3.connect(journal) as db:
        green = dict(db.execute("SELECT branch, sha FROM tickets WHERE state='green'"))
    assert _branches(repos) == green and len(green) == 4
