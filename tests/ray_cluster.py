"""A real Ray cluster on 127.0.0.1 for the tests: a head and more nodes, each `ray start --block`.

Ray advertises a node by the address that routes to the outside, even when told 127.0.0.1; so
the cluster lives in a network namespace of its own with nothing but loopback, where 127.0.0.1
is all there is (no packet of it leaves the machine). Everything that talks to the cluster (the
`agent` command under test) runs in that namespace too: `cluster.command(...)`.

Every node is one process group of our own (`ray start --block` in a new session, with its
raylet and workers): `kill_node` ends one group (a node dying mid-ticket), `stop` ends them all
and then any process still naming the cluster's temp folder, by id, never by name.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent
RAY = VENV_BIN / "ray"
PORT = 6379
START_TIMEOUT = 180.0


def available() -> str | None:
    """Why a cluster cannot be made here, or None."""
    if os.geteuid() != 0:
        return "a network namespace needs root"
    if shutil.which("ip") is None:
        return "iproute2 (ip netns) is not installed"
    if not RAY.exists():
        return "ray is not installed (pip install 'ray==2.60.0')"
    return None


class LocalCluster:
    def __init__(self, cpus_per_node: int = 1) -> None:
        self.cpus = cpus_per_node
        # Short: Ray's unix sockets live under it, and their paths have a length limit.
        self.tmp = Path(tempfile.mkdtemp(prefix="gpray", dir="/tmp"))
        self.netns = f"gp-ray-{os.getpid()}-{self.tmp.name[-6:]}"
        self.address = f"127.0.0.1:{PORT}"
        self.nodes: list[subprocess.Popen] = []
        # The nodes' caches (baselines, worktrees) and temporary files: in the cluster's folder.
        self.env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0",
                    "XDG_CACHE_HOME": str(self.tmp / "cache"),
                    "GREENPATCH_CACHE": str(self.tmp / "cache" / "greenpatch"),
                    "TMPDIR": str(self.tmp / "tmp")}  # fmt: skip
        (self.tmp / "tmp").mkdir()
        subprocess.run(["ip", "netns", "add", self.netns], check=True)
        subprocess.run(["ip", "-n", self.netns, "link", "set", "lo", "up"], check=True)

    def command(self, *args: object) -> list[str]:
        """argv that runs `args` inside the cluster's network namespace."""
        return ["ip", "netns", "exec", self.netns, *map(str, args)]

    def _start(self, *args: str) -> subprocess.Popen:
        log = open(self.tmp / f"node{len(self.nodes)}.log", "wb")  # noqa: SIM115 - the node's
        argv = self.command(RAY, "start", "--block", f"--num-cpus={self.cpus}",
                            "--disable-usage-stats", f"--temp-dir={self.tmp / 'ray'}",
                            *args)  # fmt: skip
        node = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=self.env,
                                start_new_session=True)  # fmt: skip
        self.nodes.append(node)
        return node

    def start(self, nodes: int = 2) -> LocalCluster:
        """A head and `nodes - 1` more nodes, returned when every one has joined."""
        self._start("--head", f"--port={PORT}", "--include-dashboard=false")
        self.wait_nodes(1)
        for _ in range(nodes - 1):
            self.add_node()
        return self

    def add_node(self) -> int:
        """One more node; its index (for kill_node) once it has joined."""
        self._start(f"--address={self.address}")
        self.wait_nodes(len(self.nodes))
        return len(self.nodes) - 1

    def node_ids(self) -> list[tuple[str, bool, bool]]:
        """(node id, alive, is head) of every node the cluster knows."""
        code = (
            "import json, logging, ray\n"
            f"ray.init(address={self.address!r}, logging_level=logging.ERROR, "
            "log_to_driver=False)\n"
            "print(json.dumps([(n['NodeID'], n['Alive'], "
            "'node:__internal_head__' in n['Resources']) for n in ray.nodes()]))\n"
        )
        done = subprocess.run(self.command(sys.executable, "-c", code), capture_output=True,
                              text=True, env=self.env, timeout=120)  # fmt: skip
        if done.returncode != 0:
            return []
        return [tuple(n) for n in json.loads(done.stdout.strip().splitlines()[-1])]

    def wait_nodes(self, count: int) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            for node in self.nodes:
                if node.poll() is not None:
                    raise RuntimeError(f"a ray node exited ({node.returncode}): {self.logs()}")
            if sum(alive for _, alive, _ in self.node_ids()) >= count:
                return
            time.sleep(1.0)
        raise RuntimeError(f"{count} ray nodes did not join in {START_TIMEOUT:.0f} s")

    def running(self, index: int, title: str) -> list[int]:
        """Processes of one node whose title starts with `title` (a Ray worker is titled
        `ray::FUNCTION` while it runs a task of FUNCTION, `ray::IDLE` between tasks)."""
        found = []
        for pid in _descendants(self.nodes[index].pid):
            try:
                if Path(f"/proc/{pid}/cmdline").read_bytes().startswith(title.encode()):
                    found.append(pid)
            except OSError:
                continue
        return found

    def kill_node(self, index: int) -> None:
        """SIGKILL everything of one node at once, as a machine that dies: its process group
        and every process descended from it (a worker may sit in a session of its own, and a
        worker left alive would still hand its result to the driver)."""
        node = self.nodes[index]
        if node.poll() is None:
            doomed = _descendants(node.pid)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(node.pid, signal.SIGKILL)
            for pid in doomed:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            node.wait()

    def logs(self) -> str:
        return "\n".join(p.read_text(errors="replace")[-2000:] for p in self.tmp.glob("*.log"))

    def stop(self) -> None:
        # Known before the nodes go: a worker renames itself (ray::...), and its parent dies.
        self.tree = [pid for node in self.nodes if node.poll() is None
                     for pid in _descendants(node.pid)]  # fmt: skip
        for node in self.nodes:
            if node.poll() is None:
                os.killpg(node.pid, signal.SIGTERM)
        deadline = time.monotonic() + 15
        for node in self.nodes:
            try:
                node.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(node.pid, signal.SIGKILL)
                node.wait()
        for pid in [*self.leftovers(), *self.tree]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        subprocess.run(["ip", "netns", "del", self.netns], check=False)
        shutil.rmtree(self.tmp, ignore_errors=True)

    def leftovers(self) -> list[int]:
        """Processes of this cluster still running: their command line names its folder, or
        they were below a node when it was stopped."""
        marker = str(self.tmp).encode()
        found = [pid for pid in getattr(self, "tree", []) if Path(f"/proc/{pid}").exists()
                 and not _zombie(pid)]  # fmt: skip
        for proc in Path("/proc").iterdir():
            if not proc.name.isdigit():
                continue
            try:
                if marker in (proc / "cmdline").read_bytes():
                    found.append(int(proc.name))
            except OSError:
                continue
        return found


