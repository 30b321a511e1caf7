"""`[tool.greenpatch]` in the target repo's pyproject.toml, validated and merged with flags."""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent.errors import AgentError

SANDBOXES = ("bwrap", "docker", "process")
# Who drafts candidates (see agent.draft): kept here so the CLI can check it without torch.
DRAFTERS = ("model", "model-only", "edits", "mutations")
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
    return float(value) if float in types else value


def load_settings(repo_root: Path, **flags: Any) -> Settings:
    """Defaults, then `[tool.greenpatch]` from `repo_root/pyproject.toml`, then non-None flags."""
    values: dict[str, Any] = {}
    pyproject = repo_root / "pyproject.toml"
    if pyproject.exists():
        try:
            data = tomllib.loads(pyproject.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError) as exc:
            raise AgentError(f"cannot read {pyproject}: {exc}") from None
        except tomllib.TOMLDecodeError as exc:
            raise AgentError(f"{pyproject} is not valid TOML: {exc}") from None
        section = data.get("tool", {}).get("greenpatch", {})
        if not isinstance(section, dict):
            raise AgentError(f"{pyproject}: [tool.greenpatch] must be a table")
        for key, value in section.items():
            values[key.replace("-", "_")] = _check(key.replace("-", "_"), value, str(pyproject))
    for key, value in flags.items():
        if value is not None:
            values[key] = _check(key, value, f"--{key.replace('_', '-')}")
    return dataclasses.replace(Settings(), **values)
