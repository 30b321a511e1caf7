#!/usr/bin/env python3
"""What the Ray cluster path costs per ticket against the local batch, and what it ships.

A real cluster on 127.0.0.1 (tests/ray_cluster.py: a head and a second node, one CPU each, in a
network namespace with nothing but loopback). In one run, side by side, on fresh copies of the
same tickets (stockroom example, two tickets on each of `--copies` repositories, `--drafter
edits`, one test worker per ticket):

1. local: `agent batch --parallel 2 --workers 1` (two tickets at once on this machine);
2. cluster: `agent batch --cluster ray --workers 1` (two nodes of one CPU: two at once);
3. transport alone, `--trips` times: the commit bundled and put in the object store, a task
   that clones it, commits a change and bundles the branch back, the driver unbundling it and
   making the branch: the cluster's per-ticket floor with no fixing in it.

Per ticket: its wall time on the driver, the time `agent fix` took (on the node, or in the
local thread), the overhead (the difference) split into dispatch + worker start, unpacking the
bundle and adopting the branch; bytes of the commit bundle (put once per commit: the object
store moves it to each node once) and of the branch bundle back.

    .venv/bin/python benchmarks/cluster_overhead.py [--copies 2] [--trips 10] [--json OUT]

Needs root (a network namespace) and Ray (pip install 'ray==2.60.0').
"""

from __future__ import annotations

import argparse
import json
import logging
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.ray_cluster import LocalCluster, available, stockroom_backlog  # noqa: E402


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def run_batch(cluster: LocalCluster, where: Path, copies: int, on_cluster: bool) -> dict:
    where.mkdir(parents=True)
    path, _ = stockroom_backlog(where, copies)
    args = [sys.executable, "-m", "greenpatch.agent", "batch", str(path), "--journal",
            str(where / "journal.sqlite"), "--drafter", "edits", "--workers", "1",
            "--budget", "300", "-q", "--json", str(where / "report.json")]  # fmt: skip
    args += (["--cluster", "ray", "--ray-address", cluster.address] if on_cluster
             else ["--parallel", "2"])  # fmt: skip
    env = {**cluster.env, "XDG_CACHE_HOME": str(where / "cache"),
           "GREENPATCH_CACHE": str(where / "cache" / "greenpatch")}  # fmt: skip
    began = time.monotonic()
    done = subprocess.run(cluster.command(*args), env=env, capture_output=True, text=True,
                          cwd=where, timeout=3600)  # fmt: skip
    wall = time.monotonic() - began
    if done.returncode not in (0, 1):
        raise SystemExit(f"agent batch failed ({done.returncode}): {done.stderr[-2000:]}")
    tickets = []
    with sqlite3.connect(where / "journal.sqlite") as db:
        for ticket_id, state, seconds, report in db.execute(
            "SELECT id, state, seconds, report FROM tickets ORDER BY seq"
        ):
            data = json.loads(report) if report else {}
            tickets.append({"id": ticket_id, "state": state, "seconds": seconds,
                            "fix_seconds": data.get("seconds"),
                            "cluster": data.get("cluster")})  # fmt: skip
    return {"wall": wall, "tickets": tickets}


# --- transport alone (runs inside the cluster's namespace) ---------------------------------------


def _node_trip(bundle: bytes, base: str) -> dict:
    """On a node: clone the commit, commit one change on a branch, bundle that branch."""
    from greenpatch.runner.cluster import bundle_branch, unpack_commit

    began = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="greenpatch-ray-") as tmp:
        root = unpack_commit(bundle, Path(tmp) / "repo", base)
        unpacked = time.monotonic() - began
        (root / "TRIP.txt").write_text("a change\n")
        git = ["git", "-c", "user.name=b", "-c", "user.email=b@b"]
        subprocess.run([*git, "add", "TRIP.txt"], cwd=root, check=True)
        subprocess.run([*git, "commit", "-qm", "trip"], cwd=root, check=True)
        subprocess.run(["git", "branch", "trip"], cwd=root, check=True)
        back = bundle_branch(root, "trip", base)
    return {"unpack": unpacked, "task": time.monotonic() - began, "bundle": back}


def transport(address: str, repo: Path, trips: int) -> list[dict]:
    import ray
    from greenpatch.agent.publish.branch import place_commit
    from greenpatch.runner.cluster import bundle_commit, unpack_branch

    ray.init(address=address, logging_level=logging.ERROR, log_to_driver=False)
    trip = ray.remote(_node_trip).options(num_cpus=1)
    base = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True,
                          text=True, check=True).stdout.strip()  # fmt: skip
    rows = []
    for n in range(trips):
        began = time.monotonic()
        bundle = bundle_commit(repo, base)
        ref = ray.put(bundle)
        shipped = time.monotonic() - began
        result = ray.get(trip.remote(ref, base))
        returned = time.monotonic()
        heads = unpack_branch(repo, result["bundle"])
        place_commit(repo, heads["refs/heads/trip"], f"trip-{n}")
        rows.append({"ship": shipped, "unpack": result["unpack"], "task": result["task"],
                     "adopt": time.monotonic() - returned, "total": time.monotonic() - began,
                     "bytes_out": len(bundle), "bytes_back": len(result["bundle"])})  # fmt: skip
    ray.shutdown()
    return rows


