"""Generate (or resume generating) the frozen bug tasks: benchmarks/bugs/tasks.jsonl.

    .venv/bin/python benchmarks/bugs/make_tasks.py --per-kind 8 --seed 0 --jobs 2 \
        --libraries toolz cachetools boltons
    .venv/bin/python benchmarks/bugs/make_tasks.py --per-kind 5 --seed 0 --jobs 2 \
        --libraries more-itertools
    .venv/bin/python benchmarks/bugs/make_tasks.py --per-kind 3 --seed 0 --jobs 1 --real-bugs

`--kinds` (or `--real-bugs`: the real-bug kinds only) draws only those kinds; new tasks are
appended after the ones already in the task file.

Attempts are checkpointed in benchmarks/bugs/attempts.jsonl; re-running resumes from it.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from greenpatch.agent.bench.generate import generate
from greenpatch.agent.bench.inject import KINDS, REAL_BUG_KINDS
from greenpatch.agent.bench.libraries import LIBRARIES

HERE = Path(__file__).resolve().parent


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-kind", type=int, default=8, help="mutants tried per library/kind")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--libraries", nargs="*", default=list(LIBRARIES))
    kinds = parser.add_mutually_exclusive_group()
    kinds.add_argument("--kinds", nargs="+", choices=KINDS, default=list(KINDS))
    kinds.add_argument("--real-bugs", action="store_true", help="only " + ", ".join(REAL_BUG_KINDS))
    parser.add_argument("--out", type=Path, default=HERE / "tasks.jsonl")
    parser.add_argument("--checkpoint", type=Path, default=HERE / "attempts.jsonl")
    args = parser.parse_args()
    started = time.monotonic()
    chosen = REAL_BUG_KINDS if args.real_bugs else tuple(k for k in KINDS if k in args.kinds)
    count = generate(args.out, args.checkpoint, args.libraries, args.per_kind, args.seed,
                     args.jobs, chosen)
    used = {json.loads(line)["library"] for line in args.out.read_text().splitlines() if line}
    (HERE / "libraries.json").write_text(json.dumps(
        {name: {"version": lib.version, "licence": lib.licence, "sdist": lib.sdist,
                "sha256": lib.sha256, "modules": list(lib.modules), "tests": list(lib.tests),
                "pytest_ini": lib.pytest_ini}
         for name, lib in LIBRARIES.items() if name in used},
        indent=2) + "\n")
    print(f"{count} verified tasks in {args.out} ({time.monotonic() - started:.0f} s)",
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
