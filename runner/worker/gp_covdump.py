"""Turn the baseline's coverage data files into per-test executed lines, as JSON.

Run by the TARGET's interpreter (its coverage.py wrote the files, its version reads them):

    python gp_covdump.py DATA_DIR ROOT OUT_JSON

writes `{test_id: {relpath: [line, ...]}}` for files under ROOT.
"""

from __future__ import annotations

import glob
import json
import os
import sys

import coverage


def main() -> None:
    data_dir, root, out = sys.argv[1], os.path.realpath(sys.argv[2]), sys.argv[3]
    per_test: dict[str, dict[str, set[int]]] = {}
    for path in sorted(glob.glob(os.path.join(data_dir, "cov.*"))):
        data = coverage.CoverageData(basename=path)
        data.read()
        for measured in data.measured_files():
            real = os.path.realpath(measured)
            if not real.startswith(root + os.sep):
                continue
            rel = os.path.relpath(real, root)
            for line, contexts in data.contexts_by_lineno(measured).items():
                for context in contexts:
                    if context:
                        per_test.setdefault(context, {}).setdefault(rel, set()).add(line)
    result = {t: {f: sorted(lines) for f, lines in files.items()} for t, files in per_test.items()}
    with open(out, "w", encoding="utf-8") as handle:
        json.dump(result, handle)


if __name__ == "__main__":
    main()
