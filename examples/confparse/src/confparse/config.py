"""Parsed configuration: typed lookups, defaults and `${section:key}` interpolation."""

from __future__ import annotations

import re

_REFERENCE = re.compile(r"\$\{([A-Za-z0-9_.\-]+)(?::([A-Za-z0-9_.\-]+))?\}")
_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})
_MISSING = object()


class ConfigError(ValueError):
    """Malformed configuration text or a lookup that cannot be answered."""


class Config:
    def __init__(self, sections: dict[str, dict[str, str]]) -> None:
        self._defaults = sections.get("DEFAULT", {})
        self._sections = {name: body for name, body in sections.items() if name != "DEFAULT"}

    def sections(self) -> list[str]:
        return list(self._sections)

    def keys(self, section: str) -> list[str]:
        body = self._section(section)
        return list(dict.fromkeys([*body, *self._defaults]))

    def _section(self, section: str) -> dict[str, str]:
        try:
            return self._sections[section]
        except KeyError:
            raise ConfigError(f"no section [{section}]") from None

    def raw(self, section: str, key: str) -> str:
        body = self._section(section)
        key = key.lower()
        if key in body:
            return body[key]
        if key in self._defaults:
            return self._defaults[key]
        raise ConfigError(f"no key {key!r} in [{section}]")

    def get(self, section: str, key: str, default: object = _MISSING) -> str:
        """The value with `${key}` / `${section:key}` references expanded."""
        try:
            return self._expand(section, key, ())
        except ConfigError:
            if default is _MISSING:
                raise
            return default  # type: ignore[return-value]

    def _expand(self, section: str, key: str, seen: tuple[tuple[str, str], ...]) -> str:
        here = (section, key.lower())
        if here in seen:
            chain = " -> ".join(f"{s}:{k}" for s, k in (*seen, here))
            raise ConfigError(f"circular reference: {chain}")
        value = self.raw(section, key)

        def substitute(match: re.Match[str]) -> str:
            if match.group(2) is None:
                return self._expand(section, match.group(1), (*seen, here))
            return self._expand(match.group(1), match.group(2), (*seen, here))

        return _REFERENCE.sub(substitute, value)

    def get_int(self, section: str, key: str, default: int | None = None) -> int:
        text = self.get(section, key, None)
        if text is None:
            if default is None:
                raise ConfigError(f"no key {key!r} in [{section}]")
            return default
        try:
            return int(text.replace("_", ""), 0)
        except ValueError:
            raise ConfigError(f"[{section}] {key}: {text!r} is not an integer") from None

    def get_bool(self, section: str, key: str, default: bool | None = None) -> bool:
        text = self.get(section, key, None)
        if text is None:
            if default is None:
                raise ConfigError(f"no key {key!r} in [{section}]")
            return default
        if text.lower() in _TRUE:
            return True
        if text.lower() in _FALSE:
            return False
        raise ConfigError(f"[{section}] {key}: {text!r} is not a boolean")

    def get_list(self, section: str, key: str, sep: str = ",") -> list[str]:
        """Items separated by `sep` or by newlines (continuation lines), blanks dropped."""
        text = self.get(section, key)
        items = text.replace("\n", sep).split(sep)
        return [item.strip() for item in items if item.strip()]
