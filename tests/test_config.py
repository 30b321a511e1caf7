"""`[tool.greenpatch]` merges defaults, file and flags in that order."""

from pathlib import Path

import pytest
from greenpatch.agent.config import Settings, load_settings
from greenpatch.agent.errors import AgentError


def test_defaults_without_pyproject(tmp_path: Path) -> None:
    assert load_settings(tmp_path) == Settings()


def test_file_then_flags(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text(
        "[tool.greenpatch]\nsandbox = 'docker'\nworkers = 4\nbudget = 60\n"
        "never-edit = ['docs/**']\npytest_args = ['-k', 'fast']\n"
    )
    settings = load_settings(tmp_path, workers=1, sandbox=None)
    assert settings.sandbox == "docker"
    assert settings.workers == 1
    assert settings.budget == 60.0 and isinstance(settings.budget, float)
    assert settings.never_edit == ["docs/**"]
    assert settings.pytest_args == ["-k", "fast"]


def test_bool_is_not_an_int(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text("[tool.greenpatch]\nworkers = true\n")
    with pytest.raises(AgentError, match="'workers' must be int"):
        load_settings(tmp_path)
