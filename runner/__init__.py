"""The test runner.

Owns test discovery, the baseline run with per-test coverage, affected-test selection, scheduling
of many candidates across warm workers, the standalone worker script, the result cache and flaky
detection. It runs its workers through `sandboxes` and knows nothing of models.

    baseline = build_baseline(repo, python)                 # cached per commit + environment
    selection = select_tests(baseline, {"pkg/mod.py": new_text})
    with Pool(repo, python, "bwrap", workers=2, cache=ResultCache(path),
              dependencies=baseline.dependencies, durations=baseline.durations) as pool:
        pool.submit(Job("c1", {"pkg/mod.py": new_text}, selection.tests, targets=failing))
        for event in pool.events():                         # TestResult ..., JobDone
            ...
"""

from greenpatch.runner.baseline import Baseline, TestRecord, build_baseline
from greenpatch.runner.cache import ResultCache
from greenpatch.runner.errors import RunnerError
from greenpatch.runner.pool import Job, Pool
from greenpatch.runner.results import JobDone, TestResult
from greenpatch.runner.selection import Selection, select_tests

__all__ = [
    "Baseline",
    "Job",
    "JobDone",
    "Pool",
    "ResultCache",
    "RunnerError",
    "Selection",
    "TestRecord",
    "TestResult",
    "build_baseline",
    "select_tests",
]
