import pytest

from confparse import ConfigError, parse

TEXT = """\
[DEFAULT]
env = production
timeout = 30

[server]
host = api.example.org
url = https://${host}:${port}/v1
port = 0x1F90
workers = 1_000
verbose = yes
tags = web, api , , public

[client]
server = ${server:url}
timeout = 5
retry = maybe

[loop]
a = ${b}
b = ${a}
"""


@pytest.fixture
def config():
    return parse(TEXT)


def test_defaults_fill_missing_keys(config):
    assert config.get("server", "env") == "production"


def test_section_value_overrides_default(config):
    assert config.get_int("client", "timeout") == 5
    assert config.get_int("server", "timeout") == 30


def test_keys_include_defaults(config):
    assert config.keys("client") == ["server", "timeout", "retry", "env"]


def test_interpolation_within_section(config):
    assert config.get("server", "url") == "https://api.example.org:0x1F90/v1"


def test_interpolation_across_sections(config):
    assert config.get("client", "server") == "https://api.example.org:0x1F90/v1"


def test_circular_reference_is_reported(config):
    with pytest.raises(ConfigError, match="circular reference: loop:a -> loop:b -> loop:a"):
        config.get("loop", "a")


def test_get_int_accepts_hex_and_underscores(config):
    assert config.get_int("server", "port") == 8080
    assert config.get_int("server", "workers") == 1000


def test_get_int_default_for_missing_key(config):
    assert config.get_int("client", "pool", default=4) == 4


def test_get_int_rejects_text(config):
    with pytest.raises(ConfigError, match="not an integer"):
        config.get_int("server", "host")


def test_get_bool(config):
    assert config.get_bool("server", "verbose") is True
    assert config.get_bool("client", "debug", default=False) is False


def test_get_bool_rejects_unknown_word(config):
    with pytest.raises(ConfigError, match="not a boolean"):
        config.get_bool("client", "retry")


def test_get_list_drops_blanks(config):
    assert config.get_list("server", "tags") == ["web", "api", "public"]


def test_missing_section(config):
    with pytest.raises(ConfigError, match=r"no section \[cache\]"):
        config.get("cache", "size")


def test_get_with_default(config):
    assert config.get("client", "proxy", default="none") == "none"
