"""Committing a fix on a new branch without touching the user's working tree, index or HEAD.

The commit is built with git plumbing from the base commit's tree through a private, temporary
index file (`GIT_INDEX_FILE`), so the user's `.git/index`, checked-out files and current branch stay
byte-identical. The branch is created with `git update-ref NAME SHA ""`: the empty old value makes
git refuse if the branch already exists, so creation is atomic.
"""

from __future__ import annotations

import difflib
import os
import re
import tempfile
from collections.abc import Mapping
from pathlib import Path, PurePosixPath

import git
from greenpatch.agent.errors import AgentError
from greenpatch.agent.repo import open_repo
from greenpatch.agent.tickets import Ticket

_FALLBACK_IDENTITY = {
    "GIT_AUTHOR_NAME": "greenpatch",
    "GIT_AUTHOR_EMAIL": "greenpatch@localhost",
    "GIT_COMMITTER_NAME": "greenpatch",
    "GIT_COMMITTER_EMAIL": "greenpatch@localhost",
}
_REGULAR_MODES = {0o100644: "100644", 0o100755: "100755"}

Content = str | bytes


def default_branch_name(ticket: Ticket) -> str:
    """`greenpatch/<ticket-slug>`."""
    return f"greenpatch/{ticket.slug}"


def commit_message(ticket: Ticket) -> str:
    """A commit message whose subject names the ticket and whose body cites it."""
    title = " ".join(ticket.title.split())[:72] or ticket.id
    cite = ticket.url or f"ticket {ticket.id}"
    return f"Fix: {title}\n\nFixes {cite}\n\nDrafted and validated by greenpatch.\n"


def _check_relpath(relpath: str) -> str:
    path = PurePosixPath(relpath)
    if path.is_absolute() or not path.parts or ".." in path.parts or path.parts[0] == ".git":
        raise AgentError(f"refusing to commit a path outside the repository: {relpath}")
    return path.as_posix()


def _base_commit(repo: git.Repo, base: str) -> git.Commit:
    try:
        return repo.commit(repo.git.rev_parse("--verify", "--quiet", f"{base}^{{commit}}"))
    except (git.GitCommandError, git.BadName, ValueError):
        raise AgentError(f"base commit not found: {base}") from None


def _base_blob(commit: git.Commit, relpath: str) -> git.Blob | None:
    try:
        obj = commit.tree / relpath
    except KeyError:
        return None
    if not isinstance(obj, git.Blob) or obj.mode not in _REGULAR_MODES:
        raise AgentError(f"cannot commit {relpath}: it is not a regular file in the base commit")
    return obj


def _as_bytes(content: Content) -> bytes:
    return content.encode("utf-8") if isinstance(content, str) else content


def _conflict(repo: git.Repo, branch: str) -> str | None:
    """Why `refs/heads/BRANCH` cannot be created now, or None: it exists, or a branch is named
    like one of its folders (`greenpatch` blocks `greenpatch/x`) or has it as a folder."""
    full = f"refs/heads/{branch}"
    for ref in repo.git.for_each_ref("--format=%(refname)", "refs/heads/").splitlines():
        name = ref.removeprefix("refs/heads/")
        if ref == full:
            return f"branch {branch} already exists"
        if full.startswith(ref + "/") or ref.startswith(full + "/"):
            return f"branch {name} exists, and git cannot have both {name} and {branch}"
    return None


def check_branch_name(repo: git.Repo | str | Path, branch: str) -> None:
    """Raise AgentError unless `branch` is a valid name that git would create as it is: not
    existing, not blocked by an existing branch, not a shorthand (`@{-1}`) git resolves."""
    repo = open_repo(repo)
    if not branch or branch.startswith("-") or branch == "HEAD":
        raise AgentError(f"invalid branch name: {branch!r}")
    try:
        resolved = repo.git.check_ref_format("--branch", branch)
    except git.GitCommandError:
        raise AgentError(f"invalid branch name: {branch!r}") from None
    if resolved != branch:
        raise AgentError(f"invalid branch name: {branch!r} (git reads it as {resolved!r})")
    why = _conflict(repo, branch)
    if why:
        raise AgentError(f"{why}; pass --branch NAME")


def _identity_env(repo: git.Repo) -> dict[str, str]:
    """The user's identity when git knows one; otherwise a neutral greenpatch identity."""
    try:
        repo.git.var("GIT_AUTHOR_IDENT")
        repo.git.var("GIT_COMMITTER_IDENT")
    except git.GitCommandError:
        return {k: v for k, v in _FALLBACK_IDENTITY.items() if k not in os.environ}
    return {}


def commit_on_branch(
    repo: git.Repo | str | Path,
    base: str,
    files: Mapping[str, Content],
    branch: str,
    message: str,
) -> str:
    """Commit `files` (relpath -> new content) on top of `base` as new branch `branch`.

    Returns the new commit's sha. The user's working tree, index, HEAD and current branch are not
    touched. Raises AgentError (exit 2) if the branch exists, the name is invalid, the base is
    unknown or a path is outside the repository.
    """
    repo = open_repo(repo)
    commit = _base_commit(repo, base)
    check_branch_name(repo, branch)
    new = _commit(repo, commit, files, message)
    _create_branch(repo, branch, new)
    return new


