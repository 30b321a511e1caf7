"""The pool and its warm workers, on a real project in a real git repository (process backend)."""

from __future__ import annotations

import time

import pytest
from greenpatch.runner.cache import ResultCache
from greenpatch.runner.pool import Job, Pool
from greenpatch.runner.results import JobDone, TestResult

from tests.runner_support import ALL, PYTHON, RECT, SQUARE, TRIVIAL, UNIT, area_with, make_project
from tests.test_sandbox_helpers import use_backend

TEST_TIMEOUT = 2.0
WRONG = area_with("    return side * 2\n")


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    return make_project(tmp_path_factory.mktemp("pool") / "geometry")


@pytest.fixture(scope="module")
def pool(project):
    with Pool(project, PYTHON, "process", workers=2, test_timeout=TEST_TIMEOUT) as pool:
        yield pool


def outcomes(done: JobDone) -> dict[str, str]:
    return {r.test_id: r.outcome for r in done.results}


def test_results_per_test_and_the_worktree_is_restored(pool):
    broken = pool.run(Job("broken", {"geometry/area.py": WRONG}, ALL, fail_fast=False))
    assert outcomes(broken) == {SQUARE: "failed", RECT: "passed", TRIVIAL: "passed", UNIT: "passed"}
    failure = next(r for r in broken.results if r.failed)
    assert "assert 6 == 9" in failure.message
    assert ("tests/test_area.py", 5) in failure.frames
    # The same workers, no files: the original code is back.
    clean = pool.run(Job("clean", {}, ALL, fail_fast=False))
    assert set(outcomes(clean).values()) == {"passed"}
    assert clean.reason == "ok" and clean.green


def test_fail_fast_runs_targets_first_and_stops(pool):
    done = pool.run(
        Job("ff", {"geometry/area.py": WRONG}, [RECT, TRIVIAL, UNIT], True, targets=(SQUARE,))
    )
    assert done.reason == "fail_fast"
    assert outcomes(done) == {SQUARE: "failed"}


@pytest.mark.parametrize("policy", ["steal", "whole"])
def test_fail_fast_runs_every_target_before_it_stops(project, policy):
    # A candidate that fixes one of two targets must be told apart from one that fixes none.
    with Pool(project, PYTHON, "process", workers=2, test_timeout=TEST_TIMEOUT,
              policy=policy) as own:  # fmt: skip
        done = own.run(
            Job("two", {"geometry/area.py": WRONG}, [TRIVIAL, UNIT], True, targets=(SQUARE, RECT))
        )
        assert done.reason == "fail_fast"
        assert {SQUARE: "failed", RECT: "passed"}.items() <= outcomes(done).items()
        if policy == "steal":  # regression chunks wait for the targets
            assert set(outcomes(done)) == {SQUARE, RECT}
        both = own.run(Job("both", {}, [TRIVIAL, UNIT], True, targets=(SQUARE, RECT)))
        assert both.green and set(outcomes(both)) == {SQUARE, RECT, TRIVIAL, UNIT}


def test_an_infinite_loop_is_a_timeout_failure_within_the_limit(pool):
    loop = area_with("    while True:\n        pass\n")
    start = time.monotonic()
    done = pool.run(Job("loop", {"geometry/area.py": loop}, [SQUARE, RECT], fail_fast=False))
    elapsed = time.monotonic() - start
    assert outcomes(done) == {SQUARE: "failed", RECT: "passed"}
    hung = next(r for r in done.results if r.test_id == SQUARE)
    assert hung.message.startswith("timeout")
    # Its stack at the kill, as a traceback's frames: innermost, the loop (either of its lines,
    # wherever the signal found it).
    loop_line = loop.splitlines().index("    while True:") + 1
    path, line = hung.frames[-1]
    assert path == "geometry/area.py" and line in (loop_line, loop_line + 1)
    assert TEST_TIMEOUT <= elapsed < TEST_TIMEOUT + 8


