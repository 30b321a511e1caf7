import pytest

from slugkit import slugify, truncate, unique_slug


@pytest.mark.parametrize(
    "text, expected",
    [
        ("Hello, World!", "hello-world"),
        ("  many   spaces\there ", "many-spaces-here"),
        ("Crème brûlée", "creme-brulee"),
        ("Straße & Co.", "strasse-and-co"),
        ("Python 3.12 released", "python-3-12-released"),
        ("---", ""),
    ],
)
def test_slugify(text, expected):
    assert slugify(text) == expected


def test_slugify_custom_separator():
    assert slugify("Release Notes 2024", sep="_") == "release_notes_2024"


def test_slugify_shortens_at_word_boundary():
    assert slugify("The quick brown fox jumps", max_length=16) == "the-quick-brown"


def test_slugify_keeps_short_text_whole():
    assert slugify("short title", max_length=40) == "short-title"


def test_slugify_cuts_a_single_long_word():
    assert slugify("Supercalifragilistic", max_length=5) == "super"


def test_unique_slug_free_name():
    assert unique_slug("About us", ["contact"]) == "about-us"


def test_unique_slug_numbers_duplicates():
    assert unique_slug("About us", ["about-us", "about-us-2"]) == "about-us-3"


def test_unique_slug_of_empty_title():
    assert unique_slug("!!!", []) == "item"


def test_truncate_leaves_short_text():
    assert truncate("short", 10) == "short"


def test_truncate_exact_width_is_untouched():
    assert truncate("abcdefghij", 10) == "abcdefghij"


def test_truncate_adds_placeholder_within_width():
    result = truncate("The quick brown fox", 12)
    assert result == "The quick..."
    assert len(result) <= 12


def test_truncate_rejects_tiny_width():
    with pytest.raises(ValueError):
        truncate("anything", 2)
