"""Model-free fills for canvas sites, in a fixed order; every fill parses when applied and makes
a distinct program that differs from the original.

Two families:
- `substitution_fills`: operator swaps (or dropping a unary operator), constants, identifiers
  from the file, one token each. Alone, they are the mutation-only baseline (`--drafter
  mutations`): the ablation that asks how far classic mutation gets.
- `edit_fills`: structural edits no single substitution makes: a negated condition or
  expression, +/- 1 on an expression, one side of a binary operator or one clause of an
  `and`/`or` kept, swapped call arguments, a returned name, an inserted
  statement (an assignment template, or a statement copied from the file), a deleted statement.
- `widen_fills`: the shapes real single-statement bugs take (PySStuBs, ManySStuBs4J) that no
  inverse operator undoes: swapped operands (`path + (key,)` written `(key,) + path`), a
  missing wrapper call (`len(items)` written `items`) and a changed argument (`k - n` written
  `k`). A stage of their own, after the edits: they multiply the candidates, and the repair
  head, which reads where the code looks wrong and not what a fill writes, cannot rank them
  (`agent model eval --repair-only --bugs 60`: held-out recovery@10 fell from 38.3% to 16.7%
  with them among the ranked edits).
"""

from __future__ import annotations

import builtins
import keyword
import re
from collections.abc import Collection

from greenpatch.agent.pipeline.sites import Site, dedupe_fills, parse_tree, parses
from tree_sitter import Node

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
# Negated without parentheses (`_negated`).
_PRIMARIES = {"identifier", "call", "attribute", "subscript", "parenthesized_expression"}
_DOTTED = re.compile(r"[A-Za-z_][\w.]*")
# Where an expression stands alone: parentheses around it change nothing (`_unnegated`).
_STANDALONE = {"if_statement", "elif_clause", "while_statement", "return_statement",
               "assignment", "expression_statement"}
_SHIFTABLE = {"identifier", "call", "attribute", "subscript", "binary_operator"}
_WRAPPABLE = {"identifier", "call", "attribute", "subscript"}
# The builtins real fixes most often wrap a value in, likeliest first; `next(x, None)` apart.
_WRAPPERS = ("len", "next", "list", "iter", "sorted", "int", "str", "abs", "tuple", "set")
# Names tried as the missing term of a changed argument (`k` -> `k - n`): the nearest few.
MAX_TERMS = 4
MAX_NAMES = 20
MAX_INSERTS = 60
MAX_COPIES = 40
MAX_COPY_CHARS = 100
_SENTINELS = {"None", "False", "True", "0", "1", "-1", '""', "''", "[]", "{}", "()"}
_COPYABLE = {"expression_statement", "return_statement"}
_BINDING = re.compile(r"\s*([\w\s,()\[\]]+?)\s*=(?!=)")
# Messages that name a variable the code needed and did not have.
_MISSING_NAME = re.compile(
    r"(?:name|local variable) '(\w+)' (?:is not defined|referenced before assignment)"
    r"|cannot access local variable '(\w+)'"
)


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


def _byte_start(source: str, site: Site) -> int:
    """The site's start as a byte offset (tree-sitter counts bytes, sites count characters)."""
    return len(source[: site.start_char].encode("utf-8"))


def _span_node(source: str, site: Site) -> Node | None:
    """The smallest node covering the site's span."""
    start = _byte_start(source, site)
    end = start + len(site.original_text.encode("utf-8"))
    return parse_tree(source).root_node.descendant_for_byte_range(start, end)


def _nodes_with_span(source: str, site: Site) -> list[Node]:
    """The nodes spanning exactly the site, innermost first."""
    start = _byte_start(source, site)
    end = start + len(site.original_text.encode("utf-8"))
    node = _span_node(source, site)
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


def _is_attribute_name(node: Node) -> bool:
    parent = node.parent
    return parent is not None and parent.type == "attribute" and (
        parent.child_by_field_name("attribute") == node
    )