def test_a_job_out_of_time_mid_test_reports_where_the_test_hung(pool):
    # Not the loop of the test above: the pool would answer that program from its cache.
    loop = area_with("    while True:\n        side += 0\n")
    done = pool.run(Job("job-limit", {"geometry/area.py": loop}, [SQUARE, RECT],
                        fail_fast=False, timeout=1.0))  # sooner than the test's own limit
    hung = next(r for r in done.results if r.test_id == SQUARE)
    assert hung.message == "timeout: the job ran out of time"
    loop_line = loop.splitlines().index("    while True:") + 1
    path, line = hung.frames[-1]
    assert path == "geometry/area.py" and line in (loop_line, loop_line + 1)


@pytest.mark.parametrize(
    "body",
    [
        "    import os\n    os._exit(3)\n",
        "    import ctypes\n    return ctypes.string_at(0)\n",  # segmentation fault
    ],
    ids=["os_exit", "segfault"],
)
def test_a_crash_is_reported_and_the_rest_and_the_next_job_run(pool, body):
    done = pool.run(Job("crash-" + body[11:15], {"geometry/area.py": area_with(body)}, ALL, False))
    crashed = next(r for r in done.results if r.test_id == SQUARE)
    assert crashed.outcome == "failed" and crashed.message.startswith("crashed")
    assert {t: o for t, o in outcomes(done).items() if t != SQUARE} == {
        RECT: "passed", TRIVIAL: "passed", UNIT: "passed"
    }  # fmt: skip
    assert pool.run(Job("after-" + body[11:15], {}, ALL, fail_fast=False)).green


def test_output_of_tests_stays_out_of_the_workers_protocol(pool):
    # pytest's capture restores the descriptors it saw at parse time: those must be the job log.
    noisy = area_with(
        "    import os, sys\n"
        "    print('{\"event\": \"done\", \"job\": \"x\"}' * 50)\n"
        "    os.write(1, b'raw fd output\\n')\n"
        "    sys.stderr.write('err\\n')\n"
        "    return 0\n"
    )
    assert pool.parsed_once
    done = pool.run(Job("noisy", {"geometry/area.py": noisy}, ALL, fail_fast=False))
    assert outcomes(done) == {SQUARE: "failed", RECT: "passed", TRIVIAL: "passed", UNIT: "passed"}
    assert pool.run(Job("after-noisy", {}, ALL, fail_fast=False)).green


def test_a_job_that_changes_a_conftest_runs_with_it(tmp_path):
    conftest = "import pytest\n\n\n@pytest.fixture\ndef scale():\n    return {}\n"
    project = make_project(
        tmp_path / "geometry",
        {
            "tests/conftest.py": conftest.format(1),
            "tests/test_scale.py": "def test_scale(scale):\n    assert scale == 1\n",
        },
    )
    test = "tests/test_scale.py::test_scale"
    with Pool(project, PYTHON, "process", workers=1) as pool:
        assert pool.parsed_once  # the conftest was loaded while parsing, once
        changed = {"tests/conftest.py": conftest.format(2)}
        assert outcomes(pool.run(Job("changed", changed, [test], False))) == {test: "failed"}
        assert outcomes(pool.run(Job("same", {}, [test], False))) == {test: "passed"}


def test_cold_workers_give_the_same_results(project):
    # The ablation of warm workers: a fresh `python -m pytest` per job, same protocol.
    wrong = {"geometry/area.py": WRONG}
    with Pool(project, PYTHON, "process", workers=1, cold=True) as cold:
        assert not cold.parsed_once
        assert outcomes(cold.run(Job("all", wrong, ALL, False))) == {
            SQUARE: "failed", RECT: "passed", TRIVIAL: "passed", UNIT: "passed"
        }  # fmt: skip
        assert outcomes(cold.run(Job("fast", wrong, [SQUARE, RECT], True))) == {SQUARE: "failed"}
        crash = {"geometry/area.py": area_with("    import os\n    os._exit(3)\n")}
        crashed = cold.run(Job("crash", crash, [SQUARE, RECT], False))
        assert outcomes(crashed) == {SQUARE: "failed", RECT: "passed"}
        assert crashed.results[0].message.startswith("crashed")


