"""Who was busy when: the pool says which worker ran each job and when (JobDone.spans), the
timeline of a fix records it with the drafter's work and every candidate's outcome."""

from __future__ import annotations

import time

from greenpatch.runner.pool import Job, Pool
from greenpatch.runner.results import JobDone

from tests.runner_support import PYTHON, RECT, SQUARE, area_with, make_project

WRONG = area_with("    return side * 2\n")


def test_job_done_says_which_worker_ran_it_and_when(tmp_path):
    project = make_project(tmp_path / "geometry")
    with Pool(project, PYTHON, "process", workers=2) as pool:
        before = time.monotonic()
        for n in range(4):
            text = WRONG + f"# candidate {n}\n"  # four different candidates (twins run once)
            pool.submit(Job(f"c{n}", {"geometry/area.py": text}, [SQUARE, RECT], fail_fast=False))
        done = {e.job_id: e for e in pool.events() if isinstance(e, JobDone)}
        after = time.monotonic()
        # An identical job answered by the first one ran nowhere: no span of its own.
        twin = pool.run(Job("twin", {"geometry/area.py": text}, [SQUARE, RECT], fail_fast=False))
    assert set(done) == {"c0", "c1", "c2", "c3"}
    workers = set()
    for event in done.values():
        assert event.spans, event
        for worker, start, end in event.spans:
            assert worker in (0, 1)
            assert before <= start <= end <= after
            workers.add(worker)
    assert twin.spans == ()
    # One worker runs one chunk at a time: its spans never overlap.
    for worker in workers:
        spans = sorted((s, e) for d in done.values() for w, s, e in d.spans if w == worker)
        assert all(end <= nxt for (_, end), (nxt, _) in zip(spans, spans[1:], strict=False))
