"""agent.pipeline.sites on real snippets: sites, their spans, applying fills, parsing, dedupe."""

from __future__ import annotations

import inspect
import textwrap
from dataclasses import dataclass

from greenpatch.agent.pipeline.mutations import edit_fills, substitution_fills
from greenpatch.agent.pipeline.sites import (
    apply,
    canvas,
    dedupe,
    dedupe_fills,
    parses,
    program_key,
    rank_sites,
    sites_for,
    sites_for_line,
    span_lengths,
)

SRC = """\
import math


def scale(values, factor=2):
    total = 0
    for v in values:
        if v is not None and v not in (0, 1.5):
            total += v * factor
    return total >= math.pi


def label(x):
    name = "item"; size = len(x)
    return format_label(name,
                        size)
"""


def line_of(text: str) -> int:
    return next(i for i, ln in enumerate(SRC.splitlines(), 1) if text in ln)


def by_kind(sites, kind):
    return [s.original_text for s in sites if s.kind == kind]


def test_operator_and_token_sites_of_a_condition() -> None:
    sites = sites_for_line("m.py", SRC, line_of("if v is not None"))
    assert by_kind(sites, "operator") == ["is not", "and", "not in"]
    assert by_kind(sites, "token") == ["v", "None", "v", "0", "1.5"]
    assert "v is not None" in by_kind(sites, "node")
    assert "(0, 1.5)" in by_kind(sites, "node")
    assert by_kind(sites, "line") == ["if v is not None and v not in (0, 1.5):"]
    for site in sites:
        assert SRC[site.start_char : site.end_char] == site.original_text
        assert site.path == "m.py" and site.line == line_of("if v is not None")


def test_arithmetic_augmented_attribute_and_string_tokens() -> None:
    aug = sites_for_line("m.py", SRC, line_of("total += v"))
    assert by_kind(aug, "operator") == ["+=", "*"]
    ret = sites_for_line("m.py", SRC, line_of("return total >="))
    assert by_kind(ret, "operator") == [">="]
    assert "math.pi" in by_kind(ret, "token") and "pi" in by_kind(ret, "token")
    strings = sites_for_line("m.py", SRC, line_of('name = "item"'))
    assert '"item"' in by_kind(strings, "token")


def test_applying_fills() -> None:
    sites = sites_for_line("m.py", SRC, line_of("return total >="))
    op = next(s for s in sites if s.kind == "operator")
    fixed = apply(SRC, op, "<")
    assert "    return total < math.pi\n" in fixed and parses(fixed)
    prefix, suffix = canvas(SRC, op)
    assert prefix.endswith("return total ") and suffix.startswith(" math.pi\n")
    line = next(s for s in sites if s.kind == "line")
    assert "\n    return round(total)\n" in apply(SRC, line, "return round(total)")


def test_inserted_lines_keep_indentation_and_open_a_body() -> None:
    header = sites_for_line("m.py", SRC, line_of("if v is not None"))
    after = next(s for s in header if s.kind == "insert_after")
    before = next(s for s in header if s.kind == "insert_before")
    assert (after.lead, after.trail, before.lead, before.trail) == (
        "            ",
        "\n",
        "        ",
        "\n",
    )
    assert after.original_text == "" and after.start_char == after.end_char
    out = apply(SRC, after, "continue")
    assert "(0, 1.5):\n            continue\n            total += v" in out and parses(out)
    out = apply(SRC, before, "v = abs(v)")
    assert "in values:\n        v = abs(v)\n        if v is not None" in out and parses(out)
    last = sites_for_line("m.py", SRC, line_of("size)"))  # continuation line: no statement starts
    assert not {s.kind for s in last} & {"insert_after", "insert_before", "delete"}


