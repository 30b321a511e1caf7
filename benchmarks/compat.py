"""Compatibility matrix: `agent test --all` against plain `python -m pytest` on real projects.

For every package pinned in benchmarks/compat/packages.toml, as a user would have it:
1. its sdist at the pinned version (`pip download --no-binary :all: --no-deps`, checked against
   the pinned sha256, cached under ~/.cache/greenpatch/compat/sdists: re-runs work offline);
2. unpacked and committed as a git repository with one commit (the user's repo);
3. a venv of its own (~/.cache/greenpatch/compat/venvs) holding the package, its test
   dependencies and pytest, but neither coverage nor pytest-xdist: those are greenpatch's needs,
   which it must bring itself;
4. plain `python -m pytest --junitxml` in the repo with that venv, then
   `agent test --all --repo REPO --python VENV/bin/python --json OUT` (with an uncommitted
   `[tool.greenpatch] python = ...` instead when the CLI has no --python yet), then outcomes
   compared test by test, and every difference classified (no network in the sandbox, a time
   limit, not collected, ...).

Printed: one row per package (layout, config file, tests, identical?, differing tests and why),
/proc/loadavg before and after. A runner failure is recorded with its one-line error, never
worked around here.

    .venv/bin/python benchmarks/compat.py [--packages six,iniconfig] [--json OUT]
"""

from __future__ import annotations

import argparse
import configparser
import datetime
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import tomllib
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

HERE = Path(__file__).resolve().parent
PACKAGES = HERE / "compat" / "packages.toml"
# Always under the home directory, not $XDG_CACHE_HOME: the agent runs below get a fresh
# XDG_CACHE_HOME of their own, and the sdists and venvs must survive that.
CACHE = Path.home() / ".cache" / "greenpatch" / "compat"
AGENT = Path(sys.executable).parent / "agent"
OUTCOMES = ("passed", "failed", "error", "skipped")
# Messages that mean "this test wanted the network" (the sandbox has none, by design).
NETWORK = re.compile(
    r"Temporary failure in name resolution|Name or service not known|Network is unreachable|"
    r"gaierror|ConnectionRefused|Connection refused|URLError|NewConnectionError|"
    r"MaxRetryError|nodename nor servname|No address associated with hostname",
    re.I,
)
TIMEOUT = re.compile(r"timed? ?out|time limit|Timeout", re.I)
SANDBOX_FS = re.compile(r"Read-only file system|Permission denied|No such file or directory", re.I)


@dataclass(frozen=True)
class Spec:
    """One pinned package of the matrix."""

    name: str
    version: str
    sha256: str
    install: str  # "editable" (pip install -e .) or "regular" (pip install .)
    deps: tuple[str, ...]
    pytest: str
    note: str = ""
    timeout: float = 600.0  # seconds for each of the two runs
    # The project's own test deps hold coverage (pytest-cov in its requirements): the user's venv
    # then has a coverage of its own, beside greenpatch's.
    own_coverage: bool = False

    @property
    def key(self) -> str:
        return f"{self.name}-{self.version}"


@dataclass
class Run:
    """One way of running a suite: its exit code, time and outcome per test."""

    code: int | None
    seconds: float
    outcomes: dict[str, str] = field(default_factory=dict)  # junit key -> outcome
    messages: dict[str, str] = field(default_factory=dict)  # junit key -> failure message
    ids: dict[str, str] = field(default_factory=dict)  # junit key -> node id (agent side)
    error: str = ""  # one line: why the run produced no results (exit 2, timeout, ...)
    interrupted: bool = False  # plain pytest stopped at a collection error, ran nothing


@dataclass
class Difference:
    test: str
    plain: str  # an outcome, or "absent"
    agent: str
    why: str


@dataclass
class Result:
    """What the matrix reports for one package."""

    package: str
    version: str
    layout: str
    config: str
    tests_plain: int
    tests_agent: int
    identical: bool
    plain_counts: dict[str, int]
    agent_counts: dict[str, int]
    plain_seconds: float
    agent_seconds: float
    agent_exit: int | None
    agent_error: str
    differences: list[Difference]
    why: dict[str, int]  # reason -> number of differing tests
    hygiene: list[str]  # what the agent run changed that it must not (user's venv, tree)
    python_flag: bool  # --python given (else [tool.greenpatch] python, uncommitted)
    module_skips: int = 0  # whole modules skipped at collection (junit lists them, not tests)
    prepare_error: str = ""  # the harness could not set the package up (not the runner's fault)


