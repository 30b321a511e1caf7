"""Text to sections: `[section]` headers, `key = value` pairs, comments, continuations."""

from __future__ import annotations

import re
from pathlib import Path

from confparse.config import Config, ConfigError

_HEADER = re.compile(r"^\[\s*([A-Za-z0-9_.\- ]+?)\s*\]$")
_PAIR = re.compile(r"^([A-Za-z_][A-Za-z0-9_.\-]*)\s*[=:]\s*(.*)$")
DEFAULT_SECTION = "DEFAULT"


def _strip_comment(line: str) -> str:
    """Drop a trailing `#` or `;` comment unless it sits inside quotes."""
    quote = None
    for i, ch in enumerate(line):
        if ch in "\"'":
            quote = None if quote == ch else (quote or ch)
        elif ch in "#;" and quote is None and (i == 0 or line[i - 1].isspace()):
            return line[:i].rstrip()
    return line.rstrip()


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
        return value[1:-1]
    return value


def parse(text: str, source: str = "<string>") -> Config:
    """Parse INI text. Indented lines continue the previous value on a new line."""
    sections: dict[str, dict[str, str]] = {DEFAULT_SECTION: {}}
    current = sections[DEFAULT_SECTION]
    section = DEFAULT_SECTION
    last_key: str | None = None
    for lineno, raw in enumerate(text.splitlines(), start=1):
        line = _strip_comment(raw)
        if not line.strip():
            continue
        if raw[:1] in " \t" and last_key is not None:
            current[last_key] += "\n" + _unquote(line.strip())
            continue
        line = line.strip()
        header = _HEADER.match(line)
        if header:
            section = header.group(1)
            if section in sections and section != DEFAULT_SECTION:
                raise ConfigError(f"{source}:{lineno}: section [{section}] appears twice")
            current = sections.setdefault(section, {})
            last_key = None
            continue
        pair = _PAIR.match(line)
        if not pair:
            raise ConfigError(f"{source}:{lineno}: expected 'key = value', got {line!r}")
        key, value = pair.group(1).lower(), pair.group(2).strip()
        if key in current:
            raise ConfigError(f"{source}:{lineno}: duplicate key {key!r} in [{section}]")
        current[key] = _unquote(value)
    return Config(sections)


def parse_file(path: str | Path) -> Config:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror or exc}") from None
    return parse(text, source=str(path))