def test_deleting_statements() -> None:
    sites = sites_for_line("m.py", SRC, line_of("total += v"))
    delete = next(s for s in sites if s.kind == "delete")
    assert delete.span_lengths == ()
    assert delete.original_text == "            total += v * factor\n"
    assert not parses(apply(SRC, delete, ""))  # the if body would be empty
    multi = sites_for_line("m.py", SRC, line_of("return format_label"))
    delete = next(s for s in multi if s.kind == "delete")
    assert delete.original_text == "    return format_label(name,\n                        size)\n"
    assert parses(apply(SRC, delete, ""))
    shared = sites_for_line("m.py", SRC, line_of('name = "item"'))
    assert "delete" not in {s.kind for s in shared}  # `a = 1; b = 2` shares the line


def test_node_length_cap_and_blank_lines() -> None:
    src = "x = compute(alpha_value, beta_value) + other_function(gamma_value)\n"
    capped = sites_for_line("m.py", src, 1, max_node_chars=30)
    assert all(len(s.original_text) <= 30 for s in capped if s.kind == "node")
    assert "compute(alpha_value, beta_value)" not in by_kind(capped, "node")
    wide = sites_for_line("m.py", src, 1, max_node_chars=200)
    assert "compute(alpha_value, beta_value)" in by_kind(wide, "node")
    assert sites_for_line("m.py", SRC, 2) == []


def test_non_ascii_source_offsets_are_characters() -> None:
    src = 'def f(s):\n    t = "héllo wörld"\n    return s == t\n'
    sites = sites_for_line("m.py", src, 3)
    op = next(s for s in sites if s.kind == "operator")
    assert op.original_text == "=="
    assert apply(src, op, "!=").endswith("return s != t\n")


def test_span_lengths_follow_the_tokenizer() -> None:
    assert span_lengths("a", lambda t: 1) == (1, 2, 3)
    assert span_lengths("abc", lambda t: 5) == (4, 5, 6, 7)
    assert span_lengths("", lambda t: 0) == (1, 2)
    sites = sites_for_line("m.py", SRC, line_of("total += v"), count_tokens=lambda t: len(t))
    op = next(s for s in sites if s.kind == "operator")
    assert op.span_lengths == (1, 2, 3, 4)  # "+=" has 2 characters


@dataclass
class Sus:
    path: str
    line: int
    score: float


def test_sites_are_ranked_by_suspicion_then_kind() -> None:
    sus = [Sus("m.py", line_of("total += v"), 0.5), Sus("m.py", line_of("return total"), 1.0)]
    sites = sites_for({"m.py": SRC, "other.py": "x = 1\n"}, sus + [Sus("gone.py", 1, 9.0)])
    assert sites[0].kind == "operator" and sites[0].original_text == ">="
    assert [s.line for s in sites[:5]] == [line_of("return total")] * 5
    scores = [s.score for s in sites]
    assert scores == sorted(scores, reverse=True)
    keys = [(s.path, s.start_char, s.end_char, s.lead, s.trail) for s in sites]
    assert len(keys) == len(set(keys))
    only_ops = sites_for({"m.py": SRC}, sus, kinds=["operator"], limit=2)
    assert [s.original_text for s in only_ops] == [">=", "+="]
    # A span proposed twice is kept once, with the higher score.
    n = line_of("total += v")
    twice = rank_sites(sites_for_line("m.py", SRC, n, 0.2) + sites_for_line("m.py", SRC, n, 0.9))
    assert [s.score for s in twice if s.kind == "operator"] == [0.9, 0.9]


def test_parses_and_dedupe() -> None:
    assert parses(SRC)
    assert not parses("def f(:\n")
    assert not parses("x = 1\0\n")
    original = "def f(a):\n    return a + 1\n"
    candidates = [
        "def f(a):\n    return a - 1\n",
        "def f(a):\n    return a + 1  # same program\n",  # no-op
        "def f(a):\n    return (a - 1)\n",  # same AST as the first
        "def f(a):\n    return a -\n",  # does not parse
        "def f(a):\n    return a * 1\n",
    ]
    assert dedupe(candidates, original=original) == [candidates[0], candidates[4]]
    pairs = [(0.9, candidates[4]), (0.5, candidates[0]), (0.1, candidates[4])]
    assert dedupe(pairs, source_of=lambda p: p[1]) == pairs[:2]