def log(console: Console, message: str) -> None:
    console.log(message, highlight=False)


def _spec(p: dict, pytest: str) -> Spec:
    return Spec(
        name=p["name"],
        version=p["version"],
        sha256=p["sha256"],
        install=p.get("install", "editable"),
        deps=tuple(p.get("deps", ())),
        pytest=p.get("pytest", pytest),
        note=p.get("note", ""),
        timeout=float(p.get("timeout", 600)),
        own_coverage=bool(p.get("own_coverage", False)),
    )


def big_suite(path: Path = PACKAGES) -> Spec:
    """The 5,000+ test suite of the baseline-cost and first-candidate benchmarks."""
    data = tomllib.loads(path.read_text())
    return _spec(data["big_suite"], data["pytest"])


def load_specs(path: Path = PACKAGES, only: Iterable[str] | None = None) -> list[Spec]:
    data = tomllib.loads(path.read_text())
    specs = [_spec(p, data["pytest"]) for p in data["package"]]
    if only:
        wanted = [w.strip() for w in only if w.strip()]
        by_name = {s.name: s for s in specs}
        missing = [w for w in wanted if w not in by_name]
        if missing:
            raise SystemExit(f"not in {path.name}: {', '.join(missing)}")
        specs = [by_name[w] for w in wanted]
    return specs


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def fetch_sdist(spec: Spec, cache: Path = CACHE) -> Path:
    """The pinned sdist, from the cache or PyPI; its sha256 must match the pin."""
    sdists = cache / "sdists"
    sdists.mkdir(parents=True, exist_ok=True)
    # The pinned hash names the file: whatever pip called it (more-itertools -> more_itertools-).
    for candidate in sdists.iterdir():
        if candidate.is_file() and sha256(candidate) == spec.sha256:
            return candidate
    with tempfile.TemporaryDirectory(prefix="compat-dl-") as tmp:
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "-q",
                "--no-binary",
                ":all:",
                "--no-deps",
                "-d",
                tmp,
                f"{spec.name}=={spec.version}",
            ],
            check=True,
            capture_output=True,
            timeout=600,
        )
        (got,) = Path(tmp).iterdir()
        if sha256(got) != spec.sha256:
            raise RuntimeError(f"{got.name}: sha256 {sha256(got)} is not the pinned one")
        return Path(shutil.move(str(got), sdists / got.name))


def git(cwd: Path, *args: str) -> str:
    done = subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True)
    return done.stdout


def prepare_repo(spec: Spec, sdist: Path, cache: Path = CACHE) -> Path:
    """The sdist unpacked as a git repository with one commit, as a user's clone would be."""
    repo = cache / "repos" / spec.key
    marker = repo / ".git" / "compat-sdist"
    if marker.exists() and marker.read_text() == spec.sha256:
        return repo
    shutil.rmtree(repo, ignore_errors=True)
    repo.mkdir(parents=True)
    with tarfile.open(sdist) as tar:
        top = tar.getnames()[0].split("/")[0]
        tar.extractall(repo.parent / f".{spec.key}.unpack", filter="data")
    unpacked = repo.parent / f".{spec.key}.unpack" / top
    for item in unpacked.iterdir():
        shutil.move(str(item), repo / item.name)
    shutil.rmtree(repo.parent / f".{spec.key}.unpack")
    git(repo, "init", "-q", "-b", "main")
    git(repo, "config", "user.email", "compat@example.com")
    git(repo, "config", "user.name", "compat")
    # Everything the sdist ships is committed, even what its .gitignore would skip (generated
    # version files the tests import): greenpatch works from commits.
    git(repo, "add", "-A", "--force")
    git(repo, "commit", "-q", "-m", f"{spec.key} from its sdist")
    # What a developer's .gitignore would hide: build products of `pip install -e .` and the
    # droppings of a plain pytest run are not changes of theirs.
    exclude = repo / ".git" / "info" / "exclude"
    exclude.parent.mkdir(parents=True, exist_ok=True)
    exclude.write_text(
        "*.egg-info/\n__pycache__/\n*.py[cod]\n.pytest_cache/\n.hypothesis/\nbuild/\n.benchmarks/\n"
    )
    marker.write_text(spec.sha256)
    return repo