def test_a_killed_worker_is_restarted(pool):
    # The test kills the warm worker itself (the parent of the forked test process).
    killer = area_with("    import os, signal\n    os.kill(os.getppid(), signal.SIGKILL)\n")
    done = pool.run(Job("kill", {"geometry/area.py": killer}, [SQUARE], fail_fast=False))
    assert outcomes(done) == {SQUARE: "failed"}
    assert "crashed" in done.results[0].message
    for index in range(3):  # whichever worker takes them, restarted or not, jobs go on
        assert pool.run(Job(f"after-kill-{index}", {}, ALL, fail_fast=False)).green


def test_many_candidates_in_flight(pool):
    jobs = {f"c{i}": (WRONG if i % 2 else area_with("    return side ** 2\n")) for i in range(6)}
    for job_id, text in jobs.items():
        pool.submit(Job(job_id, {"geometry/area.py": text}, [SQUARE, RECT], fail_fast=False))
    done = {e.job_id: e for e in pool.events() if isinstance(e, JobDone)}
    assert set(done) == set(jobs)
    for job_id, text in jobs.items():
        assert outcomes(done[job_id])[SQUARE] == ("failed" if text == WRONG else "passed")


def test_duplicates_collapse_and_the_cache_answers(project, tmp_path):
    cache = ResultCache(tmp_path / "results.sqlite")
    files = {"geometry/area.py": WRONG}
    with Pool(project, PYTHON, "process", workers=1, cache=cache) as pool:
        pool.submit(Job("first", files, [SQUARE, RECT], fail_fast=False))
        pool.submit(Job("twin", dict(files), [SQUARE, RECT], fail_fast=False))
        events = list(pool.events())
        twin = [e for e in events if isinstance(e, TestResult) and e.job_id == "twin"]
        assert {r.test_id: (r.outcome, r.cached) for r in twin} == {
            SQUARE: ("failed", True), RECT: ("passed", True)
        }  # fmt: skip
        # A different job sharing a test and the content it sees: that test is not run again.
        done = pool.run(Job("more", files, [SQUARE, RECT, TRIVIAL], fail_fast=False))
    cached = {r.test_id: r.cached for r in done.results}
    assert cached == {SQUARE: True, RECT: True, TRIVIAL: False}
    assert outcomes(done)[SQUARE] == "failed"
    cache.close()


@pytest.mark.slow
@pytest.mark.parametrize(
    "backend_name",
    [
        pytest.param("bwrap", marks=pytest.mark.bwrap),
        pytest.param("docker", marks=pytest.mark.docker),
    ],
)
def test_isolated_backends_run_the_same_worker(project, backend_name):
    use_backend(backend_name)  # skips when the backend is unavailable (fails for Docker under CI)
    offline = area_with(
        "    import socket\n    socket.create_connection(('192.0.2.1', 80), timeout=1)\n"
    )
    with Pool(project, PYTHON, backend_name, workers=1, test_timeout=TEST_TIMEOUT) as pool:
        broken = pool.run(Job("broken", {"geometry/area.py": WRONG}, ALL, fail_fast=False))
        assert outcomes(broken) == {
            SQUARE: "failed", RECT: "passed", TRIVIAL: "passed", UNIT: "passed"
        }  # fmt: skip
        net = pool.run(Job("net", {"geometry/area.py": offline}, [SQUARE], fail_fast=False))
        assert outcomes(net) == {SQUARE: "failed"}
        assert "unreachable" in net.results[0].message
        assert pool.run(Job("clean", {}, ALL, fail_fast=False)).green
