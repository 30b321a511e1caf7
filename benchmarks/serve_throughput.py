"""Throughput of `agent serve`: 1, 4 and 16 concurrent clients, dynamic batching against one
request at a time, side by side in one run.

    python benchmarks/serve_throughput.py [--model DIR] [--device auto|cpu|cuda] [--seconds S]
        [--threads N] [--cache-every N]

Starts `agent serve` twice on 127.0.0.1: with dynamic batching (`--max-batch 64`) and one
request at a time (`--max-batch 1`), loaded in turn (never both at once). Against each, N client
threads (N = 1, 4, 16) send FIM requests back to back for S seconds, each a random line of the
example projects' sources with its file around it (n=4 samples of up to 8 tokens: what the fix
loop asks per span). Prints requests/s and p50/p99 latency per configuration, and the ratio of
the two servers' requests/s at each N. Also the server's CPU seconds per request (Linux: from
/proc), which a machine shared with other work does not distort: it says what a request costs,
where requests/s says what the share of the CPU the server got bought. The same script runs on
a GPU (`--device cuda`).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
CLIENTS = (1, 4, 16)
MODES = {"dynamic batching": 64, "one at a time": 1}


def canvases(seed: int, count: int = 500) -> list[tuple[str, str]]:
    """(prefix, suffix) pairs: a random non-blank line of an example source file masked."""
    files = sorted((ROOT / "examples").glob("*/src/**/*.py"))
    texts = [f.read_text(encoding="utf-8") for f in files]
    rng = random.Random(seed)
    out = []
    while len(out) < count:
        lines = rng.choice(texts).splitlines(keepends=True)
        i = rng.randrange(len(lines))
        if lines[i].strip():
            indent = lines[i][: len(lines[i]) - len(lines[i].lstrip())]
            out.append(("".join(lines[:i]) + indent, "\n" + "".join(lines[i + 1 :])))
    return out


def start_server(args, max_batch: int) -> tuple[subprocess.Popen, str]:
    command = [sys.executable, "-m", "greenpatch.agent",
               "serve", "--port", "0", "--device", args.device,
               "--max-batch", str(max_batch)]  # fmt: skip
    if args.model:
        command += ["--model", str(args.model)]
    if args.threads:
        command += ["--threads", str(args.threads)]
    if args.cache_every:
        command += ["--cache-every", str(args.cache_every)]
    env = {k: v for k, v in os.environ.items() if k != "GREENPATCH_API_KEY"}
    proc = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, env=env)
    first = proc.stderr.readline()
    if not first.startswith("serving "):
        proc.kill()
        raise SystemExit(f"agent serve did not start: {first.strip()}")
    threading.Thread(target=proc.stderr.read, daemon=True).start()  # drain the access log
    url = first.split(" on ")[1].strip()
    deadline = time.monotonic() + 300
    while httpx.get(url.removesuffix("/v1") + "/ready").status_code != 200:
        if time.monotonic() > deadline:
            raise SystemExit("agent serve never got ready")
        time.sleep(0.2)
    return proc, url


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of a process so far (Linux), None elsewhere."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def load(url: str, model: str, clients: int, seconds: float, pairs, n: int,
         max_tokens: int, pid: int) -> dict:  # fmt: skip
    """`clients` threads sending requests back to back for `seconds`; latencies of the
    requests that started within the window; the server's CPU time meanwhile."""
    latencies: list[float] = []
    errors = [0]
    lock = threading.Lock()
    stop_at = time.monotonic() + seconds
    cpu_before = cpu_seconds(pid)

    def client(k: int) -> None:
        rng = random.Random(k)
        with httpx.Client(timeout=600) as http:
            while time.monotonic() < stop_at:
                prefix, suffix = rng.choice(pairs)
                body = {"model": model, "prompt": prefix, "suffix": suffix,
                        "max_tokens": max_tokens, "n": n, "stream": False}  # fmt: skip
                began = time.monotonic()
                try:
                    status = http.post(f"{url}/fim/completions", json=body).status_code
                except httpx.HTTPError:  # a timeout: counted, never a dead client
                    status = 0
                with lock:
                    if status == 200:
                        latencies.append(time.monotonic() - began)
                    else:
                        errors[0] += 1

    began = time.monotonic()
    threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.monotonic() - began  # includes finishing the requests in flight at the end
    cpu_after = cpu_seconds(pid)
    cpu = None if cpu_before is None or cpu_after is None else cpu_after - cpu_before
    latencies.sort()
    return {
        "clients": clients, "requests": len(latencies), "errors": errors[0],
        "seconds": round(wall, 2), "requests_per_s": round(len(latencies) / wall, 3),
        "cpu_s_per_request": round(cpu / len(latencies), 3) if cpu and latencies else None,
        "p50_ms": round(1000 * statistics.median(latencies), 1) if latencies else None,
        "p99_ms": round(1000 * latencies[min(len(latencies) - 1,
                                             int(0.99 * len(latencies)))], 1)
        if latencies else None,
    }  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, help="model directory (default: the embedded one)")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--seconds", type=float, default=20.0, help="per configuration")
    parser.add_argument("--n", type=int, default=4, help="samples per request")
    parser.add_argument("--max-tokens", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, help="torch threads of each server (CPU)")
    parser.add_argument("--cache-every", type=int, help="each server's --cache-every")
    parser.add_argument("--json", dest="json_out", help="also write the figures to this file")
    args = parser.parse_args(argv)
    pairs = canvases(args.seed)
    results: dict[str, list[dict]] = {mode: [] for mode in MODES}
    servers = {}
    try:
        for mode, max_batch in MODES.items():
            servers[mode] = start_server(args, max_batch)
        model = httpx.get(f"{servers['one at a time'][1]}/models").json()["data"][0]["id"]
        for proc, url in servers.values():
            load(url, model, 2, 3.0, pairs, args.n, args.max_tokens, proc.pid)  # warm up
        # Both servers stay up, loaded in turn at each client count (an idle one costs
        # nothing): the two sides of a ratio are measured minutes apart at most.
        for clients in CLIENTS:
            for mode, (proc, url) in servers.items():
                results[mode].append(load(url, model, clients, args.seconds, pairs, args.n,
                                          args.max_tokens, proc.pid))  # fmt: skip
    finally:
        for proc, _ in servers.values():
            proc.terminate()
            proc.wait(timeout=120)
    threads = args.threads or "torch's default"
    print(f"agent serve, {args.model or 'embedded model'}, device {args.device}, threads "
          f"{threads}, cache every {args.cache_every or '-'}, FIM requests of n={args.n}, "
          f"max_tokens={args.max_tokens}, {args.seconds:g} s per row")
    print(f"{'server':<18} {'clients':>7} {'requests':>8} {'errors':>6} {'req/s':>7} "
          f"{'p50 ms':>8} {'p99 ms':>8} {'cpu s/req':>9}")
    for mode, rows in results.items():
        for r in rows:
            cpu = r["cpu_s_per_request"]
            print(f"{mode:<18} {r['clients']:>7} {r['requests']:>8} {r['errors']:>6} "
                  f"{r['requests_per_s']:>7.2f} {r['p50_ms'] or 0:>8.0f} {r['p99_ms'] or 0:>8.0f} "
                  f"{'-' if cpu is None else f'{cpu:.3f}':>9}")
    ratios, cpu_ratios = {}, {}
    for i, c in enumerate(CLIENTS):
        serial, batched = results["one at a time"][i], results["dynamic batching"][i]
        rate = serial["requests_per_s"]
        ratios[c] = round(batched["requests_per_s"] / rate, 2) if rate else None
        cost = batched["cpu_s_per_request"]
        cpu_ratios[c] = round(serial["cpu_s_per_request"] / cost, 2) if cost and serial[
            "cpu_s_per_request"] else None  # fmt: skip
        print(f"{c} client(s): dynamic batching {ratios[c]}x the requests/s of one at a time; "
              f"one at a time costs {cpu_ratios[c]}x the server CPU time per request")
    if args.json_out:
        Path(args.json_out).write_text(json.dumps({"results": results, "ratios": ratios,
                                                   "cpu_ratios": cpu_ratios,
                                                   "args": vars(args) | {"model": str(args.model)}},
                                                  indent=2) + "\n")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