def _zombie(pid: int) -> bool:
    try:
        return (Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]) == "Z"
    except (OSError, IndexError):
        return True


def _descendants(root: int) -> list[int]:
    """Every process below `root` in the process tree (from /proc's parent ids)."""
    children: dict[int, list[int]] = {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            # The parent id follows the command name, which is in parentheses.
            parent = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(parent, []).append(int(proc.name))
    found, todo = [], [root]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def stockroom_backlog(where: Path, copies: int) -> tuple[Path, list[Path]]:
    """A backlog of two tickets on each of `copies` fresh copies of the stockroom example
    (both fixable without a model); its path and the repositories."""
    repos, lines = [], []
    ticket = (ROOT / "examples" / "tickets" / "stockroom.md").read_text()
    for copy in range(1, copies + 1):
        repo = where / f"stock-{copy}"
        subprocess.run([sys.executable, str(ROOT / "examples" / "prepare.py"), "stockroom",
                        str(repo)], check=True, capture_output=True)  # fmt: skip
        repos.append(repo)
        lines += [
            {"id": f"stock-{copy}-minimum", "title": "Bulk discount starts late", "body": ticket,
             "repo": str(repo),
             "tests": ["tests/test_pricing.py::test_discount_starts_exactly_at_tier_minimum"]},
            {"id": f"stock-{copy}-total", "title": "Line total at a tier boundary",
             "body": "200 units cost 360.00 instead of 340.00\n", "repo": str(repo),
             "tests": ["tests/test_pricing.py::test_line_total_at_tier_boundary"]},
        ]  # fmt: skip
    path = where / "backlog.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path, repos
