"""Drafting canvases: where in a suspicious line the model may write, and how long each fill may be.

A `Site` is a span `[start_char, end_char)` of a file's source (character offsets into the `str`).
The model sees `canvas(source, site)` = (prefix, suffix) and fills the masked middle; the candidate
is `apply(source, site, fill)` = prefix + fill + suffix. `lead`/`trail` are fixed text around the
fill (an inserted line's indentation and newline), so the model never has to produce them.

Kinds, from the most to the least specific: operator token, other token (identifier, attribute,
number, string, True/False/None), enclosing expression node (tree-sitter boundaries, capped in
length), whole-line rewrite, line inserted after / before, line deleted (a candidate in itself,
fill "" and no span lengths).
"""

from __future__ import annotations

import bisect
import re
import warnings
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from types import CodeType
from typing import Protocol, TypeVar

import tree_sitter_python as tsp
from tree_sitter import Language, Node, Parser, Tree

KIND_WEIGHT = {
    "operator": 1.0,
    "token": 0.9,
    "node": 0.8,
    "line": 0.7,
    "insert_after": 0.5,
    "insert_before": 0.45,
    "delete": 0.4,
}
KINDS = tuple(KIND_WEIGHT)
MAX_NODE_CHARS = 80

_OPERATOR_PARENTS = {
    "comparison_operator",
    "binary_operator",
    "boolean_operator",
    "augmented_assignment",
    "unary_operator",
    "not_operator",
}
_TOKEN_TYPES = {"identifier", "attribute", "integer", "float", "string", "true", "false", "none"}
_NOT_EXPRESSIONS = {"module", "block", "comment", "string_start", "string_content", "string_end"}
_COMPOUND = {
    "if_statement",
    "for_statement",
    "while_statement",
    "try_statement",
    "with_statement",
    "function_definition",
    "class_definition",
    "match_statement",
    "decorated_definition",
}
_ROUGH_TOKEN = re.compile(r"\w+|[^\w\s]")


@dataclass(frozen=True)
class Site:
    path: str
    start_char: int
    end_char: int
    kind: str
    original_text: str
    span_lengths: tuple[int, ...]
    line: int  # 1-based line of the suspicious line this site was made for
    score: float  # suspiciousness of the line times the kind's weight
    lead: str = ""
    trail: str = ""


class _Suspicious(Protocol):
    path: str
    line: int
    score: float


def rough_token_count(text: str) -> int:
    """Words and punctuation marks: a stand-in when no tokenizer is at hand."""
    return len(_ROUGH_TOKEN.findall(text))


def span_lengths(
    text: str, count_tokens: Callable[[str], int] = rough_token_count
) -> tuple[int, ...]:
    """Fill lengths to try around the original's token count n: n-1, n, n+1, n+2, all >= 1."""
    n = count_tokens(text)
    return tuple(sorted({max(1, k) for k in (n - 1, n, n + 1, n + 2)}))


@lru_cache(maxsize=1)
def _parser() -> Parser:
    return Parser(Language(tsp.language()))


@lru_cache(maxsize=16)  # sites, mutations and dedupe of one round all parse the same files
def parse_tree(source: str) -> Tree:
    return _parser().parse(source.encode("utf-8"))


def _code_key(code: CodeType) -> tuple:
    """What a compiled program does, without where its tokens sit: bytecode, names, constants
    (nested code objects recursively) and signatures. Line and column tables are left out, so
    formatting, comments and redundant parentheses do not make a different program."""
    consts = tuple(
        _code_key(c) if isinstance(c, CodeType) else (type(c).__name__, repr(c))
        for c in code.co_consts
    )
    return (
        code.co_code, code.co_names, code.co_varnames, code.co_freevars, code.co_cellvars,
        code.co_argcount, code.co_posonlyargcount, code.co_kwonlyargcount, code.co_flags, consts,
    )  # fmt: skip