def prepare_venv(spec: Spec, repo: Path, cache: Path = CACHE, tools: tuple[str, ...] = ()) -> Path:
    """The user's venv: the package as its docs install it, its test deps, pytest; none of ours."""
    # `tools` (pytest-xdist for a reference run of plain `pytest -n 2`) make a second venv: the
    # user's own stays without them.
    env_dir = cache / "venvs" / (spec.key + ("-reference" if tools else ""))
    python = env_dir / "bin" / "python"
    wanted = json.dumps(
        {
            "install": spec.install,
            "deps": spec.deps,
            "pytest": spec.pytest,
            "repo": str(repo),
            "tools": tools,
        }
    )
    marker = env_dir / "compat-spec.json"
    if python.exists() and marker.exists() and marker.read_text() == wanted:
        return python
    shutil.rmtree(env_dir, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "venv", str(env_dir)], check=True, capture_output=True)
    target = ["-e", "."] if spec.install == "editable" else ["."]
    # setuptools_scm would read the version from our one-commit git repo (0.1.dev1+g...), not
    # from the sdist's PKG-INFO: tell it the real one.
    env = {**os.environ, "SETUPTOOLS_SCM_PRETEND_VERSION": spec.version}
    done = subprocess.run(
        [
            *(str(python), "-m", "pip", "install", "-q", *target, *spec.deps),
            *(f"pytest=={spec.pytest}", *tools),
        ],
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    if done.returncode != 0:
        tail = [ln for ln in done.stderr.splitlines() if ln.strip()][-1:] or ["?"]
        raise RuntimeError(f"pip install failed: {tail[0]}")
    leaked = subprocess.run(
        [
            str(python),
            "-c",
            "import importlib.util as u;"
            "print(' '.join(m for m in ('coverage', 'xdist') if u.find_spec(m)))",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    if leaked and not tools and not (spec.own_coverage and leaked == "coverage"):
        # A matrix venv with our tools in it would hide the very problem it exists to show.
        raise RuntimeError(f"the test deps pulled in {leaked}: fix packages.toml")
    marker.write_text(wanted)
    return python


def pytest_config(repo: Path) -> str:
    """Which file holds the pytest configuration, in pytest's own order of precedence."""
    ini = repo / "pytest.ini"
    if ini.exists():
        return "pytest.ini"
    pyproject = repo / "pyproject.toml"
    if pyproject.exists():
        tool = tomllib.loads(pyproject.read_text()).get("tool", {})
        if "ini_options" in tool.get("pytest", {}):
            return "pyproject [tool.pytest.ini_options]"
        if "pytest" in tool:
            return "pyproject [tool.pytest]"
    for name, section in (("tox.ini", "pytest"), ("setup.cfg", "tool:pytest")):
        path = repo / name
        if path.exists():
            parser = configparser.ConfigParser(interpolation=None, strict=False)
            try:
                parser.read(path)
            except configparser.Error:
                continue
            if parser.has_section(section):
                return f"{name} [{section}]"
    return "none"


def addopts(repo: Path) -> str:
    """The addopts of the pytest configuration in force (not tox commands, not comments)."""
    where = pytest_config(repo)
    if where.startswith("pyproject"):
        tool = (
            tomllib.loads((repo / "pyproject.toml").read_text()).get("tool", {}).get("pytest", {})
        )
        value = tool.get("ini_options", tool).get("addopts", "")
        return " ".join(value) if isinstance(value, list) else str(value)
    if where == "none":
        return ""
    name, _, section = where.partition(" ")
    parser = configparser.ConfigParser(interpolation=None, strict=False)
    parser.read(repo / name)
    return parser.get(section.strip("[]") or "pytest", "addopts", fallback="")


def layout(repo: Path) -> str:
    """Where the tests live and how they are written, from the files of the tree."""
    tests = [
        p
        for p in repo.rglob("*.py")
        if re.match(r"(test_.*|.*_test|tests?)\.py$", p.name) or "tests" in p.parts[:-1]
    ]
    tests = [p for p in tests if not {"docs", "examples", "bench"} & set(p.relative_to(repo).parts)]
    where: set[str] = set()
    if (repo / "src").is_dir():
        where.add("src/")
    for p in tests:
        parts = p.relative_to(repo).parts
        if len(parts) == 1:
            where.add("root")
        elif (parts[0] == "src" and len(parts) > 3) or (
            # A tests/ folder with an __init__.py is a package of its own, not inside the project's.
            parts[0] not in ("tests", "test", "testing")
            and (repo / parts[0] / "__init__.py").exists()
        ):
            where.add("in-package")
        else:
            where.add(f"{parts[0]}/")
    text = " ".join(p.read_text(errors="replace") for p in tests[:200])
    style = []
    if "unittest.TestCase" in text or re.search(r"\(TestCase\)", text):
        style.append("unittest")
    if "--doctest-modules" in addopts(repo):
        style.append("--doctest-modules")
    elif re.search(r"^\s*(import doctest|from doctest import)", text, re.M):
        style.append("doctests run by tests")
    return ", ".join(sorted(where) + style)


def junit_key(nodeid: str) -> str:
    """The key pytest's junitxml writes for `nodeid`: dotted classname and name, as one string.

    The same mangling as pytest's `mangle_test_address`: the file path becomes dotted (".py"
    dropped), every "::" part but the last joins the classname, parameters stay with the name.
    """
    path, bracket, params = nodeid.partition("[")
    names = path.split("::")
    names[0] = re.sub(r"\.py$", "", names[0].replace("/", "."))
    names[-1] += bracket + params
    return ".".join(names[:-1]) + "::" + names[-1]


def parse_junit(path: Path) -> tuple[dict[str, str], dict[str, str]]:
    """Outcome and message per junit key; a test reported twice keeps its worst outcome."""
    rank = {"passed": 0, "skipped": 1, "error": 2, "failed": 3}
    outcomes: dict[str, str] = {}
    messages: dict[str, str] = {}
    for case in ET.parse(path).getroot().iter("testcase"):
        key = f"{case.get('classname', '')}::{case.get('name', '')}"
        outcome, message = "passed", ""
        # Same precedence as greenpatch's plugin: a failed call beats an error in teardown.
        for tag in ("failure", "error", "skipped"):
            child = case.find(tag)
            if child is not None:
                outcome = {"failure": "failed", "error": "error", "skipped": "skipped"}[tag]
                message = (child.get("message") or "") + "\n" + (child.text or "")
                break
        if key not in outcomes or rank[outcome] > rank[outcomes[key]]:
            outcomes[key], messages[key] = outcome, message
    return outcomes, messages


def loadavg() -> str:
    return Path("/proc/loadavg").read_text().split(" ")[:3].__str__().replace("'", "")


def untracked(repo: Path) -> set[str]:
    """Files git does not track, ignored ones included (what a run leaves in the tree)."""
    out = subprocess.run(
        ["git", "ls-files", "--others", "-z"], cwd=repo, capture_output=True, check=True
    ).stdout
    return {n for n in out.decode("utf-8", "replace").split("\0") if n}


def tree_state(repo: Path) -> str:
    return git(repo, "status", "--porcelain", "--ignored", "--untracked-files=all")


def venv_fingerprint(env_dir: Path) -> str:
    """Every file of the venv with its size and mtime: an install into it changes this."""
    digest = hashlib.sha256()
    for dirpath, dirnames, filenames in os.walk(env_dir):
        dirnames.sort()
        for name in sorted(filenames):
            path = os.path.join(dirpath, name)
            try:
                st = os.lstat(path)
            except OSError:
                continue
            digest.update(f"{path}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def run_plain(
    python: Path,
    repo: Path,
    out_dir: Path,
    timeout: float,
    args: Iterable[str] = (),
    name: str = "plain",
) -> Run:
    """`python -m pytest --junitxml [args]` in the repo, as the user runs it; the tree kept."""
    junit = out_dir / f"{name}.xml"
    before = untracked(repo)
    started = time.monotonic()
    with (out_dir / f"{name}.log").open("wb") as logf:
        try:
            proc = subprocess.run(
                [str(python), "-m", "pytest", f"--junitxml={junit}", *args],
                cwd=repo,
                stdin=subprocess.DEVNULL,
                stdout=logf,
                stderr=subprocess.STDOUT,
                timeout=timeout,
                env={k: v for k, v in os.environ.items() if k != "PYTEST_ADDOPTS"},
            )
            code: int | None = proc.returncode
        except subprocess.TimeoutExpired:
            code = None
    seconds = time.monotonic() - started
    # The plain run's __pycache__, .pytest_cache and temp files go: every run starts alike.
    for leftover in untracked(repo) - before:
        (repo / leftover).unlink(missing_ok=True)
    run = Run(code=code, seconds=seconds)
    if code is None:
        run.error = f"plain pytest timed out after {timeout:.0f} s"
    elif junit.exists():
        run.outcomes, run.messages = parse_junit(junit)
        # "Interrupted: 1 error during collection": junit cannot say that nothing else ran.
        log_text = (out_dir / f"{name}.log").read_text(errors="replace")
        run.interrupted = bool(re.search(r"Interrupted: \d+ errors? during collection", log_text))
    else:
        run.error = f"plain pytest exited {code} without a junit report"
    return run


def fresh_cache(python: Path, root: Path) -> tuple[Path, float]:
    """An XDG_CACHE_HOME without baselines or results, but with the overlay for `python` built.

    The overlay (coverage and our plugin for that interpreter) is a one-time cost per Python
    version, not per repository: one warm-up `agent test --all` on a one-test repository builds
    it, then everything else the warm-up cached goes. (seconds the warm-up took)
    """
    xdg = root / "xdg-cache"
    tiny = root / "tiny-repo"
    tiny.mkdir(parents=True)
    (tiny / "test_tiny.py").write_text("def test_tiny():\n    assert 1 + 1 == 2\n")
    git(tiny, "init", "-q", "-b", "main")
    git(tiny, "-c", "user.name=b", "-c", "user.email=b@example.com", "add", "-A")
    git(tiny, "-c", "user.name=b", "-c", "user.email=b@example.com", "commit", "-qm", "tiny")
    started = time.monotonic()
    done = subprocess.run(
        [str(AGENT), "test", "--all", "--repo", str(tiny), "--python", str(python), "-q"],
        env={**os.environ, "XDG_CACHE_HOME": str(xdg)},
        capture_output=True,
        text=True,
        timeout=1800,
    )
    seconds = time.monotonic() - started
    if done.returncode != 0:
        raise RuntimeError(f"overlay warm-up failed: {error_line(done.stderr)}")
    ours = xdg / "greenpatch"
    for entry in ours.iterdir() if ours.exists() else ():
        if entry.name != "overlays":
            shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
    return xdg, seconds


_HELP: dict[str, bool] = {}


def has_python_flag(agent: Path = AGENT) -> bool:
    """Does `agent test` take --python (else the interpreter goes in [tool.greenpatch])?"""
    if str(agent) not in _HELP:
        done = subprocess.run(
            [str(agent), "test", "--help"],
            capture_output=True,
            text=True,
            env={**os.environ, "COLUMNS": "200"},
        )
        _HELP[str(agent)] = "--python" in done.stdout
    return _HELP[str(agent)]


def error_line(stderr: str) -> str:
    """The one line a failing `agent` printed about why (its last non-progress line)."""
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
    for line in reversed(lines):
        if line.lower().startswith(("error", "greenpatch:", "agent:")):
            return line
    return lines[-1] if lines else "no output"


def run_agent(
    python: Path,
    repo: Path,
    out_dir: Path,
    xdg_cache: Path,
    timeout: float,
    extra: Iterable[str] = (),
) -> tuple[Run, bool]:
    """`agent test --all` on the repo with the user's venv; (its run, whether --python was used)."""
    out = out_dir / "agent.json"
    out.unlink(missing_ok=True)
    flag = has_python_flag()
    cmd = [str(AGENT), "test", "--all", "--repo", str(repo), "--json", str(out), *extra]
    pyproject = repo / "pyproject.toml"
    original = pyproject.read_bytes() if pyproject.exists() else None
    if flag:
        cmd += ["--python", str(python)]
    else:
        # The documented way before --python: an uncommitted [tool.greenpatch] entry.
        text = (original or b"").decode()
        text += ("\n" if text and not text.endswith("\n") else "") + (
            f'\n[tool.greenpatch]\npython = "{python}"\n'
        )
        pyproject.write_text(text)
    env = {**os.environ, "XDG_CACHE_HOME": str(xdg_cache)}
    env.pop("PYTEST_ADDOPTS", None)
    started = time.monotonic()
    with (out_dir / "agent.log").open("w+") as logf:
        proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=logf,
            env=env,
            start_new_session=True,
        )
        try:
            code: int | None = proc.wait(timeout)
        except subprocess.TimeoutExpired:
            # The whole process group: workers and sandboxes the agent started.
            os.killpg(proc.pid, 9)
            proc.wait()
            code = None
        finally:
            if not flag:
                if original is None:
                    pyproject.unlink()
                else:
                    pyproject.write_bytes(original)
        seconds = time.monotonic() - started
        logf.seek(0)
        stderr = logf.read()
    run = Run(code=code, seconds=seconds)
    if code is None:
        run.error = f"agent test timed out after {timeout:.0f} s"
        return run, flag
    try:
        data = json.loads(out.read_text())
    except (OSError, ValueError):
        run.error = f"exit {code}: {error_line(stderr)}"
        return run, flag
    for test in data.get("tests", []):
        key = junit_key(test["id"])
        run.outcomes[key] = test["outcome"]
        run.messages[key] = test.get("message") or ""
        run.ids[key] = test["id"]
    # Files that failed to collect: where plain pytest's junit has an error entry for the module.
    for failure in data.get("collect_errors", []):
        key = junit_key(failure["id"])
        run.outcomes.setdefault(key, "error")
        run.messages.setdefault(key, failure.get("message") or "")
        run.ids.setdefault(key, failure["id"])
    if code not in (0, 1):
        run.error = f"exit {code}: {error_line(stderr)}"
    return run, flag


def classify(
    plain: str, agent: str, plain_msg: str, agent_msg: str, plain_interrupted: bool = False
) -> str:
    """Why one test's outcomes differ, as a short category (the table groups by it)."""
    if agent == "absent":
        return "not run by agent" if plain != "error" else "not run by agent (errors in plain)"
    if plain == "absent":
        # Plain pytest stops at a collection error; the runner records it and runs the rest.
        return "plain stopped at a collection error" if plain_interrupted else "only run by agent"
    if plain == "skipped" and agent == "passed" and re.search(r"\broot\b", plain_msg, re.I):
        # Tests skipped for root (file permissions mean nothing to root): the sandbox runs
        # them as an unprivileged user, where they run.
        return "sandbox user is not root"
    message = agent_msg if agent in ("failed", "error", "skipped") else plain_msg
    if NETWORK.search(message):
        return "network (the sandbox has none)"
    if agent in ("failed", "error") and TIMEOUT.search(agent_msg):
        return "time limit"
    if agent in ("failed", "error") and SANDBOX_FS.search(agent_msg):
        return "sandbox filesystem"
    return f"{plain} -> {agent}"


def compare(plain: Run, agent: Run) -> tuple[list[Difference], int]:
    """Test-by-test differences (agent ids where known), and whole modules skipped at collection."""
    differences: list[Difference] = []
    module_skips = 0
    interrupted = plain.interrupted
    for key in sorted(set(plain.outcomes) | set(agent.outcomes)):
        p = plain.outcomes.get(key, "absent")
        a = agent.outcomes.get(key, "absent")
        if p == a:
            continue
        if key.startswith("::") and p == "skipped" and a == "absent":
            # junit lists a module skipped at import (pytest.skip(allow_module_level=True)) as a
            # testcase; it holds no test, and pytest's own count of tests does not grow by it.
            module_skips += 1
            continue
        why = classify(p, a, plain.messages.get(key, ""), agent.messages.get(key, ""), interrupted)
        differences.append(Difference(agent.ids.get(key, key), p, a, why))
    return differences, module_skips


ALONE = "order-dependent: plain pytest gives the same without the rest of the suite"


def recheck_alone(
    python: Path, repo: Path, out_dir: Path, timeout: float, differences: list[Difference]
) -> None:
    """Run the tests the agent saw differently again with plain pytest, without the rest.

    A test that passes in the whole suite but fails on its own relies on what earlier tests left
    behind (an import, a cache): a fact of the suite, not the runner's doing, whatever the runner
    runs with it. Those differences are reclassified as such.
    """
    # Only tests both ran: a test plain pytest never reached (it stopped at a collection error)
    # says nothing about order.
    ran = [d for d in differences if d.agent != "absent" and d.plain != "absent"]
    ids = [d.test for d in ran if "::" in d.test.lstrip(":")]
    ids = [i for i in ids if not i.startswith("::")][:300]
    if not ids:
        return
    alone = run_plain(python, repo, out_dir, timeout, ids, "alone")
    for d in ran:
        if alone.outcomes.get(junit_key(d.test)) == d.agent:
            d.why = ALONE


def counts(outcomes: dict[str, str]) -> dict[str, int]:
    c = Counter(outcomes.values())
    return {k: c.get(k, 0) for k in OUTCOMES}


def run_package(
    spec: Spec,
    run_dir: Path,
    xdg_cache: Path,
    cache: Path = CACHE,
    agent_args: Iterable[str] = (),
    status=None,
) -> Result:
    """The whole comparison for one package; never raises for the package's or runner's sake."""

    def step(text: str) -> None:
        if status is not None:
            status(text)

    out_dir = run_dir / spec.key
    out_dir.mkdir(parents=True, exist_ok=True)
    blank = Result(
        spec.name, spec.version, "", "", 0, 0, False, {}, {}, 0.0, 0.0, None, "", [], {}, [], False
    )
    try:
        step("sdist")
        sdist = fetch_sdist(spec, cache)
        step("repo")
        repo = prepare_repo(spec, sdist, cache)
        step("venv")
        python = prepare_venv(spec, repo, cache)
    except (RuntimeError, OSError, subprocess.SubprocessError, ValueError) as exc:
        blank.prepare_error = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return blank
    blank.layout, blank.config = layout(repo), pytest_config(repo)
    step("plain pytest")
    plain = run_plain(python, repo, out_dir, spec.timeout)
    venv_before = venv_fingerprint(python.parent.parent)
    tree_before = tree_state(repo)
    step("agent test --all")
    agent, flag = run_agent(python, repo, out_dir, xdg_cache, spec.timeout, agent_args)
    hygiene = []
    if venv_fingerprint(python.parent.parent) != venv_before:
        hygiene.append("the user's venv changed")
    if tree_state(repo) != tree_before:
        hygiene.append("the user's working tree changed")
    differences, module_skips = compare(plain, agent) if not agent.error else ([], 0)
    if differences:
        step("plain pytest on the differing tests alone")
        recheck_alone(python, repo, out_dir, spec.timeout, differences)
    why = Counter(d.why for d in differences)
    if plain.error:
        why["plain run failed"] += 1
    if agent.error:
        why["runner failure"] += 1
    return Result(
        package=spec.name,
        version=spec.version,
        layout=blank.layout,
        config=blank.config,
        tests_plain=len(plain.outcomes) - module_skips,
        tests_agent=len(agent.outcomes),
        identical=not differences and not agent.error and not plain.error and not hygiene,
        plain_counts=counts(plain.outcomes),
        agent_counts=counts(agent.outcomes),
        plain_seconds=round(plain.seconds, 1),
        agent_seconds=round(agent.seconds, 1),
        agent_exit=agent.code,
        agent_error=agent.error or plain.error,
        differences=differences,
        why=dict(why),
        hygiene=hygiene,
        python_flag=flag,
        module_skips=module_skips,
    )


def table(results: list[Result]) -> Table:
    t = Table(title="agent test --all vs python -m pytest", show_lines=False)
    for column in ("package", "layout", "config", "tests", "identical", "differences / why", "s"):
        t.add_column(column, overflow="fold")
    for r in results:
        if r.prepare_error:
            setup = escape(f"setup: {r.prepare_error}")
            t.add_row(f"{r.package} {r.version}", "", "", "", "-", setup, "")
            continue
        reasons = "; ".join(f"{n} {why}" for why, n in sorted(r.why.items()))
        diff = r.agent_error or reasons or "-"
        if r.hygiene:
            diff += " [" + ", ".join(r.hygiene) + "]"
        # Config names such as "[tool:pytest]" are text, not rich markup.
        t.add_row(
            f"{r.package} {r.version}",
            escape(r.layout),
            escape(r.config),
            f"{r.tests_plain}/{r.tests_agent}",
            "[green]yes[/green]" if r.identical else "[red]no[/red]",
            escape(diff),
            f"{r.plain_seconds:.0f}/{r.agent_seconds:.0f}",
        )
    return t


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--packages", help="comma-separated subset (names as in packages.toml)")
    parser.add_argument("--json", type=Path, help="write every result, differences included")
    parser.add_argument(
        "--keep-cache",
        action="store_true",
        help="use the user's greenpatch cache (default: a fresh XDG_CACHE_HOME for this run)",
    )
    parser.add_argument("--timeout", type=float, help="seconds per run (default: per package)")
    parser.add_argument("--agent-arg", action="append", default=[], help="extra agent test flag")
    args = parser.parse_args(argv)
    specs = load_specs(only=args.packages.split(",") if args.packages else None)
    if args.timeout:
        specs = [Spec(**{**asdict(s), "timeout": args.timeout}) for s in specs]
    console = Console(stderr=True)
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%SZ")
    run_dir = CACHE / "runs" / stamp
    run_dir.mkdir(parents=True)
    xdg = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    if not args.keep_cache:
        xdg = run_dir / "xdg-cache"
    commit = git(HERE.parent, "rev-parse", "--short", "HEAD").strip()
    load_before = loadavg()
    log(console, f"commit {commit}, run dir {run_dir}, XDG_CACHE_HOME {xdg}, load {load_before}")
    results: list[Result] = []
    started = time.monotonic()
    with Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(),
        console=console,
    ) as progress:
        task = progress.add_task("packages", total=len(specs))
        for spec in specs:

            def status(text: str, spec: Spec = spec) -> None:
                progress.update(task, description=f"{spec.key}: {text}")

            result = run_package(spec, run_dir, xdg, agent_args=args.agent_arg, status=status)
            results.append(result)
            verdict = "identical" if result.identical else "DIFFERENT"
            detail = result.prepare_error or result.agent_error or result.why or ""
            progress.console.log(
                escape(
                    f"{spec.key}: {verdict} ({result.tests_plain}/{result.tests_agent} tests, "
                    f"{result.plain_seconds:.0f}/{result.agent_seconds:.0f} s) {detail}"
                ),
                highlight=False,
            )
            progress.advance(task)
    load_after = loadavg()
    console_out = Console(width=200)
    console_out.print(table(results))
    for r in results:
        for d in r.differences[:5]:
            line = f"  {r.package}: {d.test}: {d.plain} -> {d.agent} ({d.why})"
            console_out.print(line, markup=False, highlight=False)
        if len(r.differences) > 5:
            console_out.print(f"  {r.package}: ... {len(r.differences) - 5} more")
    identical = sum(r.identical for r in results)
    console_out.print(
        f"{identical}/{len(results)} identical; commit {commit}; "
        f"{time.monotonic() - started:.0f} s; load average before {load_before}, "
        f"after {load_after}; --python flag: {any(r.python_flag for r in results)}"
    )
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "commit": commit,
                    "date": stamp,
                    "loadavg_before": load_before,
                    "loadavg_after": load_after,
                    "identical": identical,
                    "packages": [asdict(r) for r in results],
                },
                indent=1,
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
