"""End to end over HTTP: `agent serve` (the embedded model) in a subprocess on 127.0.0.1, then
`agent fix --model http://127.0.0.1:PORT/v1` turns example tickets green and `agent batch` of
three tickets shares that one server; the key is in no file any of it wrote.

Two tickets here keep CI short; `python benchmarks/remote_examples.py` runs all five."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from greenpatch.agent.tickets import load_ticket

ROOT = Path(__file__).resolve().parents[1]
KEY = "gp-e2e-key-0b9e47d2"
pytestmark = pytest.mark.slow


@dataclass
class Server:
    url: str
    proc: subprocess.Popen
    log: list[str] = field(default_factory=list)

    def count(self, what: str) -> int:
        return sum(what in line for line in list(self.log))


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    env = {**os.environ, "GREENPATCH_API_KEY": KEY}
    proc = subprocess.Popen([sys.executable, "-m", "greenpatch.agent",
                             "serve", "--port", "0"], env=env,
                            stderr=subprocess.PIPE, text=True)  # fmt: skip
    first = proc.stderr.readline()
    assert first.startswith("serving "), first
    served = Server(first.split(" on ")[1].strip(), proc, [first])
    threading.Thread(target=lambda: served.log.extend(proc.stderr), daemon=True).start()
    root = served.url.removesuffix("/v1")
    deadline = time.monotonic() + 120
    while httpx.get(f"{root}/ready").status_code != 200:
        assert time.monotonic() < deadline, "the server never got ready"
        time.sleep(0.2)
    yield served
    proc.terminate()
    assert proc.wait(timeout=60) == 0


def _env(cache: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "COV_"))}
    return {**env, "GREENPATCH_API_KEY": KEY, "XDG_CACHE_HOME": str(cache)}


def _prepare(name: str, dest: Path) -> Path:
    subprocess.run([sys.executable, str(ROOT / "examples" / "prepare.py"), name, str(dest)],
                   check=True, capture_output=True)  # fmt: skip
    return dest


def _agent(*args: object, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "greenpatch.agent",
                           *map(str, args)], capture_output=True,
                          text=True, timeout=900, env=env)  # fmt: skip


def _files_holding(root: Path, secret: str) -> list[str]:
    files = [p for p in root.rglob("*") if p.is_file() and not p.is_symlink()]
    return [str(p) for p in files if secret.encode() in p.read_bytes()]


@pytest.mark.parametrize("name", ["stockroom", "timespan"])
def test_fix_through_the_server_is_green(server: Server, tmp_path: Path, name: str) -> None:
    repo = _prepare(name, tmp_path / name)
    out = tmp_path / "fix.json"
    done = _agent("fix", ROOT / "examples" / "tickets" / f"{name}.md", "--repo", repo,
                  "--model", server.url, "--sandbox", "process", "--budget", "240",
                  "--json", out, "-q", env=_env(tmp_path / "cache"))  # fmt: skip
    assert done.returncode == 0, done.stderr
    report = json.loads(out.read_text())
    assert report["status"] == "green" and report["model"].startswith("greenpatch-embedded @ ")
    assert report["model_server"]["url"] == server.url
    assert set(report["model_server"]["usage"]) >= {"requests", "prompt_tokens"}
    assert _files_holding(tmp_path, KEY) == []
    assert KEY not in done.stdout + done.stderr


def test_a_batch_of_three_shares_one_server(server: Server, tmp_path: Path) -> None:
    lines = []
    # The two quickest examples, one of them twice in its own repository: CI time stays short
    # (slugkit and the others run in benchmarks/remote_examples.py).
    for ticket_id, name in (("stockroom", "stockroom"), ("timespan", "timespan"),
                            ("stockroom-again", "stockroom")):  # fmt: skip
        ticket = load_ticket(str(ROOT / "examples" / "tickets" / f"{name}.md"))
        repo = _prepare(name, tmp_path / ticket_id)
        lines.append(json.dumps({"id": ticket_id, "title": ticket.title, "body": ticket.body,
                                 "tests": list(ticket.tests), "repo": str(repo)}))  # fmt: skip
    backlog = tmp_path / "backlog.jsonl"
    backlog.write_text("\n".join(lines) + "\n")
    listed = server.count('"GET /v1/models" 200')
    done = _agent("batch", backlog, "--model", server.url, "--sandbox", "process", "--budget",
                  "240", "--json", tmp_path / "batch.json", "--markdown", tmp_path / "batch.md",
                  "-q", env=_env(tmp_path / "cache"))  # fmt: skip
    assert done.returncode == 0, done.stderr
    report = json.loads((tmp_path / "batch.json").read_text())
    assert [t["status"] for t in report["tickets"]] == ["green"] * 3
    # One model check for the whole batch: the tickets share the connection and its cap.
    assert server.count('"GET /v1/models" 200') == listed + 1
    assert _files_holding(tmp_path, KEY) == []
    cmdline = Path(f"/proc/{server.proc.pid}/cmdline").read_bytes()
    assert KEY.encode() not in cmdline and KEY not in "".join(server.log)
