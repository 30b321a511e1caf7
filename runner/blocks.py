"""Changed lines, and the function or module block each belongs to (tree-sitter-python).

A line inside a function's body runs only when the function is called, so a change there can only
affect tests that executed that function. Every other line (imports, constants, class bodies, `def`
lines, decorators, default arguments) runs when the module is imported: a change there can affect
every test that imports the module.
"""

from __future__ import annotations

import difflib
import functools
from dataclasses import dataclass

import tree_sitter_python
from tree_sitter import Language, Node, Parser


@dataclass(frozen=True)
class Function:
    """A function's qualified name and the 1-based line range of its body."""

    qualname: str
    body_start: int
    body_end: int

    def lines(self) -> range:
        return range(self.body_start, self.body_end + 1)


@functools.cache
def _parser() -> Parser:
    return Parser(Language(tree_sitter_python.language()))


# The nodes a `def` can sit in (compound statements, their clauses and blocks): expressions
# and simple statements, most of a module's nodes, hold none and are not walked.
_HOLDS_DEFINITIONS = frozenset({
    "module", "block", "decorated_definition", "if_statement", "elif_clause", "else_clause",
    "for_statement", "while_statement", "try_statement", "except_clause", "except_group_clause",
    "finally_clause", "with_statement", "match_statement", "case_clause",
    # what tree-sitter could not parse is walked too, as code it recovered may hold a `def`
    "ERROR",
})  # fmt: skip


def functions(source: str) -> list[Function]:
    """Every function (methods and nested functions included) with its body's lines.

    A body that starts on its `def` line (`def f(): return 1`) shares that line with the header,
    which runs at import time, so such a function has no body lines of its own. The last few
    sources' answers are kept: every candidate of a file is compared with the same original.
    """
    return list(_functions(source))


@functools.lru_cache(maxsize=16)
def _functions(source: str) -> tuple[Function, ...]:
    tree = _parser().parse(source.encode("utf-8", "surrogateescape"))
    found: list[Function] = []

    def visit(node: Node, prefix: str) -> None:
        for child in node.named_children:
            if child.type == "function_definition":
                body = child.child_by_field_name("body")
                qual = f"{prefix}{_name(child)}"
                if body is not None and body.start_point.row > child.start_point.row:
                    found.append(Function(qual, body.start_point.row + 1, body.end_point.row + 1))
                visit(child, f"{qual}.")
            elif child.type == "class_definition":
                visit(child, f"{prefix}{_name(child)}.")
            elif child.type in _HOLDS_DEFINITIONS:
                visit(child, prefix)

    visit(tree.root_node, "")
    return tuple(found)


def _name(node: Node) -> str:
    name = node.child_by_field_name("name")
    return name.text.decode("utf-8", "replace") if name is not None else ""


def enclosing(funcs: list[Function], line: int) -> Function | None:
    """The innermost function whose body holds `line`; None: module level (import time)."""
    best = None
    for func in funcs:
        if func.body_start <= line <= func.body_end and (
            best is None or func.body_start >= best.body_start
        ):
            best = func
    return best


@dataclass(frozen=True)
class FileChange:
    """What a change does to one file, in terms of the OLD file's blocks.

    `functions`: functions of the old file whose bodies changed (tests that executed them are
    affected); `module_level`: old/new line numbers of changes that run at import time.
    """

    functions: tuple[Function, ...]
    module_level: tuple[int, ...]
    changed_old: tuple[int, ...]
    changed_new: tuple[int, ...]


def shared_ends(a: list[str], b: list[str]) -> tuple[int, int]:
    """How many lines `a` and `b` share at the start, and then at the end."""
    head = 0
    while head < min(len(a), len(b)) and a[head] == b[head]:
        head += 1
    tail = 0
    while tail < min(len(a), len(b)) - head and a[-1 - tail] == b[-1 - tail]:
        tail += 1
    return head, tail


def changed_lines(old: str, new: str) -> tuple[list[int], list[int], list[int]]:
    """(old lines replaced or deleted, new lines replaced or inserted, old insertion points)."""
    a, b = old.splitlines(), new.splitlines()
    # The lines both share at the start and at the end are set aside first: a candidate changes
    # a few lines of a file, and difflib's matcher is quadratic in what it is given (on a
    # 5,000-line module it was most of each candidate's job, and starved the test workers).
    head, tail = shared_ends(a, b)
    middle = difflib.SequenceMatcher(None, a[head:len(a) - tail], b[head:len(b) - tail],
                                     autojunk=False)  # fmt: skip
    old_lines: list[int] = []
    new_lines: list[int] = []
    insert_at: list[int] = []
    for tag, i1, i2, j1, j2 in middle.get_opcodes():
        if tag == "equal":
            continue
        old_lines.extend(range(head + i1 + 1, head + i2 + 1))
        new_lines.extend(range(head + j1 + 1, head + j2 + 1))
        if i1 == i2:
            insert_at.append(head + i1)
    return old_lines, new_lines, insert_at


def classify(old: str, new: str) -> FileChange:
    """Map a file's change onto the old file's function bodies and its module level."""
    old_lines, new_lines, _ = changed_lines(old, new)
    old_funcs, new_funcs = functions(old), functions(new)
    by_name: dict[str, list[Function]] = {}
    for func in old_funcs:
        by_name.setdefault(func.qualname, []).append(func)
    hit: dict[Function, None] = {}
    module_level: list[int] = []
    for line in old_lines:
        func = enclosing(old_funcs, line)
        if func is None:
            module_level.append(line)
        else:
            hit[func] = None
    # New lines (insertions above all) are judged in the new file; a function body there maps
    # back to the old function of the same qualified name. No such function: its `def` line is
    # new too, which is a module-level change.
    for line in new_lines:
        func = enclosing(new_funcs, line)
        olds = by_name.get(func.qualname, []) if func is not None else []
        if not olds:
            module_level.append(line)
        for old_func in olds:
            hit[old_func] = None
    return FileChange(
        tuple(hit), tuple(sorted(set(module_level))), tuple(old_lines), tuple(new_lines)
    )
