"""Finding and checking the target repository without ever changing it.

Every gitpython `Repo` of ours is a `SafeRepo`: the git it runs gets `sandboxes.safegit`'s
environment (no hooks, fsmonitor, filters or credential helpers of the repository, no secrets).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import git
from greenpatch.agent.errors import AgentError
from greenpatch.sandboxes import safegit


class SafeGit(git.Git):
    """gitpython's command runner with safegit's environment for every git it starts."""

    def __init__(self, working_dir: str | os.PathLike[str] | None = None) -> None:
        super().__init__(working_dir)
        self._safe_env = safegit.environment(working_dir or os.getcwd())

    def execute(self, command: Any, **kwargs: Any) -> Any:  # noqa: D102 - gitpython's
        # gitpython starts from a copy of os.environ: what safegit leaves out is blanked here.
        env = {k: "" for k in os.environ if k not in self._safe_env}
        env.update(self._safe_env)
        env.update(kwargs.get("env") or {})
        kwargs["env"] = env
        return super().execute(command, **kwargs)


class SafeRepo(git.Repo):
    GitCommandWrapperType = SafeGit


def open_repo(repo: git.Repo | str | Path) -> SafeRepo:
    """`repo` as a SafeRepo (the same repository; a plain `git.Repo` is reopened)."""
    if isinstance(repo, SafeRepo):
        return repo
    if isinstance(repo, git.Repo):
        repo = repo.working_tree_dir or repo.git_dir
    try:
        return SafeRepo(repo)
    except (git.InvalidGitRepositoryError, git.NoSuchPathError):
        raise AgentError(f"not a git repository: {repo}") from None


def resolve_repo(path: Path | None) -> SafeRepo:
    """The git repository at `path` (default: around the current directory), checked for use."""
    start = Path(path) if path is not None else Path.cwd()
    if not start.exists():
        raise AgentError(f"repository path does not exist: {start}")
    if not start.is_dir():
        raise AgentError(f"repository path is not a directory: {start}")
    try:
        repo = SafeRepo(start, search_parent_directories=path is None)
    except (git.InvalidGitRepositoryError, git.NoSuchPathError):
        raise AgentError(f"not a git repository: {start}") from None
    if repo.bare:
        raise AgentError(f"bare repository has no working tree: {start}")
    try:
        repo.head.commit  # noqa: B018 - raises on an unborn branch
    except ValueError:
        raise AgentError(f"repository has no commits yet: {repo.working_tree_dir}") from None
    return repo
