"""Turn a chat model's reply into new versions of a function: a code block or a unified diff.

Replies vary: one or several fenced blocks (```python, ``` or an unterminated last block), bare
code, or a unified diff (fenced or not, line numbers often wrong). What comes out is the whole
file with the function replaced, for each distinct reading that parses; the caller validates
them like any other candidate. Anything that cannot be read gives nothing, never an error.
"""

from __future__ import annotations

import ast
import re
import textwrap
from dataclasses import dataclass

_FENCE = re.compile(r"^```[^\n`]*\n(.*?)(?:^```[ \t]*$|\Z)", re.S | re.M)


@dataclass(frozen=True)
class Function:
    """A function's place in a file: [start, end) in characters, from its first decorator to
    the end of its last line (newline included)."""

    name: str
    start: int
    end: int
    line: int  # 1-based first line
    indent: str

    def text(self, source: str) -> str:
        return source[self.start : self.end]


def _line_starts(source: str) -> list[int]:
    starts = [0]
    for line in source.splitlines(keepends=True):
        starts.append(starts[-1] + len(line))
    return starts


def enclosing_function(source: str, line: int) -> Function | None:
    """The innermost function (or method) whose lines hold `line` (1-based)."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return None
    best: ast.FunctionDef | ast.AsyncFunctionDef | None = None
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
            if first <= line <= (node.end_lineno or node.lineno) and (
                best is None or node.lineno >= best.lineno
            ):
                best = node
    if best is None:
        return None
    first = min([best.lineno, *(d.lineno for d in best.decorator_list)])
    starts = _line_starts(source)
    end_line = best.end_lineno or best.lineno
    text_line = source.splitlines()[first - 1]
    indent = text_line[: len(text_line) - len(text_line.lstrip())]
    return Function(best.name, starts[first - 1], starts[min(end_line, len(starts) - 1)],
                    first, indent)  # fmt: skip


def _blocks(reply: str) -> list[str]:
    blocks = [m.group(1) for m in _FENCE.finditer(reply)]
    if not blocks and re.match(r"\s*(@|def |async def )", reply):
        blocks = [reply]
    return blocks


def _function_in(code: str, name: str) -> str | None:
    """The source of the function `name` defined in `code` (dedented), if it parses."""
    code = textwrap.dedent(code)
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return None
    lines = code.splitlines(keepends=True)
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name == name:
            first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
            return textwrap.dedent("".join(lines[first - 1 : node.end_lineno]))
    return None


def _apply_diff(source: str, diff: str) -> str | None:
    """Apply a unified diff's hunks by their text (line numbers ignored); None if a hunk's
    old lines are not found."""
    hunks: list[tuple[list[str], list[str]]] = []
    for line in diff.splitlines():
        if line.startswith("@@"):
            hunks.append(([], []))
        elif not hunks or line.startswith(("---", "+++")):
            continue
        elif line.startswith("-"):
            hunks[-1][0].append(line[1:])
        elif line.startswith("+"):
            hunks[-1][1].append(line[1:])
        elif line.startswith(" ") or not line:
            hunks[-1][0].append(line[1:])
            hunks[-1][1].append(line[1:])
    if not hunks:
        return None
    for old, new in hunks:
        old_text, new_text = "\n".join(old) + "\n", "\n".join(new) + "\n"
        if old_text not in source:
            return None
        source = source.replace(old_text, new_text, 1)
    return source


def rewrites(reply: str, source: str, function: Function) -> list[str]:
    """New versions of `source` read from `reply`, distinct, parsing, and not `source` itself."""
    out: list[str] = []
    for block in _blocks(reply) or [reply]:
        if re.search(r"^@@", block, re.M):
            candidate = _apply_diff(source, block)
        else:
            code = _function_in(block, function.name)
            if code is None:
                continue
            body = textwrap.indent(code, function.indent, lambda s: s.strip() != "")
            candidate = source[: function.start] + body.rstrip("\n") + "\n" + source[function.end :]
        if candidate is None or candidate == source or candidate in out:
            continue
        try:
            ast.parse(candidate)
        except SyntaxError:
            continue
        out.append(candidate)
    return out