JUNK_FILLS = ["", "(", ")", "x y", "not", "1 +", "'", '"""', "foo(bar", "lambda: 0", "  y", ":"]
JUNK_FILLS += ["pass", "return", "else:", "x = 1", "yield 1", "]", "*a", "x\n", "def g():"]


def test_program_key_decides_like_the_whole_file() -> None:
    """The region shortcut must never accept what the whole file rejects, nor the reverse."""
    source = inspect.getsource(textwrap) + "\n\n" + SRC
    total = source.count("\n")
    checked = 0
    for line in range(1, total, 61):
        for site in sites_for_line("m.py", source, line):
            model_free = [*substitution_fills(source, site), *edit_fills(source, site)]
            for fill in JUNK_FILLS + model_free[:3]:
                fast = program_key(source, site, fill) is not None
                assert fast == parses(apply(source, site, fill)), (line, site.kind, fill)
                checked += 1
    assert checked > 300


def test_program_key_sees_decorators_and_dedents() -> None:
    src = "class A:\n    @staticmethod\n    def f(x):\n        y = x\n        return y\n"
    header = next(s for s in sites_for_line("m.py", src, 3) if s.kind == "line")
    assert program_key(src, header, "def f(x, z=1):") is not None
    assert program_key(src, header, "x = 1") is None  # a decorator needs a definition
    delete = next(s for s in sites_for_line("m.py", src, 4) if s.kind == "delete")
    assert program_key(src, delete, "else:") is None  # column 0 inside the method
    assert program_key(src, delete, "") is not None


def test_program_key_of_a_closure_with_nonlocal() -> None:
    """A closure's `nonlocal` does not compile without its enclosing function: its candidates
    are checked on the whole file, not all rejected (cachetools' `cached` wrappers)."""
    src = ("def cached(func):\n    misses = 0\n\n    def wrapper(*args):\n"
           "        nonlocal misses\n        misses += 0\n        return func(*args)\n\n"
           "    return wrapper\n")
    token = next(s for s in sites_for_line("m.py", src, 6) if s.original_text == "0")
    assert program_key(src, token, "1") is not None
    assert program_key(src, token, "1 +") is None
    assert dedupe_fills({"m.py": src}, [(token, "1"), (token, "0")], lambda i: i[0],
                        lambda i: i[1]) == [(token, "1")]


def test_dedupe_fills_keeps_distinct_programs_in_order() -> None:
    n = line_of("return total >=")
    op = next(s for s in sites_for_line("m.py", SRC, n) if s.kind == "operator")
    node = next(s for s in sites_for_line("m.py", SRC, n) if s.original_text == "total >= math.pi")
    items = [
        (op, "<"),
        (op, ">="),  # no-op
        (node, "total < math.pi"),  # same program as the first
        (op, "=="),
        (node, "(total < math.pi"),  # does not parse
        (node, "total  ==  math.pi"),  # same program as (op, "==")
        (op, ">"),
    ]
    kept = dedupe_fills({"m.py": SRC}, items, lambda i: i[0], lambda i: i[1])
    assert kept == [(op, "<"), (op, "=="), (op, ">")]


def test_the_model_never_sees_a_prefix_ending_in_a_space() -> None:
    from greenpatch.agent.pipeline.draft import model_canvas  # imports the model's sampler (torch)

    sites = sites_for_line("m.py", SRC, line_of("return total >="))
    op = next(s for s in sites if s.kind == "operator")
    prefix, suffix, moved = model_canvas(SRC, op)
    assert prefix.endswith("return total") and moved == " " and suffix.startswith(" math.pi")
    assert prefix + moved == canvas(SRC, op)[0]
    line = next(s for s in sites if s.kind == "line")  # after indentation: unchanged
    assert model_canvas(SRC, line) == (*canvas(SRC, line), "")
