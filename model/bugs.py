"""Bug noise: single-site corruptions of Python source shaped like real bugs, for training the
network to say which tokens are wrong and where a statement is missing (replaced-token
detection, as ELECTRA), and for evaluating it.

The kinds are the bug benchmark's (`agent/bench/inject.py`: operator, comparison, boolean,
off-by-one, wrong name from the scope, swapped arguments, wrong return, negated condition,
deleted statement) plus the simple-bug patterns measured in real projects (ManySStuBs4J /
PySStuBs): a condition made more or less specific, a missing wrapper call (`max(a, b)` written
`b`), a changed argument expression (`k` for `k - n`), swapped operands of a concatenation, a
wrong attribute. Each is one tree-sitter edit inside one function or block of the file.
"""

from __future__ import annotations

import os
import random
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

import torch
import tree_sitter_python as tsp
from tree_sitter import Language, Node, Parser

KINDS = (
    "operator", "comparison", "boolean", "off_by_one", "wrong_name", "swapped_arguments",
    "wrong_return", "negated_condition", "deleted_statement", "condition_specificity",
    "missing_wrapper", "changed_argument", "swapped_concatenation", "wrong_attribute",
)
_ARITHMETIC = ("+", "-", "*", "/", "//", "%")
_AUGMENTED = ("+=", "-=", "*=", "/=", "//=", "%=")
_COMPARISONS = (("<", "<=", ">", ">="), ("==", "!="), ("is", "is not"), ("in", "not in"))
_WRAPPERS = {"max", "min", "len", "abs", "int", "str", "list", "sorted", "set", "tuple", "bool",
             "float", "any", "all", "sum", "round", "reversed", "repr", "dict", "iter", "next"}
_STATEMENTS = {"expression_statement", "return_statement", "raise_statement",
               "continue_statement", "break_statement", "delete_statement"}
# A corruption is searched for inside the function (or block) around a random point; a whole
# big file is not walked for each training row.
_SCOPES = {"function_definition", "class_definition", "module"}
_MAX_SCOPE_BYTES = 6000


@dataclass(frozen=True)
class Bug:
    """A corrupted text. `start`..`end` (characters of `text`) is what the corruption wrote
    (empty when it only removed something inside a line); `missing_after` is the index of the
    newline after which a deleted statement was, or None."""

    text: str
    start: int
    end: int
    missing_after: int | None
    kind: str


@dataclass(frozen=True)
class _Edit:
    start: int  # bytes of the source
    end: int
    replacement: bytes
    deletes_line: bool = False


@lru_cache(maxsize=1)
def _parser() -> Parser:
    return Parser(Language(tsp.language()))


def _walk(node: Node) -> list[Node]:
    out, stack = [], [node]
    while stack:
        n = stack.pop()
        out.append(n)
        stack.extend(reversed(n.children))
    return out


def _scope_at(root: Node, at: int) -> Node:
    """The innermost function or class around byte `at` that is small enough to walk, else the
    largest small enough node around it."""
    node = root.descendant_for_byte_range(at, at) or root
    fallback = node
    while node is not None and node.end_byte - node.start_byte <= _MAX_SCOPE_BYTES:
        if node.type in _SCOPES:
            return node
        fallback = node
        node = node.parent
    return fallback


def _swap(choices: tuple[str, ...] | list[str], current: str, rng: random.Random) -> str | None:
    others = [c for c in choices if c != current]
    return rng.choice(others) if others else None


