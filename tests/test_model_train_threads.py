"""`train` runs on its own thread count and gives the caller's back, also when it fails: a
process that trains and then serves, evaluates or tests is not left on the training's count."""

from __future__ import annotations

import json
import sysconfig
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from greenpatch.model.errors import ModelError
from greenpatch.model.train import TrainConfig, load_checkpoint, train

from tests.model_support import torch_threads

STDLIB = Path(sysconfig.get_paths()["stdlib"])


def corpus(root: Path, train_modules: list[str]) -> Path:
    root.mkdir()
    rows = [{"source": "python-stdlib", "path": m, "text": (STDLIB / m).read_text()}
            for m in train_modules]
    held = [{"source": "python-stdlib", "path": "keyword.py",
             "text": (STDLIB / "keyword.py").read_text()}]
    for split, part in (("train", rows), ("validation", held), ("heldout", held)):
        (root / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in part))
    return root


def config() -> TrainConfig:
    return TrainConfig(seq_len=64, batch_size=2, canvas_rows=0, canvas_len=64, lr=3e-3,
                       warmup_steps=1, minutes=5, checkpoint_minutes=100, log_every=1,
                       threads=2)


def test_the_callers_thread_count_is_restored(tmp_path: Path) -> None:
    data = corpus(tmp_path / "corpus", ["textwrap.py", "shlex.py", "bisect.py"])
    with torch_threads(1):
        summary = train(data, tmp_path / "run", size="tiny", cfg=config(), vocab_size=300,
                        echo=False, max_steps=1)
        assert summary["step"] == 1
        assert torch.get_num_threads() == 1


def test_restored_when_training_fails(tmp_path: Path) -> None:
    data = corpus(tmp_path / "corpus", [])  # nothing to train on: fails after set-up began
    with torch_threads(1):
        with pytest.raises(ModelError):
            train(data, tmp_path / "run", size="tiny", cfg=config(), vocab_size=300,
                  echo=False, max_steps=1)
        assert torch.get_num_threads() == 1


def test_a_resumed_run_takes_the_new_thread_count(tmp_path: Path) -> None:
    # A run started on an idle machine goes on at 1 thread once other jobs share the cores.
    data = corpus(tmp_path / "corpus", ["textwrap.py", "shlex.py", "bisect.py"])
    run = tmp_path / "run"
    with torch_threads(1):
        train(data, run, size="tiny", cfg=config(), vocab_size=300, echo=False, max_steps=1)
        assert load_checkpoint(run / "last.pt")["train_config"]["threads"] == 2
        summary = train(data, run, size="tiny", cfg=replace(config(), threads=1),
                        vocab_size=300, echo=False, max_steps=2)
    assert summary["step"] == 2
    assert load_checkpoint(run / "last.pt")["train_config"]["threads"] == 1
