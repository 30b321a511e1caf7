"""A commit's files read from git's object store on the host, never from a sandbox's worktree.

A worker can rewrite its worktree (symlinks included) at any moment; the objects of the commit
it was made from are what the host trusts.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from greenpatch.runner.errors import RunnerError
from greenpatch.sandboxes import safegit

REGULAR = ("100644", "100755")


def regular_files(repo_root: Path, commit: str) -> dict[str, tuple[str, int]]:
    """{path: (blob id, size)} of the commit's tracked regular files (no symlinks, no
    submodules)."""
    done = subprocess.run(
        ["git", "ls-tree", "-r", "-z", "--long", "--full-tree", commit],
        cwd=repo_root, env=safegit.environment(repo_root), capture_output=True, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        raise RunnerError(f"cannot list the files of {commit[:12]} in {repo_root}")
    files = {}
    for entry in done.stdout.split(b"\0"):
        meta, _, path = entry.partition(b"\t")
        parts = meta.split()
        if len(parts) == 4 and parts[0].decode() in REGULAR:
            files[path.decode("utf-8", "surrogateescape")] = (parts[2].decode(), int(parts[3]))
    return files


def read_texts(repo_root: Path, blobs: dict[str, str]) -> dict[str, str]:
    """{path: text} of the given blobs ({path: blob id}), decoded as UTF-8 with replacement."""
    if not blobs:
        return {}
    request = "".join(f"{blob}\n" for blob in blobs.values()).encode()
    done = subprocess.run(
        ["git", "cat-file", "--batch"], cwd=repo_root, input=request, capture_output=True,
        env=safegit.environment(repo_root), check=False,
    )  # fmt: skip
    if done.returncode != 0:
        raise RunnerError(f"cannot read the files of {repo_root} from git")
    out, texts, at = done.stdout, {}, 0
    for path in blobs:
        header_end = out.index(b"\n", at)
        size = int(out[at:header_end].split()[2])
        start = header_end + 1
        texts[path] = out[start : start + size].decode("utf-8", "replace")
        at = start + size + 1
    return texts
