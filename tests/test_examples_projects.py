"""Example projects: each bug fails exactly its ticket's tests; the reference fix greens all."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from greenpatch.agent.tickets import load_ticket

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
PREPARE = EXAMPLES / "prepare.py"
PROJECTS = sorted(
    p.name
    for p in EXAMPLES.iterdir()
    if (p / "pyproject.toml").is_file() and (EXAMPLES / "tickets" / f"{p.name}.md").is_file()
)
# Projects whose ticket holds independent bugs in several modules, one local change each; the
# others have one bug. A multi-module fix is found in steps: each change passes its own tests.
FIX_MODULES = {"invoicer": 2}
MULTI_MODULE = [name for name in PROJECTS if FIX_MODULES.get(name, 1) > 1]
_OUTCOME = re.compile(r"^(PASSED|FAILED|ERROR|SKIPPED|XFAIL|XPASS) (.+)$", re.M)


def _env() -> dict[str, str]:
    # The inner pytest must not inherit the outer run's plugins, options or coverage hooks.
    drop = ("PYTEST_", "COV_CORE_", "COVERAGE_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


def _prepare(name: str, dest: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(PREPARE), name, str(dest)],
        capture_output=True,
        text=True,
        timeout=60,
        env=_env(),
    )


def _pytest(repo: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args],
        cwd=repo,
        capture_output=True,
        text=True,
        timeout=120,
        env=_env(),
    )


def _outcomes(repo: Path, collected: list[str]) -> tuple[int, dict[str, str]]:
    """Run the whole suite; exit code and node id -> outcome for the collected ids."""
    proc = _pytest(repo, "-rA", "--no-header")
    # Summary lines read "OUTCOME node id[ - message]"; ids may hold spaces, so match known ids.
    by_length = sorted(collected, key=len, reverse=True)
    outcomes: dict[str, str] = {}
    for outcome, rest in _OUTCOME.findall(proc.stdout):
        nid = next((n for n in by_length if rest == n or rest.startswith(n + " - ")), rest)
        outcomes[nid] = outcome
    return proc.returncode, outcomes


def _collected(repo: Path) -> list[str]:
    proc = _pytest(repo, "--collect-only")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return [line for line in proc.stdout.splitlines() if "::" in line]


@dataclass
class Prepared:
    name: str
    repo: Path
    ticket_tests: list[str]
    collected: list[str]
    returncode: int
    outcomes: dict[str, str]


@pytest.fixture(scope="module", params=PROJECTS)
def prepared(request, tmp_path_factory) -> Prepared:
    name = request.param
    repo = tmp_path_factory.mktemp("examples") / name
    proc = _prepare(name, repo)
    assert proc.returncode == 0, proc.stderr
    ticket = load_ticket(str(EXAMPLES / "tickets" / f"{name}.md"))
    collected = _collected(repo)
    returncode, outcomes = _outcomes(repo, collected)
    return Prepared(name, repo, ticket.tests, collected, returncode, outcomes)


def test_there_are_at_least_four_projects():
    assert len(PROJECTS) >= 4


def test_suite_has_at_least_twenty_tests(prepared):
    assert len(prepared.collected) >= 20


def test_ticket_names_collected_tests(prepared):
    assert prepared.ticket_tests, f"ticket {prepared.name} names no tests"
    missing = set(prepared.ticket_tests) - set(prepared.collected)
    assert not missing, f"ticket names tests that do not exist: {sorted(missing)}"


def test_bug_fails_exactly_the_ticket_tests(prepared):
    assert prepared.returncode == 1
    failed = {nid for nid, outcome in prepared.outcomes.items() if outcome != "PASSED"}
    assert failed == set(prepared.ticket_tests)
    assert 1 <= len(failed) <= 4
    assert set(prepared.outcomes) == set(prepared.collected)


def test_ticket_does_not_reveal_the_fix(prepared):
    text = (EXAMPLES / "tickets" / f"{prepared.name}.md").read_text(encoding="utf-8")
    added = _changed_lines(prepared.name)["+"]
    assert all(line.strip() not in text for line in added)


def _changed_lines(name: str) -> dict[str, list[str]]:
    patch = (EXAMPLES / "fixes" / f"{name}.patch").read_text(encoding="utf-8")
    body = [ln for ln in patch.splitlines() if not ln.startswith(("+++", "---"))]
    return {sign: [ln[1:] for ln in body if ln.startswith(sign)] for sign in "+-"}


def _fix_sections(name: str) -> dict[str, str]:
    """Changed file -> its part of the reference patch."""
    patch = (EXAMPLES / "fixes" / f"{name}.patch").read_text(encoding="utf-8")
    parts = re.split(r"^(?=diff --git )", patch, flags=re.M)
    sections: dict[str, str] = {}
    for part in parts:
        files = re.findall(r"^\+\+\+ b/(\S+)", part, re.M)
        if files:
            assert len(files) == 1 and files[0] not in sections
            sections[files[0]] = part
    return sections


def test_reference_fix_is_one_local_change_outside_tests(prepared):
    sections = _fix_sections(prepared.name)
    assert len(sections) == FIX_MODULES.get(prepared.name, 1)
    for path, section in sections.items():
        assert not path.startswith("tests/")
        assert section.count("\n@@ ") == 1
        body = [ln for ln in section.splitlines() if not ln.startswith(("+++", "---"))]
        assert len([ln for ln in body if ln.startswith("+")]) == 1
        assert len([ln for ln in body if ln.startswith("-")]) <= 1


def test_there_is_a_project_with_bugs_in_two_modules():
    assert MULTI_MODULE


@pytest.mark.parametrize("name", MULTI_MODULE)
def test_each_module_change_alone_passes_only_its_own_tests(name, tmp_path):
    ticket_tests = set(load_ticket(str(EXAMPLES / "tickets" / f"{name}.md")).tests)
    patch = EXAMPLES / "fixes" / f"{name}.patch"
    passed_by: dict[str, set[str]] = {}
    for n, path in enumerate(_fix_sections(name)):
        repo = tmp_path / f"only-{n}"
        assert _prepare(name, repo).returncode == 0
        applied = subprocess.run(
            ["git", "apply", f"--include={path}", str(patch)],
            cwd=repo,
            capture_output=True,
            text=True,
        )
        assert applied.returncode == 0, applied.stderr
        assert subprocess.run(
            ["git", "diff", "--name-only"], cwd=repo, capture_output=True, text=True
        ).stdout.split() == [path]
        collected = _collected(repo)
        returncode, outcomes = _outcomes(repo, collected)
        failed = {nid for nid, outcome in outcomes.items() if outcome != "PASSED"}
        # Still red, failing only ticket tests, and some ticket test now passes.
        assert returncode == 1, path
        assert failed < ticket_tests, path
        assert set(outcomes) == set(collected)
        passed_by[path] = ticket_tests - failed
    fixed = list(passed_by.values())
    assert all(a.isdisjoint(b) for i, a in enumerate(fixed) for b in fixed[i + 1 :])
    assert set().union(*fixed) == ticket_tests


def test_reference_fix_turns_the_suite_green(prepared, tmp_path):
    repo = tmp_path / prepared.name
    assert _prepare(prepared.name, repo).returncode == 0
    patch = EXAMPLES / "fixes" / f"{prepared.name}.patch"
    applied = subprocess.run(["git", "apply", str(patch)], cwd=repo, capture_output=True, text=True)
    assert applied.returncode == 0, applied.stderr
    returncode, outcomes = _outcomes(repo, prepared.collected)
    assert returncode == 0
    assert set(outcomes) == set(prepared.collected)
    assert set(outcomes.values()) == {"PASSED"}


def test_prepare_makes_a_clean_repo_with_one_commit(prepared):
    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=prepared.repo, capture_output=True, text=True, check=True
        ).stdout

    assert git("log", "--format=%s").splitlines() == ["initial import"]
    assert git("rev-parse", "--abbrev-ref", "HEAD").strip() == "main"
    source = EXAMPLES / prepared.name
    expected = {
        p.relative_to(source).as_posix()
        for p in source.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and ".pytest_cache" not in p.parts
    }
    assert set(git("ls-files").splitlines()) == expected


def test_examples_tree_has_no_nested_git_repo():
    assert not [p for p in EXAMPLES.rglob(".git")]


def test_prepare_prints_dest(tmp_path):
    dest = tmp_path / "fresh"
    proc = _prepare(PROJECTS[0], dest)
    assert proc.returncode == 0
    assert proc.stdout.strip() == str(dest.resolve())


def test_prepare_into_existing_empty_dir(tmp_path):
    dest = tmp_path / "empty"
    dest.mkdir()
    assert _prepare(PROJECTS[0], dest).returncode == 0
    assert (dest / "pyproject.toml").is_file()


def test_prepare_unknown_name_exits_2_with_one_line(tmp_path):
    dest = tmp_path / "dest"
    for name in ("no-such-project", "tickets", "../examples", ""):
        proc = _prepare(name, dest)
        assert proc.returncode == 2, name
        assert len(proc.stderr.strip().splitlines()) == 1
        assert "unknown example" in proc.stderr
        assert "Traceback" not in proc.stderr
        assert not dest.exists()


def test_prepare_non_empty_dest_exits_2_and_keeps_files(tmp_path):
    dest = tmp_path / "busy"
    dest.mkdir()
    (dest / "notes.txt").write_text("mine", encoding="utf-8")
    proc = _prepare(PROJECTS[0], dest)
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1
    assert "not empty" in proc.stderr
    assert [p.name for p in dest.iterdir()] == ["notes.txt"]
    assert (dest / "notes.txt").read_text(encoding="utf-8") == "mine"


def test_prepare_dest_is_a_file_exits_2(tmp_path):
    dest = tmp_path / "file.txt"
    dest.write_text("x", encoding="utf-8")
    proc = _prepare(PROJECTS[0], dest)
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1
