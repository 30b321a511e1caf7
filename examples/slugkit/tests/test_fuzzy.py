import pytest

from slugkit import closest, ngrams, similarity


def test_bigrams_cover_the_whole_text():
    assert ngrams("abcd") == ["ab", "bc", "cd"]


def test_trigrams():
    assert ngrams("hello", 3) == ["hel", "ell", "llo"]


def test_ngrams_of_text_shorter_than_n():
    assert ngrams("a", 2) == ["a"]
    assert ngrams("", 2) == []


def test_ngrams_rejects_zero():
    with pytest.raises(ValueError):
        ngrams("abc", 0)


def test_identical_strings_are_fully_similar():
    assert similarity("Invoice", "invoice!") == 1.0


def test_unrelated_strings_are_dissimilar():
    assert similarity("apple", "zebra") == 0.0


def test_similarity_is_symmetric():
    assert similarity("colour", "color") == similarity("color", "colour")


def test_closest_finds_typo():
    assert closest("adress", ["dress code", "address", "access"]) == "address"


def test_closest_none_below_cutoff():
    assert closest("xyz", ["apple", "banana"]) is None
