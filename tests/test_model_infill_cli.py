"""`agent infill`: the JSON contract end to end on a real (small, saved) model; the other cases
in-process (each subprocess pays for importing torch again)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from greenpatch.agent.commands.cli import app
from greenpatch.model import checkpoint
from greenpatch.model.checkpoint import save_model, wrap
from greenpatch.model.errors import ModelError
from greenpatch.model.network import DiffusionLM, ModelConfig
from typer.testing import CliRunner

from tests.model_support import stdlib_tokenizer


def agent(*args) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, [str(a) for a in args])
    return result.exit_code, result.stdout, result.stderr


def one_line_error(*args) -> str:
    code, _, err = agent(*args)
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert code == 2 and len(lines) == 1, (code, err)
    assert "Traceback" not in err
    return lines[0]

SOURCE = "def add(a, b):\n    total = a + b\n    return total\n\n\nprint(add(1, 2))\n"


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    net = DiffusionLM(ModelConfig.tiny(vocab_size=300)).eval()
    return save_model(wrap(net, stdlib_tokenizer()), tmp_path_factory.mktemp("model"))


def test_infill_json_contract(run_agent, tmp_path: Path, model_dir: Path) -> None:
    source = tmp_path / "m.py"
    source.write_text(SOURCE)
    result = run_agent("infill", source, "--lines", "2:3", "--n", "3", "--model", model_dir,
                       "--json", "-")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["file"] == str(source) and report["lines"] == [2, 3]
    assert report["model"] == str(model_dir)
    cands = report["candidates"]
    assert 1 <= len(cands) <= 3
    assert all(set(c) == {"text", "score"} for c in cands)
    scores = [c["score"] for c in cands]
    assert scores == sorted(scores, reverse=True) and all(s <= 0 for s in scores)
    assert len({c["text"] for c in cands}) == len(cands)
    assert source.read_text() == SOURCE  # the user's file is never touched


def test_infill_human_output_and_json_file(tmp_path: Path, model_dir: Path) -> None:
    source = tmp_path / "m.py"
    source.write_text(SOURCE)
    out = tmp_path / "out.json"
    code, stdout, stderr = agent("infill", source, "--lines", "2", "--n", "2", "--model",
                                 model_dir, "--json", out)
    assert code == 0, stderr
    assert "#1" in stdout and "score" in stdout
    assert json.loads(out.read_text())["lines"] == [2, 2]


@pytest.mark.parametrize(
    ("content", "lines", "expected"),
    [
        (SOURCE, "7:9", "beyond the end"),
        (SOURCE, "0:2", "need 1 <= A <= B"),
        ("", "1:1", "empty"),
        ("\n\n", "1:1", "empty"),
        (b"\x7fELF\x00\x00binary", "1:1", "binary"),
        (b"caf\xe9 = 1\n", "1:1", "not UTF-8"),
    ],
)
def test_infill_bad_inputs(tmp_path: Path, model_dir: Path, content, lines: str,
                           expected: str) -> None:
    source = tmp_path / "m.py"
    if isinstance(content, bytes):
        source.write_bytes(content)
    else:
        source.write_text(content)
    assert expected in one_line_error("infill", source, "--lines", lines, "--model", model_dir)


def test_infill_bad_model_dirs(tmp_path: Path) -> None:
    source = tmp_path / "m.py"
    source.write_text(SOURCE)
    line = one_line_error("infill", source, "--lines", "1", "--model", tmp_path / "no")
    assert "model directory not found" in line
    empty = tmp_path / "empty"
    empty.mkdir()
    line = one_line_error("infill", source, "--lines", "1", "--model", empty)
    assert "no config.json" in line
    (empty / "config.json").write_text(json.dumps({"model_type": "bert"}))
    line = one_line_error("infill", source, "--lines", "1", "--model", empty)
    assert "unknown model architecture" in line


def test_load_without_embedded_weights_says_how(monkeypatch: pytest.MonkeyPatch,
                                               tmp_path: Path) -> None:
    # An install without package data (or a stripped one) must say what to do, in one line.
    monkeypatch.setattr(checkpoint, "EMBEDDED_DIR", tmp_path / "weights")
    with pytest.raises(ModelError, match="no embedded model yet: pass --model PATH"):
        checkpoint.load_model(None)
