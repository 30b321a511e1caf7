"""A stand-in fixer with `agent fix`'s contract, for testing `agent bench` with real processes:
    bench_fixer.py TICKET --repo R --budget S --json OUT --tasks TASKS.jsonl --mode MODE
It looks the ticket up in the task list and, by mode, applies the hidden reference fix (commit or
diff), claims green with a useless change, gives up, crashes, or hangs."""

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path


def git(repo, *args):
    return subprocess.run(["git", "-C", repo, *args], check=True, capture_output=True,
                          text=True).stdout


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("ticket")
    parser.add_argument("--repo", required=True)
    parser.add_argument("--budget", type=float, required=True)
    parser.add_argument("--json", required=True)
    parser.add_argument("--tasks", required=True)
    parser.add_argument("--mode", required=True)
    args = parser.parse_args()
    started = time.monotonic()
    # The task repo's head commit is "buggy: <task id>"; two tasks may share a ticket text.
    task_id = git(args.repo, "log", "-1", "--format=%s").strip().removeprefix("buggy: ")
    tasks = [json.loads(line) for line in Path(args.tasks).read_text().splitlines() if line]
    task = next(t for t in tasks if t["id"] == task_id)
    report = {"status": "green", "ticket": args.ticket, "rounds": 1, "candidates": 3,
              "tests_run": 7, "failing_before": [task["ticket_test"]], "failing_after": []}
    if args.mode == "crash":
        raise RuntimeError("the stand-in fixer crashed on purpose")
    if args.mode == "hang":
        time.sleep(3600)
    if args.mode == "giveup":
        report["status"] = "no_fix"
        Path(args.json).write_text(json.dumps(report))
        return 1
    if args.mode == "commit":
        patch = Path(args.repo).parent / "reference.diff"
        patch.write_text(task["reference_fix"])
        git(args.repo, "checkout", "-q", "-b", "greenpatch/fix")
        git(args.repo, "apply", str(patch))
        with open(Path(args.repo) / task["file"], "a") as handle:
            handle.write("# a comment: exactness is judged after normalisation\n")
        git(args.repo, "commit", "-q", "-a", "-m", "fix")
        report["commit"] = git(args.repo, "rev-parse", "HEAD").strip()
        report["diff"] = git(args.repo, "diff", "HEAD~1")
        git(args.repo, "checkout", "-q", "-")
    elif args.mode == "diff":
        report["diff"] = task["reference_fix"]
    elif args.mode == "noop":
        target = Path(args.repo) / task["file"]
        target.write_text("# nothing fixed\n" + target.read_text())
        report["diff"] = git(args.repo, "diff")
        git(args.repo, "checkout", "--", task["file"])
    report["seconds"] = round(time.monotonic() - started, 3)
    Path(args.json).write_text(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
