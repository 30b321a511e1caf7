import pytest

from slugkit import camel_to_snake, snake_to_camel, title_case


@pytest.mark.parametrize(
    "name, expected",
    [
        ("parseHTTPResponse", "parse_http_response"),
        ("userId", "user_id"),
        ("HTMLParser", "html_parser"),
        ("already_snake", "already_snake"),
        ("kebab-case-name", "kebab_case_name"),
    ],
)
def test_camel_to_snake(name, expected):
    assert camel_to_snake(name) == expected


def test_snake_to_camel():
    assert snake_to_camel("parse_http_response") == "parseHttpResponse"


def test_snake_to_camel_upper_first():
    assert snake_to_camel("user_id", upper_first=True) == "UserId"


def test_snake_to_camel_ignores_extra_underscores():
    assert snake_to_camel("__private__name") == "privateName"
    assert snake_to_camel("___") == ""


def test_title_case_small_words():
    assert title_case("the lord of the rings") == "The Lord of the Rings"


def test_title_case_keeps_acronyms():
    assert title_case("a guide to HTTP and NASA") == "A Guide to HTTP and NASA"


def test_title_case_last_word_capitalised():
    assert title_case("what are you looking at") == "What Are You Looking At"