def _ast_key(source: str) -> tuple | None:
    """A key equal for the same program, or None when `source` does not compile. Compiling
    (cheaper than dumping the AST, which dominated drafting time) also rejects what parses
    but cannot run, such as `break` outside a loop."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return _code_key(compile(source, "<candidate>", "exec", dont_inherit=True))
    except (SyntaxError, ValueError, RecursionError, MemoryError, OverflowError):
        return None


def parses(source: str) -> bool:
    """Whether `source` is valid Python (the interpreter's own parser decides)."""
    return _ast_key(source) is not None


def canvas(source: str, site: Site) -> tuple[str, str]:
    """(prefix, suffix) around the masked span: the model's context on both sides."""
    return source[: site.start_char] + site.lead, site.trail + source[site.end_char :]


def apply(source: str, site: Site, fill: str) -> str:
    prefix, suffix = canvas(source, site)
    return prefix + fill + suffix


class _Text:
    """Line and byte/char offsets of one source text."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.lines = source.splitlines(keepends=True)
        self.line_starts = [0]
        for text in self.lines:
            self.line_starts.append(self.line_starts[-1] + len(text))
        self._byte_starts: list[int] | None = None
        if not source.isascii():
            offsets, total = [], 0
            for ch in source:
                offsets.append(total)
                total += len(ch.encode("utf-8"))
            offsets.append(total)
            self._byte_starts = offsets

    def char(self, byte: int) -> int:
        if self._byte_starts is None:
            return byte
        return bisect.bisect_left(self._byte_starts, byte)

    def span(self, node: Node) -> tuple[int, int]:
        return self.char(node.start_byte), self.char(node.end_byte)

    def line_text(self, line: int) -> str:
        return self.lines[line - 1] if 0 < line <= len(self.lines) else ""

    def indent(self, line: int) -> str:
        text = self.line_text(line)
        return text[: len(text) - len(text.lstrip(" \t"))]


@lru_cache(maxsize=16)
def _text(source: str) -> _Text:
    return _Text(source)


def _nodes_starting_on(node: Node, row: int) -> Iterable[Node]:
    if node.start_point.row > row or node.end_point.row < row:
        return
    if node.start_point.row == row:
        yield node
    for child in node.children:
        yield from _nodes_starting_on(child, row)


def _is_statement(node: Node) -> bool:
    return node.type.endswith("_statement") or node.type in _COMPOUND


def _statement_starting_on(root: Node, row: int, indent_col: int) -> Node | None:
    """The outermost statement that begins at the line's first non-blank character."""
    for node in _nodes_starting_on(root, row):
        if _is_statement(node) and node.start_point.column == indent_col:
            return node
    return None


class _Builder:
    def __init__(
        self,
        path: str,
        text: _Text,
        line: int,
        score: float,
        count_tokens: Callable[[str], int],
    ) -> None:
        self.path, self.text, self.line, self.score = path, text, line, score
        self.count_tokens = count_tokens
        self.sites: list[Site] = []

    def add(
        self, kind: str, start: int, end: int, lead: str = "", trail: str = "", like: str = ""
    ) -> None:
        original = self.text.source[start:end]
        lengths = () if kind == "delete" else span_lengths(like or original, self.count_tokens)
        self.sites.append(
            Site(
                self.path, start, end, kind, original, lengths, self.line,
                self.score * KIND_WEIGHT[kind], lead, trail,
            )
        )  # fmt: skip


def sites_for_line(
    path: str,
    source: str,
    line: int,
    score: float = 1.0,
    count_tokens: Callable[[str], int] = rough_token_count,
    max_node_chars: int = MAX_NODE_CHARS,
    tree: Tree | None = None,
) -> list[Site]:
    """Every canvas site of one line (1-based) of `source`, in discovery order."""
    text = _text(source)
    line_text = text.line_text(line)
    if not line_text.strip():
        return []
    tree = tree or parse_tree(source)
    row = line - 1
    build = _Builder(path, text, line, score, count_tokens)
    tokens: list[Node] = []
    for node in _nodes_starting_on(tree.root_node, row):
        parent = node.parent
        if not node.is_named and parent is not None and parent.type in _OPERATOR_PARENTS:
            build.add("operator", *text.span(node))
        elif node.type in _TOKEN_TYPES:
            build.add("token", *text.span(node))
            tokens.append(node)
    for node in _enclosing_expressions(tokens, max_node_chars):
        build.add("node", *text.span(node))

    indent = text.indent(line)
    start = text.line_starts[row]
    body = line_text.rstrip("\r\n")
    build.add("line", start + len(indent), start + len(body))

    statement = _statement_starting_on(tree.root_node, row, len(indent))
    if statement is not None:
        stripped = body.strip()
        build.add("insert_before", start, start, lead=indent, trail="\n", like=stripped)
        after_row, after_indent = statement.end_point.row + 1, indent
        block = next((c for c in statement.children if c.type == "block"), None)
        if statement.type in _COMPOUND and block is not None and block.start_point.row > row:
            # A header line: the inserted line opens its body.
            after_row, after_indent = block.start_point.row, text.indent(block.start_point.row + 1)
        if after_row <= len(text.lines):
            at = text.line_starts[after_row]
            build.add("insert_after", at, at, lead=after_indent, trail="\n", like=stripped)
        if statement.type not in _COMPOUND and _alone_on_its_lines(statement, text):
            end_row = statement.end_point.row
            build.add("delete", start, text.line_starts[min(end_row + 1, len(text.lines))])
    return build.sites


def _alone_on_its_lines(statement: Node, text: _Text) -> bool:
    """No other statement shares its lines (`a = 1; b = 2`), so deleting the lines is exact."""
    end_line = text.line_text(statement.end_point.row + 1)
    rest = end_line.encode("utf-8")[statement.end_point.column :].decode("utf-8", "ignore")
    return rest.strip() == "" or rest.strip().startswith("#")


def _enclosing_expressions(tokens: list[Node], max_chars: int) -> list[Node]:
    """Ancestors of the line's tokens up to the statement, shorter than `max_chars`."""
    found: dict[tuple[int, int], Node] = {}
    for token in tokens:
        node = token.parent
        while node is not None and not _is_statement(node) and node.type not in _NOT_EXPRESSIONS:
            if node.end_byte - node.start_byte > max_chars:
                break
            if node.is_named:
                found.setdefault((node.start_byte, node.end_byte), node)
            node = node.parent
    return [found[k] for k in sorted(found, key=lambda k: (k[1] - k[0], k[0]))]


def dedupe_sites(sites: Iterable[Site]) -> list[Site]:
    """First site of each (path, span, lead, trail); feed ranked sites to keep the best."""
    seen: set[tuple[str, int, int, str, str]] = set()
    kept = []
    for site in sites:
        key = (site.path, site.start_char, site.end_char, site.lead, site.trail)
        if key not in seen:
            seen.add(key)
            kept.append(site)
    return kept


def rank_sites(sites: Iterable[Site]) -> list[Site]:
    """By score (suspiciousness x kind weight), then kind, then position; duplicates dropped."""
    order = {kind: i for i, kind in enumerate(KINDS)}
    ranked = sorted(
        sites, key=lambda s: (-s.score, order[s.kind], s.path, s.start_char, s.end_char)
    )
    return dedupe_sites(ranked)


def sites_for(
    sources: Mapping[str, str],
    suspicious: Iterable[_Suspicious],
    count_tokens: Callable[[str], int] = rough_token_count,
    max_node_chars: int = MAX_NODE_CHARS,
    kinds: Iterable[str] = KINDS,
    limit: int | None = None,
) -> list[Site]:
    """Ranked, deduplicated sites for suspicious lines (e.g. `localize.rank_lines` output).

    `sources` maps each relpath to its current text; lines of files not in it are skipped.
    """
    wanted = set(kinds)
    trees: dict[str, Tree] = {}
    sites: list[Site] = []
    for item in suspicious:
        source = sources.get(item.path)
        if source is None:
            continue
        tree = trees.setdefault(item.path, parse_tree(source))
        for site in sites_for_line(
            item.path, source, item.line, item.score, count_tokens, max_node_chars, tree
        ):
            if site.kind in wanted:
                sites.append(site)
    ranked = rank_sites(sites)
    return ranked[:limit] if limit is not None else ranked


T = TypeVar("T")


def dedupe(
    candidates: Iterable[T],
    source_of: Callable[[T], str] = str,
    original: str | None = None,
) -> list[T]:
    """Candidates that parse, one per distinct program (compared by AST, so whitespace and
    comments do not count), without no-ops (same AST as `original`); first occurrence kept."""
    seen: set[str | None] = {None}
    if original is not None:
        seen.add(_ast_key(original))
    kept = []
    for item in candidates:
        key = _ast_key(source_of(item))
        if key not in seen:
            seen.add(key)
            kept.append(item)
    return kept


_REGION_TYPES = {"function_definition", "class_definition"}
ProgramKey = tuple[str, int, int, tuple]


def _region(source: str, site: Site) -> tuple[int, int] | None:
    """Char span of the smallest function/class (else top-level statement) around the site, or
    None when the site is outside every region (then only the whole file can tell)."""
    text = _text(source)
    start_b = len(source[: site.start_char].encode("utf-8"))
    end_b = start_b + len(source[site.start_char : site.end_char].encode("utf-8"))
    node = parse_tree(source).root_node.descendant_for_byte_range(start_b, end_b)
    while node is not None and node.parent is not None:
        if node.type in _REGION_TYPES or node.parent.type == "module":
            break
        node = node.parent
    if node is None or node.parent is None:
        return None
    if node.parent.type == "decorated_definition":  # the decorators belong with the definition
        node = node.parent
    start, end = text.span(node)
    inside = start <= site.start_char <= site.end_char <= end
    if "\n" in site.lead + site.trail:  # an inserted line must have region lines on both sides
        inside = start < site.start_char <= site.end_char < end
    return (start, end) if inside else None


def _region_source(source: str, region: tuple[int, int], site: Site | None, fill: str) -> str:
    """The region's text with the fill spliced in, wrapped so its indentation parses alone."""
    start, end = region
    line_start = source.rfind("\n", 0, start) + 1
    indent = source[line_start:start]
    body = source[start:end]
    if site is not None:
        body = (
            source[start : site.start_char] + site.lead + fill + site.trail
            + source[site.end_char : end]
        )  # fmt: skip
    # `pass` pins the block at the region's own column: deeper lines must then open a block.
    return f"if 1:\n{indent}pass\n{indent}{body}\n" if indent else body + "\n"


def program_key(source: str, site: Site, fill: str) -> ProgramKey | None:
    """Equal for candidates that are the same program (compared compiled); None if the candidate
    does not compile. A single-line fill is checked on its enclosing function or class only, which
    is much cheaper than the whole file; it may reject what the file would accept (a trailing
    backslash joining the next statement), never the reverse. Other fills: the whole file."""
    region = _region(source, site) if "\n" not in fill else None
    if region is not None and fill.strip():
        # A fill that starts a line left of the region's column would leave the region's block.
        line_start = source.rfind("\n", 0, site.start_char) + 1
        before = source[line_start : site.start_char] + site.lead
        column = len(before) + len(fill) - len(fill.lstrip(" \t"))
        region_column = region[0] - (source.rfind("\n", 0, region[0]) + 1)
        if not before.strip() and column < region_column:
            region = None
    # A region that does not compile alone (a closure's `nonlocal` names a binding outside
    # it) would reject every candidate in it: only the whole file can tell.
    if region is not None and _original_keys(source, site.path, region) is None:
        region = None
    if region is None:
        key = _ast_key(apply(source, site, fill))
        return None if key is None else (site.path, 0, -1, key)
    key = _ast_key(_region_source(source, region, site, fill))
    return None if key is None else (site.path, region[0], region[1], key)


@lru_cache(maxsize=256)
def _original_keys(source: str, path: str, region: tuple[int, int] | None) -> ProgramKey | None:
    if region is None:
        key = _ast_key(source)
        return None if key is None else (path, 0, -1, key)
    key = _ast_key(_region_source(source, region, None, ""))
    return None if key is None else (path, region[0], region[1], key)


def dedupe_fills(
    sources: Mapping[str, str],
    items: Iterable[T],
    site_of: Callable[[T], Site],
    fill_of: Callable[[T], str],
) -> list[T]:
    """Items (e.g. model samples) whose fill parses, one per distinct program, no-ops dropped;
    first occurrence kept, so pass them best first. `sources` maps site paths to their text."""
    seen: set[ProgramKey] = set()
    kept = []
    for item in items:
        site, fill = site_of(item), fill_of(item)
        source = sources[site.path]
        key = program_key(source, site, fill)
        if key is None or key in seen:
            continue
        region = None if key[2] == -1 else (key[1], key[2])
        if key == _original_keys(source, site.path, region):
            continue
        seen.add(key)
        kept.append(item)
    return kept
