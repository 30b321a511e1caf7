"""The test runner.

Owns test discovery, the baseline run with per-test coverage, affected-test selection, scheduling
of many candidates across warm workers, the standalone worker script, the result cache and flaky
detection. It runs its workers through `sandboxes` and knows nothing of models.
"""