class _Finder:
    """Candidate edits of each kind in one scope of one source."""

    def __init__(self, source: bytes, nodes: list[Node], rng: random.Random) -> None:
        self.src, self.nodes, self.rng = source, nodes, rng
        self.by_type: dict[str, list[Node]] = {}
        for n in nodes:
            self.by_type.setdefault(n.type, []).append(n)

    def text(self, n: Node) -> bytes:
        return self.src[n.start_byte:n.end_byte]

    def of(self, *types: str) -> list[Node]:
        return [n for t in types for n in self.by_type.get(t, [])]

    def names(self) -> list[bytes]:
        return sorted({self.text(n) for n in self.of("identifier") if not _is_attribute(n)})

    def operator(self) -> list[_Edit]:
        out = []
        for n in self.of("binary_operator", "augmented_assignment"):
            op = n.child_by_field_name("operator")
            if op is None:
                continue
            group = _AUGMENTED if n.type == "augmented_assignment" else _ARITHMETIC
            new = _swap(group, op.type, self.rng) if op.type in group else None
            if new:
                out.append(_Edit(op.start_byte, op.end_byte, new.encode()))
        return out

    def comparison(self) -> list[_Edit]:
        out = []
        for n in self.of("comparison_operator"):
            for op in n.children:
                if op.is_named:
                    continue
                for group in _COMPARISONS:
                    if op.type in group:
                        out.append(_Edit(op.start_byte, op.end_byte,
                                         _swap(group, op.type, self.rng).encode()))
        return out

    def boolean(self) -> list[_Edit]:
        out = []
        for n in self.of("boolean_operator"):
            op = n.child_by_field_name("operator")
            if op is not None and op.type in ("and", "or"):
                new = b"or" if op.type == "and" else b"and"
                out.append(_Edit(op.start_byte, op.end_byte, new))
        for n in self.of("true", "false"):
            out.append(_Edit(n.start_byte, n.end_byte, b"False" if n.type == "true" else b"True"))
        return out

    def off_by_one(self) -> list[_Edit]:
        out = []
        for n in self.of("integer"):
            text = self.text(n)
            if text.isdigit() and len(text) < 6:
                value = int(text) + self.rng.choice((-1, 1))
                if value >= 0:
                    out.append(_Edit(n.start_byte, n.end_byte, str(value).encode()))
        for n in self.of("binary_operator"):
            op, right = n.child_by_field_name("operator"), n.child_by_field_name("right")
            left = n.child_by_field_name("left")
            if (op is not None and op.type in ("+", "-") and right is not None
                    and left is not None and self.text(right) == b"1"):
                out.append(_Edit(n.start_byte, n.end_byte, self.text(left)))
        for n in self.of("subscript", "slice"):
            for child in n.named_children[1 if n.type == "subscript" else 0:]:
                if child.type == "identifier":
                    delta = self.rng.choice((b" + 1", b" - 1"))
                    out.append(_Edit(child.start_byte, child.end_byte, self.text(child) + delta))
        return out

    def wrong_name(self) -> list[_Edit]:
        names = self.names()
        out = []
        for n in self.of("identifier"):
            if _is_attribute(n) or _is_definition(n):
                continue
            new = _swap(names, self.text(n), self.rng)
            if new:
                out.append(_Edit(n.start_byte, n.end_byte, new))
        return out

    def swapped_arguments(self) -> list[_Edit]:
        out = []
        for n in self.of("argument_list"):
            args = [a for a in n.named_children if a.type not in (
                "keyword_argument", "list_splat", "dictionary_splat", "comment")]
            if len(args) >= 2:
                i = self.rng.randrange(len(args) - 1)
                a, b = args[i], args[i + 1]
                if self.text(a) != self.text(b):
                    middle = self.src[a.end_byte:b.start_byte]
                    out.append(_Edit(a.start_byte, b.end_byte,
                                     self.text(b) + middle + self.text(a)))
        return out

    def wrong_return(self) -> list[_Edit]:
        names = self.names()
        out = []
        for n in self.of("return_statement"):
            value = n.named_children[0] if n.named_children else None
            if value is None:
                continue
            choices = [b"None"] + names
            new = _swap(choices, self.text(value), self.rng)
            if new:
                out.append(_Edit(value.start_byte, value.end_byte, new))
        return out

    def negated_condition(self) -> list[_Edit]:
        out = []
        for n in self.of("if_statement", "elif_clause", "while_statement",
                         "conditional_expression"):
            cond = (n.named_children[1] if n.type == "conditional_expression"
                    and len(n.named_children) > 1 else n.child_by_field_name("condition"))
            if cond is None:
                continue
            if cond.type == "not_operator" and cond.named_children:
                new = self.text(cond.named_children[-1])
            elif cond.type in ("boolean_operator", "conditional_expression", "named_expression"):
                new = b"not (" + self.text(cond) + b")"
            else:
                new = b"not " + self.text(cond)
            out.append(_Edit(cond.start_byte, cond.end_byte, new))
        return out

    def deleted_statement(self) -> list[_Edit]:
        out = []
        for block in self.of("block"):
            statements = [s for s in block.named_children if s.type != "comment"]
            if len(statements) < 2:
                continue
            for s in statements:
                if s.type not in _STATEMENTS or b"\n" in self.text(s):
                    continue
                line_start = self.src.rfind(b"\n", 0, s.start_byte) + 1
                line_end = self.src.find(b"\n", s.end_byte)
                if line_end < 0 or self.src[line_start:s.start_byte].strip():
                    continue  # not alone on its line (`x = 1; y = 2`)
                if self.src[s.end_byte:line_end].strip() and not self.src[
                        s.end_byte:line_end].strip().startswith(b"#"):
                    continue
                out.append(_Edit(line_start, line_end + 1, b"", deletes_line=True))
        return out

    def condition_specificity(self) -> list[_Edit]:
        out = []
        for n in self.of("boolean_operator"):
            left, right = n.child_by_field_name("left"), n.child_by_field_name("right")
            if left is not None and right is not None:
                keep = self.rng.choice((left, right))
                out.append(_Edit(n.start_byte, n.end_byte, self.text(keep)))
        names = self.names()
        for n in self.of("if_statement", "elif_clause", "while_statement"):
            cond = n.child_by_field_name("condition")
            if cond is not None and names and cond.type != "boolean_operator":
                extra = self.rng.choice(names)
                joiner = self.rng.choice((b" and ", b" or "))
                out.append(_Edit(cond.start_byte, cond.end_byte,
                                 self.text(cond) + joiner + extra))
        return out

    def missing_wrapper(self) -> list[_Edit]:
        out = []
        for n in self.of("call"):
            fn, args = n.child_by_field_name("function"), n.child_by_field_name("arguments")
            if fn is None or args is None or args.type != "argument_list":
                continue
            positional = [a for a in args.named_children if a.type not in (
                "keyword_argument", "list_splat", "dictionary_splat", "comment")]
            if (fn.type == "identifier" and self.text(fn).decode() in _WRAPPERS
                    and 1 <= len(positional) <= 2 and len(positional) == len(args.named_children)):
                keep = self.rng.choice(positional)
                out.append(_Edit(n.start_byte, n.end_byte, self.text(keep)))
        return out

    def changed_argument(self) -> list[_Edit]:
        out = []
        for n in self.of("binary_operator"):
            if n.parent is None or n.parent.type not in ("argument_list", "subscript", "slice",
                                                         "keyword_argument"):
                continue
            side = n.child_by_field_name(self.rng.choice(("left", "right")))
            if side is not None:
                out.append(_Edit(n.start_byte, n.end_byte, self.text(side)))
        return out

    def swapped_concatenation(self) -> list[_Edit]:
        out = []
        for n in self.of("binary_operator"):
            op = n.child_by_field_name("operator")
            left, right = n.child_by_field_name("left"), n.child_by_field_name("right")
            if (op is None or op.type != "+" or left is None or right is None
                    or not {"string", "concatenated_string", "list", "tuple"} & {
                        left.type, right.type}):
                continue
            middle = self.src[left.end_byte:right.start_byte]
            out.append(_Edit(n.start_byte, n.end_byte,
                             self.text(right) + middle + self.text(left)))
        return out

    def wrong_attribute(self) -> list[_Edit]:
        attributes = sorted({self.text(n) for n in self.of("identifier") if _is_attribute(n)})
        out = []
        for n in self.of("identifier"):
            if _is_attribute(n):
                new = _swap(attributes, self.text(n), self.rng)
                if new:
                    out.append(_Edit(n.start_byte, n.end_byte, new))
        return out


