import pytest

from confparse import ConfigError, parse, parse_file

SAMPLE = """\
# deployment settings
[server]
host = example.org
port = 8080   ; the public port
debug: off

[paths]
root = /srv/app
logs = "/var/log/app # not a comment"
"""


def test_sections_in_file_order():
    assert parse(SAMPLE).sections() == ["server", "paths"]


def test_equals_and_colon_separators():
    config = parse(SAMPLE)
    assert config.get("server", "host") == "example.org"
    assert config.get("server", "debug") == "off"


def test_trailing_comment_is_removed():
    assert parse(SAMPLE).get("server", "port") == "8080"


def test_hash_inside_quotes_is_kept():
    assert parse(SAMPLE).get("paths", "logs") == "/var/log/app # not a comment"


def test_keys_are_case_insensitive():
    config = parse("[db]\nUser = admin\n")
    assert config.get("db", "USER") == "admin"


def test_continuation_lines_extend_the_value():
    config = parse("[app]\ndescription = first line\n    second line\n\tthird line\nname = x\n")
    assert config.get("app", "description") == "first line\nsecond line\nthird line"
    assert config.get("app", "name") == "x"


def test_continuation_lines_make_list_items():
    config = parse("[build]\nsources =\n    main.c\n    util.c\n")
    assert config.get_list("build", "sources") == ["main.c", "util.c"]


def test_indented_line_before_any_key_is_an_error():
    with pytest.raises(ConfigError, match=":2:"):
        parse("[a]\n   = stray\n")


def test_garbage_line_reports_source_and_line():
    with pytest.raises(ConfigError, match=r"settings\.ini:3: expected 'key = value'"):
        parse("[a]\nx = 1\nthis is not a pair\n", source="settings.ini")


def test_duplicate_key_is_an_error():
    with pytest.raises(ConfigError, match="duplicate key 'x'"):
        parse("[a]\nx = 1\nX = 2\n")


def test_duplicate_section_is_an_error():
    with pytest.raises(ConfigError, match=r"section \[a\] appears twice"):
        parse("[a]\nx = 1\n[a]\ny = 2\n")


def test_parse_file(tmp_path):
    path = tmp_path / "app.ini"
    path.write_text("[app]\nname = demo\n", encoding="utf-8")
    assert parse_file(path).get("app", "name") == "demo"


def test_parse_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        parse_file(tmp_path / "absent.ini")
