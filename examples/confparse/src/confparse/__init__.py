"""confparse: a small INI-style configuration parser with typed getters and interpolation."""

from confparse.config import Config, ConfigError
from confparse.parser import parse, parse_file

__all__ = ["Config", "ConfigError", "parse", "parse_file"]