# --- the driver's own bookkeeping and bigger commits ---------------------------------------------


def journal_costs(where: Path, tickets: int, sample: int) -> dict:
    """The journal at `tickets` tickets: adding them, one ticket's writes (running, its node,
    final; each one fsync'd transaction), one full read (a batch's start and report) and one
    ticket read by its key (publishing a pull request)."""
    from greenpatch.agent.batch.journal import Journal
    from greenpatch.agent.batch.sources import BatchTicket

    items = [BatchTicket.from_record({"id": f"t{n}", "title": f"ticket {n}", "body": "x" * 400,
                                      "tests": [], "url": "", "repo": str(where)})
             for n in range(tickets)]  # fmt: skip
    with Journal(where / "journal.sqlite") as journal:
        began = time.monotonic()
        journal.add(items)
        added = time.monotonic() - began
        began = time.monotonic()
        for n in range(sample):
            journal.start(f"t{n}", "0" * 40, f"greenpatch/t{n}")
            journal.note(f"t{n}", "node", "attempt 1 on 127.0.0.1/00000000")
            journal.finish(f"t{n}", "green", commit="1" * 40, seconds=1.0)
        writes = (time.monotonic() - began) / sample
        began = time.monotonic()
        journal.entries()
        read = time.monotonic() - began
        began = time.monotonic()
        for n in range(sample):
            journal.get(f"t{tickets - 1 - n}")
        one = (time.monotonic() - began) / sample
    return {"tickets": tickets, "add_seconds": added, "per_ticket_writes_seconds": writes,
            "entries_seconds": read, "get_seconds": one}  # fmt: skip


def bundle_sizes() -> list[dict]:
    """The commit bundle of real projects (the compat matrix's repos, when cached here)."""
    from greenpatch.runner.cluster import bundle_commit

    repos = Path.home() / ".cache" / "greenpatch" / "compat" / "repos"
    rows = []
    for name in ("six-1.17.0", "attrs-26.1.0", "networkx-3.6.1"):
        repo = repos / name
        if not (repo / ".git").is_dir():
            continue
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True,
                              text=True, check=True).stdout.strip()  # fmt: skip
        began = time.monotonic()
        size = len(bundle_commit(repo, head))
        rows.append({"repo": name, "bytes": size, "seconds": time.monotonic() - began})
    return rows


# --- report --------------------------------------------------------------------------------------


def ms(value: float | None) -> str:
    return "-" if value is None else f"{value * 1000:,.0f}"