def commit_fix(
    repo: git.Repo | str | Path,
    base: str,
    files: Mapping[str, Content],
    branch: str,
    message: str,
) -> tuple[str, str]:
    """`commit_on_branch`, for a fix found after minutes of work, which is never lost: when
    `branch` cannot be created any more (the name, or a branch blocking it, appeared meanwhile),
    the commit goes on the first free one of `BRANCH-2` ... `BRANCH-9`, `greenpatch-<sha>`.
    Returns (sha, the branch it is on)."""
    repo = open_repo(repo)
    new = _commit(repo, _base_commit(repo, base), files, message)
    return new, place_commit(repo, new, branch)


def place_commit(repo: git.Repo | str | Path, new: str, branch: str) -> str:
    """Create a branch at commit `new`: `branch`, else the first free one of `BRANCH-2` ...
    `BRANCH-9`, `greenpatch-<sha>` (never over an existing branch). Returns its name."""
    repo = open_repo(repo)
    names = [branch, *(f"{branch}-{n}" for n in range(2, 10)), f"greenpatch-{new[:12]}"]
    problems = []
    for name in names:
        try:
            check_branch_name(repo, name)
            _create_branch(repo, name, new)
        except AgentError as exc:
            problems.append(str(exc))
            continue
        return name
    raise AgentError(f"the fix is commit {new}, but no branch could be made for it: {problems[0]}")


def _commit(repo: git.Repo, commit: git.Commit, files: Mapping[str, Content], message: str
            ) -> str:  # fmt: skip
    """A new commit of `files` on top of `commit`, built through a private index; its sha."""
    if not files:
        raise AgentError("nothing to commit: the fix changes no files")
    checked = {_check_relpath(p): c for p, c in files.items()}
    env = _identity_env(repo)
    with tempfile.TemporaryDirectory(prefix="greenpatch-index-") as tmp:
        env["GIT_INDEX_FILE"] = str(Path(tmp) / "index")
        try:
            repo.git.read_tree(commit.hexsha, env=env)
            for relpath, content in checked.items():
                blob = _base_blob(commit, relpath)
                mode = _REGULAR_MODES[blob.mode] if blob is not None else "100644"
                staged = Path(tmp) / "content"
                staged.write_bytes(_as_bytes(content))
                # --path applies the repo's eol attributes as `git add` would (filter drivers
                # are off: see sandboxes.safegit).
                sha = repo.git.hash_object("-w", f"--path={relpath}", str(staged), env=env)
                repo.git.update_index("--add", "--cacheinfo", f"{mode},{sha},{relpath}", env=env)
            tree = repo.git.write_tree(env=env)
            if tree == commit.tree.hexsha:
                raise AgentError("nothing to commit: the fix leaves every file as it was")
            return repo.git.commit_tree(tree, "-p", commit.hexsha, "-m", message, env=env)
        except git.GitCommandError as exc:
            raise AgentError(f"git failed while committing the fix: {_one_line(exc)}") from None


def _create_branch(repo: git.Repo, branch: str, sha: str) -> None:
    try:
        repo.git.update_ref("-m", f"greenpatch: {branch}", f"refs/heads/{branch}", sha, "")
    except git.GitCommandError as exc:
        # The empty old value makes git refuse if somebody created the branch meanwhile.
        why = _conflict(repo, branch)
        if why:
            raise AgentError(f"{why}; pass --branch NAME") from None
        raise AgentError(f"cannot create branch {branch}: {_one_line(exc)}") from None


def _one_line(exc: git.GitCommandError) -> str:
    # GitPython formats stderr as "\n  stderr: '...'"; keep git's own last line.
    text = re.sub(r"^\s*stderr:\s*'", "", str(exc.stderr or exc)).strip().rstrip("'")
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return lines[-1] if lines else "unknown error"


def _diff_lines(lines: list[str]) -> list[str]:
    out = []
    for line in lines:
        out.append(line)
        if not line.endswith("\n"):
            out[-1] = line + "\n\\ No newline at end of file\n"
    return out


def minimal_diff(repo: git.Repo | str | Path, base: str, files: Mapping[str, Content]) -> str:
    """Unified diff (git style, applies with `git apply`) from `base` to `files`; unchanged files
    are left out."""
    repo = open_repo(repo)
    commit = _base_commit(repo, base)
    parts: list[str] = []
    for relpath in sorted(files):
        path = _check_relpath(relpath)
        blob = _base_blob(commit, path)
        old_bytes = blob.data_stream.read() if blob is not None else b""
        new_bytes = _as_bytes(files[relpath])
        if blob is not None and old_bytes == new_bytes:
            continue
        old = old_bytes.decode("utf-8", errors="replace").splitlines(keepends=True)
        new = new_bytes.decode("utf-8", errors="replace").splitlines(keepends=True)
        header = [f"diff --git a/{path} b/{path}\n"]
        if blob is None:
            header.append("new file mode 100644\n")
        hunks = list(
            difflib.unified_diff(
                old, new, "/dev/null" if blob is None else f"a/{path}", f"b/{path}", lineterm="\n"
            )
        )
        if not hunks:
            continue
        fixed_headers = [h if h.endswith("\n") else h + "\n" for h in hunks[:2]]
        parts.append("".join(header + fixed_headers + _diff_lines(hunks[2:])))
    return "".join(parts)
