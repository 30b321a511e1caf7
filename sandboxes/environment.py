"""The environment a sandboxed worker gets: an allowlist of the host's, never anything secret."""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Mapping

# Host variables a worker may inherit: locale, terminal, and the Python switches that change no
# paths. PYTHONPATH/PYTHONHOME/PYTHONSTARTUP are left out: they point at host files.
ALLOWED = (
    "PATH",
    "LANG",
    "LANGUAGE",
    "LC_*",
    "TERM",
    "TZ",
    "PYTHONHASHSEED",
    "PYTHONDONTWRITEBYTECODE",
    "PYTHONUNBUFFERED",
    "PYTHONIOENCODING",
    "PYTHONUTF8",
    "PYTHONFAULTHANDLER",
    "PYTHONWARNINGS",
)
# Names never passed in, whoever asks (the caller's own `spec.env` included).
FORBIDDEN = (
    "*TOKEN*",
    "*_KEY",
    "*_KEY_*",
    "*KEY_ID*",
    "*SECRET*",
    "*PASSWORD*",
    "*PASSWD*",
    "*CREDENTIAL*",
    "*_AUTH",
    "*AUTH_*",
    "SSH_AUTH_SOCK",
    "DOCKER_*",
    "NETRC",
)
DEFAULT_PATH = "/usr/local/bin:/usr/bin:/bin"


def _matches(name: str, patterns: tuple[str, ...]) -> bool:
    upper = name.upper()
    return any(fnmatch.fnmatchcase(upper, p) for p in patterns)


def is_secret(name: str) -> bool:
    """Whether a variable name looks like it holds a credential."""
    return _matches(name, FORBIDDEN)


def worker_env(
    extra: Mapping[str, str], home: str, host: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The allowlisted part of `host` (default: os.environ), then `extra`, minus secret names.

    `home` becomes HOME (and the XDG dirs under it) so nothing resolves to the user's real home.
    """
    host = os.environ if host is None else host
    env = {k: v for k, v in host.items() if _matches(k, ALLOWED) and not is_secret(k)}
    env.setdefault("PATH", DEFAULT_PATH)
    env.update(
        HOME=home,
        XDG_CONFIG_HOME=f"{home}/.config",
        XDG_CACHE_HOME=f"{home}/.cache",
        XDG_DATA_HOME=f"{home}/.local/share",
    )
    env.update({k: v for k, v in extra.items() if not is_secret(k)})
    return env