def _is_attribute(n: Node) -> bool:
    parent = n.parent
    return parent is not None and parent.type == "attribute" and \
        parent.child_by_field_name("attribute") == n


def _is_definition(n: Node) -> bool:
    parent = n.parent
    return parent is not None and (
        parent.type in ("function_definition", "class_definition", "keyword_argument",
                        "parameters", "default_parameter", "typed_parameter",
                        "dotted_name", "aliased_import")
        and (parent.type != "keyword_argument" or parent.child_by_field_name("name") == n))


def _finders(finder: _Finder) -> dict[str, Callable[[], list[_Edit]]]:
    return {kind: getattr(finder, kind) for kind in KINDS}


def corrupt(source: str, rng: random.Random, kinds: tuple[str, ...] = KINDS,
            at: int | None = None) -> Bug | None:
    """One bug of a random kind (among `kinds` that have a site) in the function around the
    character `at` (random if None); None if that scope has no site of those kinds."""
    data = source.encode("utf-8")
    if not data:
        return None
    tree = _parser().parse(data)
    byte_at = len(source[:at].encode("utf-8")) if at is not None else rng.randrange(len(data))
    scope = _scope_at(tree.root_node, byte_at)
    finder = _Finder(data, _walk(scope), rng)
    table = _finders(finder)
    order = list(kinds)
    rng.shuffle(order)
    for kind in order:
        edits = [e for e in table[kind]() if data[e.start:e.end] != e.replacement]
        if edits:
            return _apply(data, rng.choice(edits), kind)
    return None


