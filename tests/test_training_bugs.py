"""Bug noise: every kind makes a one-site change that still parses and says where it wrote;
bug rows label the corrupted tokens and the line a statement went missing after; the repair
head trains, saves and loads."""

from __future__ import annotations

import json
import random
import sysconfig
from pathlib import Path

import pytest
import torch
from greenpatch.model.bugs import KINDS, _parser, corrupt, roc_auc
from greenpatch.model.checkpoint import load_model, save_model, wrap
from greenpatch.model.errors import ModelError
from greenpatch.model.network import DiffusionLM, ModelConfig
from greenpatch.model.tokenizer import train_tokenizer
from greenpatch.model.train import BugSampler, TrainConfig, repair_loss, train

SOURCE = '''\
def window(items, size, fill=None, strict=False):
    """Sliding windows."""
    out = []
    count = len(items)
    for i in range(count - size + 1):
        if size > 0 and items[i] is not fill:
            out.insert(i, items[i:i + size])
        total = max(count, size)
        out.sort(key=len)
    label = "w" + str(total)
    label = label + "/" if strict else "(" + label
    return out.copy() if out else label
'''


def _parses(text: str) -> bool:
    return not _parser().parse(text.encode()).root_node.has_error


@pytest.mark.parametrize("kind", KINDS)
def test_every_kind_makes_one_parsing_change(kind: str) -> None:
    seen = set()
    for seed in range(30):
        bug = corrupt(SOURCE, random.Random(seed), kinds=(kind,), at=SOURCE.index("for"))
        assert bug is not None and bug.kind == kind
        assert bug.text != SOURCE and _parses(bug.text)
        # Outside the written range the text is the original's.
        tail = len(bug.text) - bug.end
        assert bug.text[:bug.start] == SOURCE[:bug.start]
        assert bug.text[bug.end:] == SOURCE[len(SOURCE) - tail:]
        # Nothing kept of the original is counted as written: the two differ at either end.
        wrote, was = bug.text[bug.start:bug.end], SOURCE[bug.start:len(SOURCE) - tail]
        assert wrote != was
        if wrote and was:
            assert wrote[0] != was[0] and wrote[-1] != was[-1]
        if kind == "deleted_statement":
            assert bug.start == bug.end and bug.text[bug.missing_after] == "\n"
            assert len(bug.text.splitlines()) == len(SOURCE.splitlines()) - 1
        else:
            assert bug.missing_after is None
        seen.add(bug.text)
    assert len(seen) >= 2  # the random choice of site varies


def test_a_negation_marks_only_the_written_not() -> None:
    source = "def f(x):\n    if x.ready:\n        return 1\n"
    bug = corrupt(source, random.Random(0), kinds=("negated_condition",), at=20)
    assert bug is not None and bug.text[bug.start:bug.end] == "not "
    undone = corrupt(bug.text, random.Random(0), kinds=("negated_condition",), at=20)
    assert undone is not None and undone.text == source and undone.start == undone.end


def test_no_site_of_a_kind_gives_none() -> None:
    assert corrupt("x = 1\n", random.Random(0), kinds=("swapped_arguments",)) is None
    assert corrupt("", random.Random(0)) is None


def test_roc_auc() -> None:
    labels = torch.tensor([0, 0, 1, 1])
    assert roc_auc(torch.tensor([0.1, 0.2, 0.3, 0.4]), labels) == 1.0
    assert roc_auc(torch.tensor([0.4, 0.3, 0.2, 0.1]), labels) == 0.0
    assert roc_auc(torch.tensor([0.5, 0.5, 0.5, 0.5]), labels) == 0.5
    assert roc_auc(torch.tensor([0.1, 0.3, 0.2, 0.4]), labels) == 0.75


@pytest.fixture(scope="module")
def tokenizer():
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    texts = [(stdlib / m).read_text() for m in ("textwrap.py", "shlex.py", "heapq.py")]
    return train_tokenizer(texts + [SOURCE], 400)


