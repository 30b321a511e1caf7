"""Git on an untrusted repository: nothing the repository's config names is ever run.

A repository's `.git/config` (and what it includes), its hooks and its `.gitattributes` are
code: `core.hooksPath`, `core.fsmonitor`, `filter.<name>.clean/smudge/process`,
`core.sshCommand`, `credential.helper`, `gpg.program`, `core.alternateRefsCommand`... each
names a command that plain `git worktree add`, `git hash-object --path` or `git push` would run
with our environment. `environment()` gives the environment for every git process we start on
such a repository: its config overrides are passed as `GIT_CONFIG_COUNT`/`GIT_CONFIG_KEY_n`
(command-line scope, which beats the repository's own config, is inherited by the git processes
git itself starts, and keeps keys with `=` or odd characters unambiguous, unlike `-c`), and the
user's secrets are left out. Only a push gets the user's own (global) credential helpers, ssh
command and tokens back; never the repository's.

Kept from the user: the global config (`~/.gitconfig`), except where it would run something on
this repository's behalf (every filter driver, including git-lfs, is off: a worktree holds what
is committed). Dropped: the system config (`GIT_CONFIG_NOSYSTEM`), replace refs.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Mapping
from pathlib import Path

# Environment variables that hold credentials: never handed to git on an untrusted repository
# (a filter or hook that escaped would read them), except to the push that needs them.
SECRET_NAMES = frozenset({
    "GITHUB_TOKEN", "GH_TOKEN", "GH_ENTERPRISE_TOKEN", "GITHUB_ENTERPRISE_TOKEN",
    "GREENPATCH_API_KEY", "OPENAI_API_KEY", "ANTHROPIC_API_KEY", "INCEPTION_API_KEY",
    "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "ACTIONS_RUNTIME_TOKEN", "ACTIONS_ID_TOKEN_REQUEST_TOKEN",
    "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "SSH_AUTH_SOCK",
})  # fmt: skip
# ...and any name with one of these words in it (NPM_TOKEN, DB_PASSWORD; not TOKENIZERS_...).
_SECRET_PATTERN = re.compile(
    r"(?:^|_)(?:TOKEN|SECRET|PASSWORD|PASSWD|API_?KEY|ACCESS_KEY|CREDENTIALS?)(?:_|$)", re.I
)
# What a push needs of them: the user's git credentials (a `gh auth git-credential` helper reads
# GH_TOKEN/GITHUB_TOKEN) and ssh agent.
PUSH_SECRETS = ("GITHUB_TOKEN", "GH_TOKEN", "GH_ENTERPRISE_TOKEN", "GITHUB_ENTERPRISE_TOKEN",
                "SSH_AUTH_SOCK")  # fmt: skip

# Overrides for every git process on an untrusted repository. An empty credential.helper clears
# the list collected so far (the repository's helpers included).
_ALWAYS = (
    ("core.hooksPath", "/dev/null"),
    ("core.fsmonitor", "false"),
    ("core.pager", "cat"),
    ("core.askPass", ""),
    ("core.alternateRefsCommand", ""),
    ("credential.helper", ""),
    ("protocol.ext.allow", "never"),
    ("protocol.git.allow", "never"),  # git:// would run core.gitProxy
    ("submodule.recurse", "false"),
    ("commit.gpgSign", "false"),
    ("tag.gpgSign", "false"),
    ("log.showSignature", "false"),
    ("gc.auto", "0"),
    ("maintenance.auto", "false"),
)
_USER_KEYS = ("core.sshCommand", "gpg.program", "gpg.ssh.program", "gpg.x509.program",
              "gpg.ssh.defaultKeyCommand")  # fmt: skip
_DEFAULTS = {"core.sshCommand": "ssh", "gpg.program": "gpg", "gpg.ssh.program": "ssh-keygen",
             "gpg.x509.program": "gpgsm", "gpg.ssh.defaultKeyCommand": ""}  # fmt: skip
_FILTER_KEYS = (("clean", ""), ("smudge", ""), ("process", ""), ("required", "false"))


def is_secret(name: str) -> bool:
    """Whether an environment variable of this name may hold a credential."""
    return name in SECRET_NAMES or bool(_SECRET_PATTERN.search(name))


def scrub(env: Mapping[str, str]) -> dict[str, str]:
    """`env` without the variables that may hold credentials."""
    return {k: v for k, v in env.items() if not is_secret(k)}


def _base_env() -> dict[str, str]:
    env = scrub(os.environ)
    env.update(GIT_CONFIG_NOSYSTEM="1", GIT_TERMINAL_PROMPT="0", GIT_PAGER="cat",
               GIT_NO_REPLACE_OBJECTS="1", GIT_ASKPASS="")  # fmt: skip
    return env


_LISTED = r"^(filter\.|credential\.|gpg\.|core\.sshcommand$|core\.askpass$)"


def _config(repo: Path | str) -> list[tuple[str, str, str]]:
    """(scope, key, value) of the config entries that name commands, as git sees them in
    `repo` (its own config and includes, the user's global config)."""
    try:
        done = subprocess.run(
            ["git", "config", "-z", "--show-scope", "--get-regexp", _LISTED], cwd=repo,
            env=_base_env(), capture_output=True, check=False, timeout=30,
        )  # fmt: skip
    except (OSError, subprocess.TimeoutExpired):
        return []
    items = done.stdout.decode("utf-8", "surrogateescape").split("\0")
    entries = []
    for scope, entry in zip(items[::2], items[1::2], strict=False):
        key, _, value = entry.partition("\n")
        entries.append((scope, key, value))
    return entries


def overrides(repo: Path | str, *, push: bool = False) -> list[tuple[str, str]]:
    """The config, in command-line scope, for git on `repo`: every command the repository's
    config could name is replaced by nothing or by the user's own global setting."""
    entries = _config(repo)
    pairs = list(_ALWAYS)
    filters: list[str] = []
    for _, key, _ in entries:
        # filter.<name>.<variable>: the name itself may hold dots. Every driver goes, the
        # user's too: `.gitattributes` (the repository's) decides which files reach it.
        name = key[len("filter.") :].rpartition(".")[0] if key.startswith("filter.") else ""
        if name and name not in filters:
            filters.append(name)
            pairs += [(f"filter.{name}.{var}", value) for var, value in _FILTER_KEYS]
    user = {key: value for scope, key, value in entries if scope == "global"}
    for key in _USER_KEYS:
        pairs.append((key, user.get(key.lower(), _DEFAULTS[key])))
    if push:
        # Back after the reset above: the user's own helpers (URL-scoped ones keep their scope)
        # and askpass program.
        pairs += [
            (key, value) for scope, key, value in entries
            if scope == "global" and (key == "core.askpass" or
                                      (key.startswith("credential.") and key.endswith(".helper")))
        ]  # fmt: skip
    return pairs


def environment(repo: Path | str, *, push: bool = False) -> dict[str, str]:
    """The whole environment for a git process on `repo` (see the module's docstring)."""
    env = _base_env()
    if push:
        env.update({k: os.environ[k] for k in PUSH_SECRETS if k in os.environ})
        del env["GIT_ASKPASS"]  # an empty one would turn the user's askpass off
        if "GIT_ASKPASS" in os.environ:
            env["GIT_ASKPASS"] = os.environ["GIT_ASKPASS"]
    pairs = overrides(repo, push=push)
    try:
        start = int(env.get("GIT_CONFIG_COUNT", "0"))  # the user's own come first
    except ValueError:
        start = 0
    for i, (key, value) in enumerate(pairs, start):
        env[f"GIT_CONFIG_KEY_{i}"] = key
        env[f"GIT_CONFIG_VALUE_{i}"] = value
    env["GIT_CONFIG_COUNT"] = str(start + len(pairs))
    return env


def run(repo: Path | str, *args: str) -> subprocess.CompletedProcess:
    """`git ARGS` in `repo` with the safe environment; text output, never raises on failure."""
    return subprocess.run(
        ["git", *args], cwd=repo, env=environment(repo), capture_output=True, text=True,
        check=False,
    )  # fmt: skip
