"""Generate the frozen two-bug tasks: benchmarks/bugs/pairs.jsonl, from tasks.jsonl.

    .venv/bin/python benchmarks/bugs/make_pairs.py --dev 8 --test 16 --seed 0

Run one with `agent bench --tasks benchmarks/bugs/pairs.jsonl ...`.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from greenpatch.agent.bench.pairs import pairs
from greenpatch.agent.bench.tasks import TASKS_FILE, load_tasks

HERE = Path(__file__).resolve().parent


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dev", type=int, default=8, help="pairs of the dev split")
    parser.add_argument("--test", type=int, default=16, help="pairs of the test split")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=HERE / "pairs.jsonl")
    args = parser.parse_args()
    started = time.monotonic()
    tasks = load_tasks(TASKS_FILE)
    made = []
    for split, count in (("dev", args.dev), ("test", args.test)):
        for task in pairs(tasks, split, count, args.seed):
            made.append(task.to_dict())
            print(f"[{len(made)}] {task.id}: {' + '.join(task.extra['parts'])}",
                  file=sys.stderr, flush=True)
    made.sort(key=lambda t: t["id"])
    args.out.write_text("".join(json.dumps(t, sort_keys=True) + "\n" for t in made))
    print(f"{len(made)} two-bug tasks in {args.out} ({time.monotonic() - started:.0f} s)",
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