def _identifier_fills(source: str, node: Node, original: str) -> list[str]:
    """Other names of the file, likeliest first: of the same sort (an attribute's name for an
    attribute, a variable for a variable), then inside the enclosing function, then nearest to
    the site. A wrong name is usually one used close by (`last.end` next to `current.start`)."""
    function = _enclosing_function(node.parent)
    root = node
    while root.parent is not None:
        root = root.parent
    row, attribute = node.start_point[0], _is_attribute_name(node)
    best: dict[str, tuple[int, int, int]] = {}
    stack = [root]
    while stack:
        current = stack.pop()
        stack.extend(current.children)
        if current.type != "identifier" or current.text is None:
            continue
        name = current.text.decode("utf-8")
        if name == original or keyword.iskeyword(name):
            continue
        inside = function is not None and (
            function.start_byte <= current.start_byte < function.end_byte
        )
        key = (_is_attribute_name(current) != attribute, not inside,
               abs(current.start_point[0] - row))  # fmt: skip
        if name not in best or key < best[name]:
            best[name] = key
    return sorted(best, key=lambda name: best[name])[:MAX_NAMES]


def _node_fills(nodes: list[Node], text: str) -> list[str]:
    types = {n.type for n in nodes}
    fills = []
    negation = next((n for n in nodes if n.type == "not_operator"), None)
    if negation is not None:
        argument = negation.child_by_field_name("argument")
        if argument is not None and argument.text is not None:
            fills.append(_unnegated(negation, argument))
    elif types & _NEGATABLE:
        fills.append(_negated(text, nodes[-1].type in _PRIMARIES))
    # `i + 1` -> `i`: an off-by-one is as often a term too many as a constant one off, and a
    # condition as often a clause too many (`a and b` -> `a`).
    binary = next((n for n in nodes if n.type in ("binary_operator", "boolean_operator")), None)
    if binary is not None:
        for side in ("left", "right"):
            operand = binary.child_by_field_name(side)
            if operand is not None and operand.text is not None:
                fills.append(operand.text.decode("utf-8"))
    if types & _SHIFTABLE:
        fills += [f"{text} + 1", f"{text} - 1"]
    return fills


def _widenings(source: str, nodes: list[Node], text: str) -> list[str]:
    fills = []
    binary = next((n for n in nodes if n.type == "binary_operator"), None)
    if binary is not None:
        left, right = binary.child_by_field_name("left"), binary.child_by_field_name("right")
        if left is not None and right is not None:
            raw, base = binary.text or b"", binary.start_byte
            between = raw[left.end_byte - base : right.start_byte - base]
            fills.append(((right.text or b"") + between + (left.text or b"")).decode("utf-8"))
    node = next((n for n in nodes if n.type in _WRAPPABLE), None)
    parent = node.parent if node is not None else None
    called = parent is not None and parent.type == "call" and (
        parent.child_by_field_name("function") == node)
    if node is None or called or _is_attribute_name(node):
        return fills
    fills += [f"{wrapper}({text})" for wrapper in _WRAPPERS] + [f"next({text}, None)"]
    if node.type in ("identifier", "attribute"):
        names = [n for n in _identifier_fills(source, node, text)
                 if n.isidentifier() and not hasattr(builtins, n)]
        fills += [f"{text} {op} {name}" for name in names[:MAX_TERMS] for op in ("-", "+")]
    return fills


def _line_fills(text: str) -> list[str]:
    head = _CONDITION_HEAD.match(text)
    if head is None:
        return []
    condition = head.group(2)
    if condition.startswith("not "):
        negated = condition[4:].strip()
        inner = negated[1:-1] if negated.startswith("(") and negated.endswith(")") else None
        negated = inner if inner is not None and parses(inner) else negated
    else:
        negated = _negated(condition, _DOTTED.fullmatch(condition) is not None)
    return [f"{head.group(1)} {negated}:"]


def _negated(text: str, primary: bool) -> str:
    """`not x.y`, `not f(x)`, but `not (a and b)`: parentheses only around an operator, where
    `not` would otherwise bind to less than the whole expression (or read ambiguously)."""
    return f"not {text}" if primary else f"not ({text})"


def _unnegated(negation: Node, argument: Node) -> str:
    """`not (a and b)` -> `a and b` where the expression stands alone (a condition, a returned
    or assigned value), so the fix reads as a person would write it; `(a and b)` elsewhere."""
    inner = argument.named_children[0] if argument.type == "parenthesized_expression" and len(
        argument.named_children) == 1 else None
    alone = negation.parent is not None and negation.parent.type in _STANDALONE
    chosen = inner if inner is not None and alone and inner.text is not None else argument
    return (chosen.text or b"").decode("utf-8")


