"""Settings: defaults, the user's own config, `[tool.greenpatch]` of the target repo, then flags.

The repository is untrusted (a labelled issue can come from anyone), so its config cannot weaken
isolation: it cannot choose the `process` backend, nor name an interpreter the repository ships
itself. Only the command line and the user's own config (`$XDG_CONFIG_HOME/greenpatch/config.toml`,
same keys, top level) can.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from greenpatch.agent.errors import AgentError
from greenpatch.sandboxes import safegit

SANDBOXES = ("bwrap", "docker", "process")
# Who drafts candidates (see agent.pipeline.draft): kept here so the CLI can check it without torch.
DRAFTERS = ("model", "model-only", "model-repair", "edits", "mutations")
MODEL_FREE = ("edits", "mutations")  # drafters that never load a model


@dataclass
class Settings:
    """Everything a run can be configured with; flags override the file, the file the defaults."""

    # The test command is pytest; these are its arguments (paths, -k, -p no:...).
    pytest_args: list[str] = field(default_factory=list)
    # Interpreter of the target project's environment; empty means the one greenpatch runs on.
    python: str = ""
    sandbox: str = "bwrap"
    workers: int = 2
    budget: float = 300.0
    test_timeout: float = 30.0
    candidate_timeout: float = 120.0
    memory_mb: int = 2048
    never_edit: list[str] = field(
        default_factory=lambda: ["tests/**", "test_*.py", "*_test.py", "**/conftest.py"]
    )
    docker_image: str = "greenpatch-worker:local"
    # A model server (OpenAI-compatible, `agent serve`, vLLM...) instead of a local model, and
    # the model it serves to use; `--model` and `--model-name` override them.
    model_url: str = ""
    model_name: str = ""


_TYPES: dict[str, tuple[type, ...]] = {
    "pytest_args": (list,),
    "python": (str,),
    "sandbox": (str,),
    "workers": (int,),
    "budget": (int, float),
    "test_timeout": (int, float),
    "candidate_timeout": (int, float),
    "memory_mb": (int,),
    "never_edit": (list,),
    "docker_image": (str,),
    "model_url": (str,),
    "model_name": (str,),
}
_LIST_OF_STR = {"pytest_args", "never_edit"}
_POSITIVE = {"workers", "budget", "test_timeout", "candidate_timeout", "memory_mb"}


def _check(key: str, value: Any, where: str) -> Any:
    if key not in _TYPES:
        known = ", ".join(sorted(_TYPES))
        raise AgentError(f"{where}: unknown key '{key}' (known: {known})")
    types = _TYPES[key]
    if isinstance(value, bool) or not isinstance(value, types):
        want = " or ".join(t.__name__ for t in types)
        raise AgentError(f"{where}: '{key}' must be {want}, got {type(value).__name__}")
    if key in _LIST_OF_STR and not all(isinstance(v, str) for v in value):
        raise AgentError(f"{where}: '{key}' must be a list of strings")
    if key in _POSITIVE and value <= 0:
        raise AgentError(f"{where}: '{key}' must be positive, got {value}")
    if key == "sandbox" and value not in SANDBOXES:
        raise AgentError(f"{where}: 'sandbox' must be one of {', '.join(SANDBOXES)}, got '{value}'")
    if key == "model_url" and value and not value.startswith(("http://", "https://")):
        raise AgentError(f"{where}: 'model_url' must start with http:// or https://")
    return float(value) if float in types else value


def user_config_path() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "greenpatch" / "config.toml"


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise AgentError(f"cannot read {path}: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise AgentError(f"{path} is not valid TOML: {exc}") from None


def _checked(section: Any, where: str) -> dict[str, Any]:
    if not isinstance(section, dict):
        raise AgentError(f"{where}: the settings must be a table")
    return {k.replace("-", "_"): _check(k.replace("-", "_"), v, where) for k, v in section.items()}


def _shipped_by_repo(repo_root: Path, python: str) -> bool:
    """Whether `python` (from the repo's config) is a file the repository itself tracks."""
    path = Path(python) if Path(python).is_absolute() else repo_root / python
    try:
        rel = os.path.relpath(os.path.realpath(path), os.path.realpath(repo_root))
    except ValueError:
        return False
    if rel.startswith(".."):
        return False
    done = subprocess.run(
        ["git", "ls-files", "--error-unmatch", "--", rel], cwd=repo_root, capture_output=True,
        env=safegit.environment(repo_root), check=False,
    )  # fmt: skip
    return done.returncode == 0


def load_settings(repo_root: Path, warn: Any = None, **flags: Any) -> Settings:
    """Defaults, the user's config, `[tool.greenpatch]` of `repo_root/pyproject.toml` (limited:
    see the module), then non-None flags. `warn(line)` hears what the repo's config may not do."""
    values: dict[str, Any] = {}
    user = user_config_path()
    if user.is_file():
        values.update(_checked(_read_toml(user), str(user)))
    pyproject = repo_root / "pyproject.toml"
    if pyproject.exists():
        section = _read_toml(pyproject).get("tool", {}).get("greenpatch", {})
        repo = _checked(section, f"{pyproject} [tool.greenpatch]")
        if repo.get("sandbox") == "process" and flags.get("sandbox") is None:
            if warn is not None:
                warn(f"{pyproject}: ignored sandbox = 'process': a repository's config cannot "
                     "turn isolation off (use --sandbox process)")  # fmt: skip
            del repo["sandbox"]
        if "docker_image" in repo:
            # The image is the container's whole root: the repository does not choose it.
            if warn is not None:
                warn(f"{pyproject}: ignored docker_image: a repository's config cannot choose "
                     "the sandbox's image (use your own config)")  # fmt: skip
            del repo["docker_image"]
        if repo.get("python") and flags.get("python") is None and _shipped_by_repo(
            repo_root, repo["python"]
        ):
            raise AgentError(
                f"{pyproject}: python = '{repo['python']}' is a file of the repository itself; "
                "name your interpreter with --python"
            )
        values.update(repo)
    for key, value in flags.items():
        if value is not None:
            values[key] = _check(key, value, f"--{key.replace('_', '-')}")
    return dataclasses.replace(Settings(), **values)


def sandbox_options(settings: Settings) -> dict[str, Any]:
    """Constructor options of the chosen sandbox backend."""
    return {"image": settings.docker_image} if settings.sandbox == "docker" else {}


def check_cluster(cluster: str | None, ray_address: str | None) -> None:
    """--cluster names a known engine; --ray-address goes with it. AgentError (exit 2) if not."""
    if cluster is not None and cluster != "ray":
        raise AgentError(f"--cluster must be 'ray', got '{cluster}'")
    if ray_address is not None and cluster is None:
        raise AgentError("--ray-address needs --cluster ray")