def med(values: list[float]) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--copies", type=int, default=2, help="repositories, two tickets each")
    parser.add_argument("--trips", type=int, default=10, help="transport round trips")
    parser.add_argument("--json", type=Path, help="write the figures here")
    parser.add_argument("--transport", nargs=3, metavar=("ADDRESS", "REPO", "TRIPS"),
                        help=argparse.SUPPRESS)  # the inner run, inside the namespace
    args = parser.parse_args()
    if args.transport:
        address, repo, trips = args.transport
        print(json.dumps(transport(address, Path(repo), int(trips))))
        return 0
    why = available()
    if why:
        raise SystemExit(f"cannot start a local Ray cluster here: {why}")
    before = loadavg()
    work = Path(tempfile.mkdtemp(prefix="gp-cluster-bench-"))
    cluster = LocalCluster(cpus_per_node=1)
    try:
        began = time.monotonic()
        cluster.start(nodes=2)
        start_seconds = time.monotonic() - began
        local = run_batch(cluster, work / "local", args.copies, on_cluster=False)
        remote = run_batch(cluster, work / "cluster", args.copies, on_cluster=True)
        repo = work / "trips"
        subprocess.run([sys.executable, str(ROOT / "examples" / "prepare.py"), "stockroom",
                        str(repo)], check=True, capture_output=True)  # fmt: skip
        done = subprocess.run(cluster.command(sys.executable, __file__, "--transport",
                                              cluster.address, repo, args.trips),
                              env=cluster.env, capture_output=True, text=True, timeout=1800,
                              cwd=ROOT)  # fmt: skip
        if done.returncode != 0:
            raise SystemExit(f"transport run failed: {done.stderr[-2000:]}")
        trips = json.loads(done.stdout.strip().splitlines()[-1])
        journal = journal_costs(work, 10_000, 200)
        bundles = bundle_sizes()
    finally:
        cluster.stop()
    after = loadavg()

    print(f"cluster: head + 1 node, 1 CPU each, on 127.0.0.1 (started in {start_seconds:.1f} s); "
          f"load {before} before, {after} after")
    print("\nper ticket (ms): wall on the driver, agent fix itself, overhead = the difference")
    print("| ticket | local wall | local fix | local overhead | cluster wall | cluster fix "
          "| cluster overhead | of which start | unpack | adopt | node | bytes out | bytes back |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    rows = []
    for a, b in zip(local["tickets"], remote["tickets"], strict=True):
        c = b["cluster"] or {}
        loc_over = a["seconds"] - a["fix_seconds"] if a["fix_seconds"] is not None else None
        fix = c.get("fix_seconds")
        over = c["driver_seconds"] - fix if c and fix is not None else None
        rows.append({"id": a["id"], "local_state": a["state"], "cluster_state": b["state"],
                     "local_wall": a["seconds"], "local_fix": a["fix_seconds"],
                     "local_overhead": loc_over, "cluster_wall": c.get("driver_seconds"),
                     "cluster_fix": fix, "cluster_overhead": over, **c})  # fmt: skip
        print(f"| {a['id']} ({a['state']}/{b['state']}) | {ms(a['seconds'])} | "
              f"{ms(a['fix_seconds'])} | {ms(loc_over)} | {ms(c.get('driver_seconds'))} | "
              f"{ms(fix)} | {ms(over)} | {ms(c.get('start_seconds'))} | "
              f"{ms(c.get('unpack_seconds'))} | {ms(c.get('adopt_seconds'))} | "
              f"{c.get('node', '-')} | {c.get('shipped_bytes', '-')} | "
              f"{c.get('returned_bytes', '-')} |")
    # Warm: a worker process that had run a ticket before (it started within a second).
    # The rest paid a new worker's imports; locally, the first ticket of a repository builds
    # the shared baseline before its fix starts.
    warm = [r for r in rows if (r.get("start_seconds") or 0) < 1.0]
    cold = [r for r in rows if r not in warm]
    print(f"\nmedian overhead per ticket, warm worker: cluster "
          f"{ms(med([r['cluster_overhead'] for r in warm]))} ms over {len(warm)} tickets, local "
          f"{ms(med([r['local_overhead'] for r in warm]))} ms for the same tickets; a new worker"
          f" process: {ms(med([r['cluster_overhead'] for r in cold]))} ms over {len(cold)}")
    print(f"batch wall: local {local['wall']:.1f} s, cluster {remote['wall']:.1f} s, ratio "
          f"{remote['wall'] / local['wall']:.2f}")
    shipped = sum(r.get("shipped_bytes", 0) for r in rows) / max(1, len(rows))
    back = sum(r.get("returned_bytes", 0) for r in rows) / max(1, len(rows))
    print(f"bytes per ticket: commit bundle {shipped:,.0f} (one per commit, {len(rows) // 2} "
          f"tickets share each), fix branch back {back:,.0f}")
    warm = trips[1:] or trips
    print(f"\ntransport alone, {len(trips)} round trips (first one cold: a new worker process): "
          f"first {ms(trips[0]['total'])} ms; then median {ms(med([t['total'] for t in warm]))}"
          f" ms = ship {ms(med([t['ship'] for t in warm]))} + task "
          f"{ms(med([t['task'] for t in warm]))} (unpack {ms(med([t['unpack'] for t in warm]))})"
          f" + adopt {ms(med([t['adopt'] for t in warm]))} + Ray's dispatch and return; "
          f"{trips[0]['bytes_out']:,} bytes out, {trips[0]['bytes_back']:,} back")
    print(f"\njournal at {journal['tickets']:,} tickets: adding them "
          f"{journal['add_seconds']:.2f} s;"
          f" one ticket's writes (running, node, final: 3 fsync'd transactions) "
          f"{ms(journal['per_ticket_writes_seconds'])} ms; reading it whole "
          f"{ms(journal['entries_seconds'])} ms, one ticket by its key "
          f"{journal['get_seconds'] * 1000:.2f} ms")
    for row in bundles:
        print(f"commit bundle of {row['repo']}: {row['bytes']:,} bytes, made in "
              f"{ms(row['seconds'])} ms")
    if args.json:
        args.json.write_text(json.dumps({
            "date": time.strftime("%Y-%m-%d"), "load_before": before, "load_after": after,
            "cluster_start_seconds": start_seconds, "local": local, "cluster": remote,
            "rows": rows, "trips": trips, "journal": journal, "bundles": bundles,
        }, indent=2, default=str))  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