def test_bug_rows_label_what_was_written(tokenizer) -> None:
    sampler = BugSampler([SOURCE], tokenizer, seq_len=64, seed=3, clean_share=0.0)
    batch = sampler.next_batch(40)
    assert batch.inputs.shape == (40, 64)
    again = BugSampler([SOURCE], tokenizer, 64, seed=3, position=5, clean_share=0.0)
    assert torch.equal(again.next_batch(2).inputs, batch.inputs[5:7])
    deleted = written = 0
    for row in range(40):
        ids = batch.inputs[row][batch.valid[row]].tolist()
        text = tokenizer.decode(ids)
        if batch.missing[row].any():
            deleted += 1
            assert not batch.corrupted[row].any()
            assert int(batch.missing[row].sum()) == 1
            assert bool((batch.missing[row] <= batch.newline[row]).all())
        elif batch.corrupted[row].any():
            written += 1
            assert text not in SOURCE  # the corrupted window is not the original's
        if batch.aligned[row]:
            clean = tokenizer.decode(batch.targets[row][batch.valid[row]].tolist())
            assert clean in SOURCE
    assert deleted and written > 20


def test_clean_rows_have_no_labels(tokenizer) -> None:
    batch = BugSampler([SOURCE], tokenizer, 64, seed=1, clean_share=1.0).next_batch(5)
    assert not batch.corrupted.any() and not batch.missing.any()
    assert tokenizer.decode(batch.inputs[0][batch.valid[0]].tolist()) in SOURCE


def test_repair_head_trains_saves_and_loads(tokenizer, tmp_path) -> None:
    torch.manual_seed(0)
    cfg = ModelConfig.tiny(vocab_size=tokenizer.vocab_size, mask_id=tokenizer.mask_id,
                           repair_head=True)
    net = DiffusionLM(cfg)
    assert net.num_parameters() == DiffusionLM(ModelConfig.tiny(
        vocab_size=tokenizer.vocab_size)).num_parameters() + 2 * (cfg.dim + 1)
    sampler = BugSampler([SOURCE], tokenizer, 64, seed=0)
    batch = sampler.next_batch(16)
    opt = torch.optim.AdamW(net.parameters(), lr=3e-3)
    first = float(repair_loss(net, batch).detach())
    for _ in range(40):
        opt.zero_grad()
        repair_loss(net, batch).backward()
        opt.step()
    assert float(repair_loss(net, batch).detach()) < first - 0.5
    save_model(wrap(net.eval(), tokenizer), tmp_path / "m")
    lm = load_model(tmp_path / "m", device="cpu")
    assert lm.config.repair_head
    with torch.no_grad():
        assert torch.allclose(lm.net.repair_logits(batch.inputs)[1],
                              net.repair_logits(batch.inputs)[1], atol=1e-5)
    with pytest.raises(ModelError, match="repair head"):
        save_model(wrap(net, tokenizer), tmp_path / "q", layout="llada")
    with pytest.raises(ModelError, match="no repair head"):
        DiffusionLM(ModelConfig.tiny()).repair_logits(batch.inputs)


@pytest.mark.slow
def test_training_with_bug_rows_reports_repair_metrics(tmp_path) -> None:
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    rows = [{"source": "python-stdlib", "path": m, "text": (stdlib / m).read_text()}
            for m in ("textwrap.py", "shlex.py", "heapq.py", "glob.py", "fnmatch.py")]
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for split, part in (("train", rows[:4]), ("validation", rows[4:]), ("heldout", rows[4:])):
        (corpus / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in part))
    cfg = TrainConfig(seq_len=64, batch_size=2, canvas_rows=2, canvas_len=64, bug_rows=2,
                      warmup_steps=2, minutes=30, checkpoint_minutes=100, log_every=5,
                      threads=1)
    summary = train(corpus, tmp_path / "run", size="tiny", cfg=cfg, vocab_size=400,
                    echo=False, max_steps=6)
    assert 0.0 <= summary["val_detect_auc"] <= 1.0 and "val_detect_top1" in summary
    state = torch.load(tmp_path / "run" / "last.pt", weights_only=False)
    assert state["bug_position"] == 12 and state["model_config"]["repair_head"]
