"""The decoding benchmark runs end to end (a very short training, few tasks) and reports its
ratios; the real figures come from running it with its defaults."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch

from tests.model_support import TEST_THREADS

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "model_decoding.py"


@pytest.mark.slow
def test_benchmark_runs_and_reports_ratios(tmp_path: Path, capsys) -> None:
    spec = importlib.util.spec_from_file_location("model_decoding", BENCH)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out = tmp_path / "bench.json"
    threads = torch.get_num_threads()
    try:  # one thread unless told: two contend badly on a shared, busy CI box
        assert bench.main(["--synthetic", "--train-steps", "30", "--tasks", "4", "--repeats",
                           "1", "--batch", "2", "--cache-every", "2", "--threads",
                           str(TEST_THREADS), "--json", str(out)]) == 0
    finally:
        torch.set_num_threads(threads)
    text = capsys.readouterr().out
    assert "speed-up" in text and "batched / sequential" in text
    report = json.loads(out.read_text())
    assert set(report["parallel"]) == {"one token per step", "threshold 0.9",
                                       "threshold + cache/2"}
    one = report["parallel"]["one token per step"]
    assert one["passes"] >= one["tokens"] / 4  # 4 tasks in batches of 2: passes = longest spans
    assert report["batching"]["batch of 16"]["drafts"] == 16 * 4
    # Timings of a 30-step model on a shared box: the figures are reported, never judged here
    # (a speed-up threshold would rest on the machine's load).
    assert report["parallel_speedup"] > 0 and report["batching_speedup"] > 0