def missing_names(failure: str) -> list[str]:
    """Variables a failure message says were not defined or not yet assigned."""
    return [a or b for a, b in _MISSING_NAME.findall(failure or "")]


def _enclosing_function(node: Node | None) -> Node | None:
    while node is not None and node.type != "function_definition":
        node = node.parent
    return node


def _assignments(function: Node) -> dict[str, list[str]]:
    """Names assigned in `function` (plain `name = value` and `name += value`) -> value texts."""
    found: dict[str, list[str]] = {}
    stack = [function]
    while stack:
        current = stack.pop()
        if current.type in ("assignment", "augmented_assignment"):
            left = current.child_by_field_name("left")
            right = current.child_by_field_name("right")
            if left is not None and left.type == "identifier" and left.text is not None:
                value = right.text.decode("utf-8") if right is not None and right.text else ""
                found.setdefault(left.text.decode("utf-8"), []).append(value)
        stack.extend(reversed(current.children))
    return found


def _insert_fills(source: str, site: Site, wanted: Collection[str] = ()) -> list[str]:
    """A missing statement: an assignment `a = b` from templates over the enclosing function's
    names, a statement copied from the function or the file, or a jump.

    Targets, best first: names a failure said were missing; sentinels (names only ever set to
    None, False, 0, [] ...: a flag or a "last seen" that something should have updated); names
    assigned once; the rest. Values: names on the site's line first, then the function's."""
    start = _byte_start(source, site)
    node = parse_tree(source).root_node.descendant_for_byte_range(start, start)
    function = _enclosing_function(node)
    if function is None:
        return []
    assigned = _assignments(function)

    def rank(name: str) -> int:
        if name in wanted:
            return 0
        if all(value in _SENTINELS for value in assigned[name]):
            return 1
        return 2 if len(assigned[name]) == 1 else 3

    targets = sorted(assigned, key=rank)
    line = source.splitlines()[site.line - 1] if site.line <= len(source.splitlines()) else ""
    names = _names(function)
    # Names the line binds first: after `key = ...`, the missing line often records `key`.
    bound = _BINDING.match(line)
    bound_names = re.findall(r"\w+", bound.group(1)) if bound else []
    local = [n for n in names if re.search(rf"\b{re.escape(n)}\b", line)]
    local = sorted(local, key=lambda n: n not in bound_names)
    values = list(dict.fromkeys(local + names))
    first = [f"{a} = {b}" for a in targets for b in local if a != b]
    rest = [f"{a} = {b}" for a in targets for b in values if a != b and b not in local]
    copies = _statement_copies(source, function, site, wanted)
    needed = [c for c in copies if any(re.match(rf"{re.escape(w)}\b", c) for w in wanted)]
    templates = (first + rest)[:MAX_INSERTS]
    return needed + templates[:8] + copies + templates[8:] + [
        "break", "continue", "return", "return None",
    ]  # fmt: skip


def _module_names(root: Node) -> set[str]:
    """Names defined at module level: imports, assignments, functions and classes."""
    names: set[str] = set()
    for child in root.children:
        node = child.child_by_field_name("definition") if child.type == "decorated_definition" \
            else child  # fmt: skip
        if node is None:
            continue
        if node.type in ("function_definition", "class_definition"):
            name = node.child_by_field_name("name")
            if name is not None and name.text is not None:
                names.add(name.text.decode("utf-8"))
        elif node.type in ("import_statement", "import_from_statement", "expression_statement"):
            names.update(_names(node))
    return names


def _statement_copies(
    source: str, function: Node, site: Site, wanted: Collection[str]
) -> list[str]:
    """Simple statements (assignments, calls, yields, returns) seen elsewhere in the file whose
    names all exist where the site is: code repeats itself, and a deleted line often has a twin
    in a sibling method. Nearest first."""
    root = function
    while root.parent is not None:
        root = root.parent
    visible = set(_names(function)) | _module_names(root) | set(dir(builtins)) | set(wanted)
    row = site.line - 1
    found: dict[str, int] = {}
    stack = [root]
    while stack:
        current = stack.pop()
        if current.type in _COPYABLE and current.text is not None:
            text = current.text.decode("utf-8")
            if "\n" not in text and len(text) <= MAX_COPY_CHARS:
                bases = _root_names(current)
                if bases and bases <= visible:
                    distance = abs(current.start_point.row - row)
                    found[text] = min(found.get(text, distance), distance)
            continue
        stack.extend(current.children)
    current_lines = {ln.strip() for ln in source.splitlines()[max(0, row - 1) : row + 2]}
    ordered = sorted((t for t in found if t not in current_lines), key=lambda t: (found[t], t))
    return ordered[:MAX_COPIES]


