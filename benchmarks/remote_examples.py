"""Every example ticket fixed through a model server: `agent serve` on 127.0.0.1, then
`agent fix --model http://127.0.0.1:PORT/v1` on each example project, one after another.

    python benchmarks/remote_examples.py [--budget S] [--sandbox bwrap|docker|process]
                                         [--url URL --model-name NAME]

With `--url`, the given server is used instead (a GPU box's `agent serve`, vLLM...; its key from
GREENPATCH_API_KEY). Prints per ticket: status, seconds, candidates, requests to the server and
tokens; exit 1 unless every ticket is green. (CI runs two of them: tests/test_remote_fix.py.)
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ("stockroom", "slugkit", "timespan", "confparse", "invoicer")


def start_server() -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen([sys.executable, "-m", "greenpatch.agent", "serve", "--port", "0"],
                            stderr=subprocess.PIPE, text=True)  # fmt: skip
    first = proc.stderr.readline()
    if not first.startswith("serving "):
        proc.kill()
        raise SystemExit(f"agent serve did not start: {first.strip()}")
    threading.Thread(target=proc.stderr.read, daemon=True).start()
    url = first.split(" on ")[1].strip()
    while httpx.get(url.removesuffix("/v1") + "/ready").status_code != 200:
        time.sleep(0.2)
    return proc, url


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=float, default=120.0)
    parser.add_argument("--sandbox", default="bwrap")
    parser.add_argument("--url", help="an already running server's http(s)://HOST/v1")
    parser.add_argument("--model-name", help="with --url: which of its models")
    parser.add_argument("--examples", nargs="*", default=list(EXAMPLES))
    args = parser.parse_args(argv)
    proc, url = (None, args.url) if args.url else start_server()
    rows = []
    try:
        with tempfile.TemporaryDirectory(prefix="gp-remote-") as tmp:
            for name in args.examples:
                repo = Path(tmp) / name
                subprocess.run([sys.executable, str(ROOT / "examples" / "prepare.py"), name,
                                str(repo)], check=True, capture_output=True)  # fmt: skip
                out = Path(tmp) / f"{name}.json"
                command = [sys.executable, "-m", "greenpatch.agent", "fix",
                           str(ROOT / "examples" / "tickets" / f"{name}.md"), "--repo", str(repo),
                           "--model", url, "--sandbox", args.sandbox, "--budget",
                           str(args.budget), "--json", str(out), "-q"]  # fmt: skip
                if args.model_name:
                    command += ["--model-name", args.model_name]
                done = subprocess.run(command, capture_output=True, text=True,
                                      env={**os.environ, "XDG_CACHE_HOME": f"{tmp}/cache"})
                report = json.loads(out.read_text()) if out.exists() else {}
                usage = report.get("model_server", {}).get("usage", {})
                rows.append((name, report.get("status", f"exit {done.returncode}"),
                             report.get("seconds", 0.0), report.get("rounds", 0),
                             report.get("candidates", 0), usage.get("requests", 0),
                             usage.get("total_tokens", 0)))  # fmt: skip
                if done.returncode not in (0, 1):
                    print(f"{name}: {done.stderr.strip().splitlines()[-1:]}", file=sys.stderr)
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=120)
    served = url if args.url else "http://127.0.0.1:PORT/v1 (agent serve, embedded model)"
    print(f"agent fix --model {served}, sandbox {args.sandbox}, budget {args.budget:g} s")
    print(f"{'ticket':<11} {'status':<8} {'seconds':>8} {'rounds':>6} {'candidates':>10} "
          f"{'requests':>8} {'tokens':>8}")
    for name, status, seconds, rounds, candidates, requests, tokens in rows:
        print(f"{name:<11} {status:<8} {seconds:>8.1f} {rounds:>6} {candidates:>10} "
              f"{requests:>8} {tokens:>8}")
    green = sum(r[1] == "green" for r in rows)
    print(f"{green}/{len(rows)} green")
    return 0 if green == len(rows) else 1


if __name__ == "__main__":
    sys.exit(main())