def _apply(data: bytes, edit: _Edit, kind: str) -> Bug:
    new = data[:edit.start] + edit.replacement + data[edit.end:]
    text = new.decode("utf-8", errors="replace")
    start = len(data[:edit.start].decode("utf-8", errors="replace"))
    if edit.deletes_line:
        return Bug(text, start, start, start - 1 if start > 0 else None, kind)
    # What the edit wrote, less what it kept of the original at either end: `not x` for `x`
    # wrote `not `, not the whole condition, and the repair head learns to flag exactly the
    # tokens a fix must change.
    old = data[edit.start:edit.end].decode("utf-8", errors="replace")
    wrote = edit.replacement.decode("utf-8", errors="replace")
    head = len(os.path.commonprefix([old, wrote]))
    tail = len(os.path.commonprefix([old[head:][::-1], wrote[head:][::-1]]))
    return Bug(text, start + head, start + len(wrote) - tail, None, kind)


def roc_auc(scores: torch.Tensor, labels: torch.Tensor) -> float:
    """Area under the ROC curve: the chance that a random positive scores above a random
    negative (ties count half). NaN without both classes."""
    labels = labels.bool().flatten()
    scores = scores.float().flatten()
    n_pos, n_neg = int(labels.sum()), int((~labels).sum())
    if not n_pos or not n_neg:
        return float("nan")
    order = scores.argsort()
    ranks = torch.empty_like(scores)
    ranks[order] = torch.arange(1, len(scores) + 1, dtype=scores.dtype)
    # Average ranks over ties.
    uniq, inverse = torch.unique(scores, return_inverse=True)
    sums = torch.zeros(len(uniq)).index_add_(0, inverse, ranks)
    counts = torch.zeros(len(uniq)).index_add_(0, inverse, torch.ones_like(ranks))
    ranks = (sums / counts)[inverse]
    return float((ranks[labels].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def bug_line(bug: Bug) -> int:
    """The 1-based line a repair must touch: the written text's line, or for a deleted
    statement the line it is missing after (where the agent inserts)."""
    at = bug.missing_after if bug.missing_after is not None else bug.start
    if bug.missing_after is None:
        at += len(bug.text[bug.start:bug.end]) - len(bug.text[bug.start:bug.end].lstrip())
    return bug.text.count("\n", 0, at) + 1


def enclosing_function(text: str, at: int, lines: int = 20) -> tuple[int, int]:
    """Characters of the innermost function around character `at` (what localization reads
    per suspicious function); outside any function, `lines` lines either side."""
    data = text.encode("utf-8")
    byte_at = len(text[:at].encode("utf-8"))
    node = _parser().parse(data).root_node.descendant_for_byte_range(byte_at, byte_at)
    while node is not None and node.type != "function_definition":
        node = node.parent
    if node is not None:
        start = data.rfind(b"\n", 0, node.start_byte) + 1
        return len(data[:start].decode("utf-8", "replace")), len(
            data[:node.end_byte].decode("utf-8", "replace"))
    start = at
    for _ in range(lines):
        start = text.rfind("\n", 0, max(0, start - 1)) + 1
    end = at
    for _ in range(lines):
        nxt = text.find("\n", end + 1)
        end = len(text) if nxt < 0 else nxt
    return start, end
