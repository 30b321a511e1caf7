"""Finding and checking the target repository without ever changing it."""

from __future__ import annotations

from pathlib import Path

import git

from agent.errors import AgentError


def resolve_repo(path: Path | None) -> git.Repo:
    """The git repository at `path` (default: around the current directory), checked for use."""
    start = Path(path) if path is not None else Path.cwd()
    if not start.exists():
        raise AgentError(f"repository path does not exist: {start}")
    if not start.is_dir():
        raise AgentError(f"repository path is not a directory: {start}")
    try:
        repo = git.Repo(start, search_parent_directories=path is None)
    except (git.InvalidGitRepositoryError, git.NoSuchPathError):
        raise AgentError(f"not a git repository: {start}") from None
    if repo.bare:
        raise AgentError(f"bare repository has no working tree: {start}")
    try:
        repo.head.commit  # noqa: B018 - raises on an unborn branch
    except ValueError:
        raise AgentError(f"repository has no commits yet: {repo.working_tree_dir}") from None
    return repo
