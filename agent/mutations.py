"""The mutation-only baseline: fills for the same canvas sites, drawn without a model.

An ablation: it answers "how far do operator/constant/identifier substitutions get on their own?".
For a site, `mutation_fills` lists replacement texts in a fixed order; every fill parses when
applied and makes a distinct program that differs from the original.
"""

from __future__ import annotations

import keyword
import re

from tree_sitter import Node

from agent.canvases import Site, dedupe_fills, parse_tree

OPERATOR_GROUPS = (
    ("<", "<=", ">", ">=", "==", "!="),
    ("+", "-", "*", "/", "//", "%"),
    ("+=", "-=", "*=", "/=", "//=", "%="),
    ("and", "or"),
    ("is", "is not"),
    ("in", "not in"),
)
# Unary operators can also be dropped (`-x` -> `x`, `not x` -> `x`).
_DROPPABLE = {"-", "not", "~", "+"}
_CONDITION_HEAD = re.compile(r"^(if|elif|while)\s+(.+?)\s*:\s*(#.*)?$")
_NEGATABLE = {
    "comparison_operator",
    "boolean_operator",
    "not_operator",
    "identifier",
    "call",
    "attribute",
    "subscript",
    "parenthesized_expression",
}
_SHIFTABLE = {"identifier", "call", "attribute", "subscript", "binary_operator"}
MAX_NAMES = 20
MAX_INSERTS = 60


def _operator_fills(text: str) -> list[str]:
    fills = [op for group in OPERATOR_GROUPS if text in group for op in group if op != text]
    if text in _DROPPABLE:
        fills.append("")
    return fills


def _constant_fills(text: str) -> list[str]:
    if text in ("True", "False"):
        return ["False" if text == "True" else "True", "None"]
    if text == "None":
        return ["True", "False"]
    if re.fullmatch(r"\d+", text):
        n = int(text)
        return [str(n + 1), str(n - 1), "0", "1"]
    return []


def _nodes_with_span(source: str, site: Site) -> list[Node]:
    start = len(source[: site.start_char].encode("utf-8"))
    end = start + len(site.original_text.encode("utf-8"))
    node = parse_tree(source).root_node.descendant_for_byte_range(start, end)
    chain = []
    while node is not None and node.start_byte == start and node.end_byte == end:
        chain.append(node)
        node = node.parent
    return chain


def _names(node: Node | None) -> list[str]:
    """Identifiers under `node` in order of first appearance."""
    found: dict[str, None] = {}
    stack = [node] if node is not None else []
    while stack:
        current = stack.pop()
        if current.type == "identifier" and current.text is not None:
            found.setdefault(current.text.decode("utf-8"), None)
        stack.extend(reversed(current.children))
    return [n for n in found if not keyword.iskeyword(n)]


def _identifier_fills(source: str, node: Node, original: str) -> list[str]:
    """Names of the enclosing function first, then of the whole file."""
    function = node.parent
    while function is not None and function.type != "function_definition":
        function = function.parent
    root = node
    while root.parent is not None:
        root = root.parent
    names = dict.fromkeys(_names(function) + _names(root))
    names.pop(original, None)
    return list(names)[:MAX_NAMES]


def _node_fills(nodes: list[Node], text: str) -> list[str]:
    types = {n.type for n in nodes}
    fills = []
    negation = next((n for n in nodes if n.type == "not_operator"), None)
    if negation is not None:
        argument = negation.child_by_field_name("argument")
        if argument is not None and argument.text is not None:
            fills.append(argument.text.decode("utf-8"))
    elif types & _NEGATABLE:
        fills.append(f"not ({text})")
    if types & _SHIFTABLE:
        fills += [f"{text} + 1", f"{text} - 1"]
    return fills


def _line_fills(text: str) -> list[str]:
    head = _CONDITION_HEAD.match(text)
    if head is None:
        return []
    condition = head.group(2)
    negated = condition[4:].strip() if condition.startswith("not ") else f"not ({condition})"
    return [f"{head.group(1)} {negated}:"]


def _insert_fills(source: str, site: Site) -> list[str]:
    """A missing statement, from templates over the enclosing function's names: an assignment
    `a = b` (a is assigned somewhere in the function, b is read near the site), or a jump."""
    start = len(source[: site.start_char].encode("utf-8"))
    node = parse_tree(source).root_node.descendant_for_byte_range(start, start)
    function = node
    while function is not None and function.type != "function_definition":
        function = function.parent
    if function is None:
        return []
    assigned: dict[str, int] = {}
    stack = [function]
    while stack:
        current = stack.pop()
        if current.type in ("assignment", "augmented_assignment"):
            left = current.child_by_field_name("left")
            if left is not None and left.type == "identifier" and left.text is not None:
                name = left.text.decode("utf-8")
                assigned[name] = assigned.get(name, 0) + 1
        stack.extend(reversed(current.children))
    # A name assigned only once and read later is the classic stale variable: try it first.
    targets = sorted(assigned, key=lambda name: assigned[name] > 1)
    line = source.splitlines()[site.line - 1] if site.line <= len(source.splitlines()) else ""
    names = _names(function)
    local = [n for n in names if re.search(rf"\b{re.escape(n)}\b", line)]
    values = list(dict.fromkeys(local + names))
    first = [f"{a} = {b}" for a in targets for b in local if a != b]
    rest = [f"{a} = {b}" for a in targets for b in values if a != b and b not in local]
    fills = first + rest
    return fills[:MAX_INSERTS] + ["break", "continue", "return", "return None"]


def mutation_fills(source: str, site: Site) -> list[str]:
    """Replacement texts for `site`, in a deterministic order; each parses once applied."""
    text = site.original_text
    if site.kind == "delete":
        # A statement alone in its block leaves `pass` behind.
        indent = text[: len(text) - len(text.lstrip(" \t"))]
        fills = ["", f"{indent}pass\n"]
    elif site.kind == "operator":
        fills = _operator_fills(text)
    elif site.kind == "line":
        fills = _line_fills(text)
    elif site.kind in ("token", "node"):
        nodes = _nodes_with_span(source, site)
        fills = _constant_fills(text)
        if site.kind == "token" and any(n.type == "identifier" for n in nodes):
            fills += _identifier_fills(source, nodes[0], text)
        fills += _node_fills(nodes, text)
    else:
        fills = _insert_fills(source, site)
    valid = dedupe_fills({site.path: source}, dict.fromkeys(fills), lambda f: site, str)
    return valid[:1] if site.kind == "delete" else valid
