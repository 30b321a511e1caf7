"""`pip install .` ships the embedded model: the built wheel, installed on its own (not the
editable checkout), runs `agent infill` with no `--model` and no network."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
WEIGHTS = ("config.json", "model.safetensors", "tokenizer.json")


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The package as `pip install .` lays it out, in a directory of its own (dependencies come
    from this environment: only our code and data are under test)."""
    work = tmp_path_factory.mktemp("wheel")
    # A copy of what the build reads, so that the build leaves nothing in the checkout.
    source = work / "source"
    skip = shutil.ignore_patterns("__pycache__", "*.egg-info", "build")
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, source / name)
    for package in ("agent", "model", "runner", "sandboxes"):
        shutil.copytree(REPO / package, source / package, ignore=skip)
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(work / "dist"), str(source)],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    (wheel,) = (work / "dist").glob("greenpatch-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert all(f"greenpatch/model/weights/{name}" in names for name in WEIGHTS), names
    target = work / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "-q",
         "--target", str(target), str(wheel)],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    return target


def test_the_installed_package_infills_with_its_own_weights(installed: Path, tmp_path: Path):
    source = tmp_path / "m.py"
    text = "def area(width, height):\n    return width * height\n"
    source.write_text(text)
    env = {**os.environ, "PYTHONPATH": str(installed), "HF_HUB_OFFLINE": "1", "NO_PROXY": "*"}
    probe = subprocess.run(
        [sys.executable, "-c", "import greenpatch.agent as agent, greenpatch.model.checkpoint "
         "as c; print(agent.__file__, c.__file__, c.EMBEDDED_DIR)"],
        cwd=tmp_path, env=env, capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert all(path.startswith(str(installed)) for path in probe.stdout.split())
    result = subprocess.run(
        [sys.executable, "-m", "greenpatch.agent",
         "infill", str(source), "--lines", "2", "--n", "2",
         "--json", "-"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["model"] == "embedded"  # no --model: the packaged weights, checked above
    assert 1 <= len(report["candidates"]) <= 2
    assert source.read_text() == text


@pytest.fixture(scope="module")
def wheel(installed: Path) -> Path:
    (found,) = (installed.parent / "dist").glob("greenpatch-*.whl")
    return found


def test_a_venv_with_its_own_model_and_runner_keeps_them_and_fixes(wheel: Path, tmp_path: Path):
    """`pip install` of the wheel into a venv that already holds top-level `model` and `runner`
    packages (a user's own, common names): theirs stay theirs, and `agent fix` runs there."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    site = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_path("
                                "'purelib'))"], check=True, capture_output=True,
                               text=True).stdout.strip())  # fmt: skip
    for name in ("model", "runner"):
        (site / name).mkdir()
        (site / name / "__init__.py").write_text(f"OWNER = 'user {name}'\n")
    # Our dependencies (torch, typer, ...) from this environment, without its greenpatch: a
    # path line in a .pth adds the directory but runs none of the .pth files in it.
    deps = next(p for p in map(Path, sys.path) if (p / "typer").is_dir())
    (site / "deps.pth").write_text(f"{deps}\n")
    subprocess.run([str(python), "-m", "pip", "install", "--no-deps", "--no-index", "-q",
                    str(wheel)], check=True, capture_output=True, text=True)  # fmt: skip
    mine = subprocess.run(
        [str(python), "-c", "import model, runner, greenpatch.model.checkpoint as c; "
         "print(model.OWNER, '|', runner.OWNER, '|', c.__file__)"],
        cwd=tmp_path, capture_output=True, text=True, check=True,
    )  # fmt: skip
    user_model, user_runner, ours = (s.strip() for s in mine.stdout.split("|"))
    assert (user_model, user_runner) == ("user model", "user runner")
    assert ours.startswith(str(site / "greenpatch"))
    repo = tmp_path / "stockroom"
    subprocess.run([sys.executable, str(REPO / "examples" / "prepare.py"), "stockroom", str(repo)],
                   check=True, capture_output=True)  # fmt: skip
    done = subprocess.run(
        [str(venv / "bin" / "agent"), "fix", str(REPO / "examples" / "tickets" / "stockroom.md"),
         "--repo", str(repo), "--drafter", "mutations", "--sandbox", "process", "--budget", "120",
         "--json", "-"],
        cwd=tmp_path, capture_output=True, text=True, timeout=600,
        env={**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache")},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["status"] == "green"