def _root_names(node: Node) -> set[str]:
    """Identifiers a statement reads or binds, without attribute names and keyword names."""
    names: set[str] = set()
    stack = [node]
    while stack:
        current = stack.pop()
        if current.type == "attribute":
            stack.append(current.child_by_field_name("object"))
            continue
        if current.type == "keyword_argument":
            stack.append(current.child_by_field_name("value"))
            continue
        if current.type == "identifier" and current.text is not None:
            names.add(current.text.decode("utf-8"))
        stack.extend(c for c in current.children if c is not None)
    return {n for n in names if not keyword.iskeyword(n)}


def _call_swaps(node: Node, base: int, text: str) -> list[str]:
    """`text` (the source of the span starting at byte `base`) with two adjacent positional
    arguments of one of its calls swapped."""
    fills = []
    stack = [node]
    while stack:
        current = stack.pop()
        stack.extend(current.children)
        if current.type != "argument_list":
            continue
        args = [a for a in current.named_children if a.type not in ("keyword_argument",
                "list_splat", "dictionary_splat", "comment")]  # fmt: skip
        for a, b in zip(args, args[1:], strict=False):
            sa, sb = a.start_byte - base, b.start_byte - base
            ea, eb = a.end_byte - base, b.end_byte - base
            raw = text.encode("utf-8")
            if sa < 0 or eb > len(raw):
                continue
            swapped = raw[:sa] + raw[sb:eb] + raw[ea:sb] + raw[sa:ea] + raw[eb:]
            fills.append(swapped.decode("utf-8"))
    return fills


def _return_fills(source: str, site: Site, text: str) -> list[str]:
    """`return X` -> `return name` for the function's parameters and assigned names."""
    if not re.match(r"return\b", text):
        return []
    function = _enclosing_function(_span_node(source, site))
    if function is None:
        return []
    params = function.child_by_field_name("parameters")
    names = [n for n in _names(params) if n not in ("self", "cls")] if params else []
    names += list(_assignments(function))
    return [f"return {n}" for n in dict.fromkeys(names)][:MAX_NAMES]


def substitution_fills(source: str, site: Site) -> list[str]:
    """One-token substitutions: operators, constants, identifiers (the mutation baseline)."""
    text = site.original_text
    if site.kind == "operator":
        fills = _operator_fills(text)
    elif site.kind == "token":
        nodes = _nodes_with_span(source, site)
        fills = _constant_fills(text)
        if any(n.type == "identifier" for n in nodes):
            fills += _identifier_fills(source, nodes[0], text)
    else:
        fills = []
    return dedupe_fills({site.path: source}, dict.fromkeys(fills), lambda f: site, str)


def edit_fills(source: str, site: Site, wanted: Collection[str] = ()) -> list[str]:
    """Structural edits of the site; `wanted` are names a failure said were missing."""
    text = site.original_text
    if site.kind == "delete":
        # A statement alone in its block leaves `pass` behind.
        indent = text[: len(text) - len(text.lstrip(" \t"))]
        fills = ["", f"{indent}pass\n"]
    elif site.kind == "operator":
        fills = []
    elif site.kind == "line":
        fills = _line_fills(text) + _return_fills(source, site, text)
        node = _span_node(source, site)
        if node is not None:
            fills += _call_swaps(node, _byte_start(source, site), text)
    elif site.kind in ("token", "node"):
        nodes = _nodes_with_span(source, site)
        fills = _node_fills(nodes, text)
        if site.kind == "node" and nodes:
            fills += _call_swaps(nodes[-1], _byte_start(source, site), text)
    else:
        fills = _insert_fills(source, site, wanted)
    valid = dedupe_fills({site.path: source}, dict.fromkeys(fills), lambda f: site, str)
    return valid[:1] if site.kind == "delete" else valid


def widen_fills(source: str, site: Site) -> list[str]:
    """The real-bug shapes of an expression site (see the module docstring)."""
    if site.kind not in ("token", "node"):
        return []
    fills = _widenings(source, _nodes_with_span(source, site), site.original_text)
    return dedupe_fills({site.path: source}, dict.fromkeys(fills), lambda f: site, str)
