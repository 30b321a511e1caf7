"""Single-site bug injection with tree-sitter: each operator proposes byte-range replacements
of one kind; only mutants that still compile and change the module's AST are proposed."""

from __future__ import annotations

import ast
import hashlib
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import tree_sitter_python as tspy
from tree_sitter import Language, Node, Parser

_PARSER = Parser(Language(tspy.language()))

KINDS = (
    "comparison",
    "arithmetic",
    "boolean",
    "off_by_one",
    "wrong_name",
    "swapped_args",
    "negated_condition",
    "deleted_statement",
    "wrong_return",
)

_COMPARISON = {
    "<": "<=",
    "<=": "<",
    ">": ">=",
    ">=": ">",
    "==": "!=",
    "!=": "==",
    "in": "not in",
    "not in": "in",
    "is": "is not",
    "is not": "is",
}
_ARITHMETIC = {
    "+": "-",
    "-": "+",
    "*": "//",
    "/": "*",
    "//": "*",
    "%": "//",
    "**": "*",
    "+=": "-=",
    "-=": "+=",
    "*=": "//=",
    "//=": "*=",
}
_BOOLEAN = {"and": "or", "or": "and"}
# Parents under which an identifier or attribute is read, never bound.
_READ_PARENTS = {
    "argument_list",
    "binary_operator",
    "comparison_operator",
    "return_statement",
    "boolean_operator",
    "not_operator",
    "unary_operator",
    "subscript",
}
_POSITIONAL_SKIP = {"keyword_argument", "list_splat", "dictionary_splat", "generator_expression"}


@dataclass(frozen=True)
class Mutation:
    """Replace source bytes [start, end) with `buggy`. Offsets are byte offsets into the file."""

    kind: str
    start: int
    end: int
    original: str
    buggy: str

    def apply(self, source: bytes) -> bytes:
        return source[: self.start] + self.buggy.encode() + source[self.end :]

    @property
    def key(self) -> str:
        return hashlib.sha256(f"{self.start}:{self.end}:{self.buggy}".encode()).hexdigest()[:8]


def _text(node: Node) -> str:
    return node.text.decode()


def _walk(node: Node) -> Iterator[Node]:
    stack = [node]
    while stack:
        current = stack.pop()
        yield current
        stack.extend(reversed(current.children))


def _enclosing_function(node: Node) -> Node | None:
    current = node.parent
    while current is not None and current.type != "function_definition":
        current = current.parent
    return current


def _operator_swaps(root: Node, parent: str, table: dict[str, str], kind: str) -> Iterator:
    for node in _walk(root):
        if node.type != parent or _enclosing_function(node) is None:
            continue
        for child in node.children:
            if not child.is_named and _text(child) in table:
                yield Mutation(kind, child.start_byte, child.end_byte, _text(child),
                               table[_text(child)])


def _comparison(root: Node, rng: random.Random) -> Iterator[Mutation]:
    yield from _operator_swaps(root, "comparison_operator", _COMPARISON, "comparison")


def _arithmetic(root: Node, rng: random.Random) -> Iterator[Mutation]:
    yield from _operator_swaps(root, "binary_operator", _ARITHMETIC, "arithmetic")
    yield from _operator_swaps(root, "augmented_assignment", _ARITHMETIC, "arithmetic")


def _boolean(root: Node, rng: random.Random) -> Iterator[Mutation]:
    yield from _operator_swaps(root, "boolean_operator", _BOOLEAN, "boolean")


def _off_by_one(root: Node, rng: random.Random) -> Iterator[Mutation]:
    for node in _walk(root):
        text = _text(node) if node.type == "integer" else ""
        if text.isdigit() and int(text) < 1000 and _enclosing_function(node) is not None:
            value = int(text)
            new = value + 1 if value == 0 or rng.random() < 0.5 else value - 1
            yield Mutation("off_by_one", node.start_byte, node.end_byte, text, str(new))


def _local_names(function: Node) -> list[str]:
    """Parameters and names assigned in the function body (including nested loops/withs)."""
    names: list[str] = []
    params = function.child_by_field_name("parameters")
    for node in _walk(params) if params is not None else ():
        if node.type == "identifier" and node.parent is not None and node.parent.type in {
            "parameters", "default_parameter", "typed_parameter", "typed_default_parameter",
            "list_splat_pattern", "dictionary_splat_pattern",
        }:
            names.append(_text(node))
    body = function.child_by_field_name("body")
    for node in _walk(body) if body is not None else ():
        if node.type in {"assignment", "augmented_assignment", "for_statement"}:
            target = node.child_by_field_name("left")
            if target is not None and target.type == "identifier":
                names.append(_text(target))
    return sorted(set(names) - {"self", "cls"})


def _self_attributes(function: Node) -> list[str]:
    klass = function.parent
    while klass is not None and klass.type != "class_definition":
        klass = klass.parent
    if klass is None:
        return []
    found = {
        _text(n.child_by_field_name("attribute"))
        for n in _walk(klass)
        if n.type == "attribute" and _text(n.child_by_field_name("object")) == "self"
    }
    return sorted(found)


def _wrong_name(root: Node, rng: random.Random) -> Iterator[Mutation]:
    for node in _walk(root):
        if node.parent is None or node.parent.type not in _READ_PARENTS:
            continue
        function = _enclosing_function(node)
        if function is None:
            continue
        if node.type == "identifier":
            target, pool = node, _local_names(function)
        elif node.type == "attribute" and _text(node.child_by_field_name("object")) == "self":
            target, pool = node.child_by_field_name("attribute"), _self_attributes(function)
        else:
            continue
        others = [name for name in pool if name != _text(target)]
        if _text(target) in pool and others:
            yield Mutation("wrong_name", target.start_byte, target.end_byte, _text(target),
                           rng.choice(others))


def _swapped_args(root: Node, rng: random.Random) -> Iterator[Mutation]:
    for node in _walk(root):
        if node.type != "call" or _enclosing_function(node) is None:
            continue
        args = node.child_by_field_name("arguments")
        if args is None or args.type != "argument_list":
            continue
        positional: list[Node] = []
        for child in args.named_children:
            if child.type in _POSITIONAL_SKIP or child.type == "comment":
                break
            positional.append(child)
        pairs = [(a, b) for a, b in zip(positional, positional[1:], strict=False)
                 if _text(a) != _text(b)]
        if not pairs:
            continue
        first, second = rng.choice(pairs)
        span = args.text[first.start_byte - args.start_byte : second.end_byte - args.start_byte]
        between = span[first.end_byte - first.start_byte : second.start_byte - first.start_byte]
        yield Mutation("swapped_args", first.start_byte, second.end_byte, span.decode(),
                       (second.text + between + first.text).decode())


def _negated_condition(root: Node, rng: random.Random) -> Iterator[Mutation]:
    for node in _walk(root):
        if node.type not in {"if_statement", "elif_clause", "while_statement"}:
            continue
        cond = node.child_by_field_name("condition")
        if cond is None or _enclosing_function(node) is None:
            continue
        if cond.type == "not_operator":
            arg = cond.child_by_field_name("argument")
            new = _text(arg) if arg is not None else ""
        else:
            new = f"not ({_text(cond)})" if cond.type != "identifier" else f"not {_text(cond)}"
        if new:
            yield Mutation("negated_condition", cond.start_byte, cond.end_byte, _text(cond), new)


def _line_span(source: bytes, node: Node) -> tuple[int, int] | None:
    """Whole lines holding `node`, if nothing else shares them."""
    start = source.rfind(b"\n", 0, node.start_byte) + 1
    end = source.find(b"\n", node.end_byte)
    end = len(source) if end < 0 else end + 1
    if source[start : node.start_byte].strip() or source[node.end_byte : end].strip():
        return None
    return start, end


def _deleted_statement(root: Node, rng: random.Random) -> Iterator[Mutation]:
    source = root.text
    for node in _walk(root):
        if node.type not in {"expression_statement", "raise_statement"}:
            continue
        block = node.parent
        if block is None or block.type != "block" or _enclosing_function(node) is None:
            continue
        if len(block.named_children) < 2 or (node.named_children and
                                             node.named_children[0].type == "string"):
            continue
        span = _line_span(source, node)
        if span is not None:
            yield Mutation("deleted_statement", span[0], span[1],
                           source[span[0] : span[1]].decode(), "")


def _wrong_return(root: Node, rng: random.Random) -> Iterator[Mutation]:
    flips = {"True": "False", "False": "True"}
    for node in _walk(root):
        if node.type != "return_statement" or not node.named_children:
            continue
        value = node.named_children[0]
        text = _text(value)
        if text == "None":
            continue
        new = flips.get(text, "None")
        yield Mutation("wrong_return", value.start_byte, value.end_byte, text, new)


OPERATORS: dict[str, Callable[[Node, random.Random], Iterator[Mutation]]] = {
    "comparison": _comparison,
    "arithmetic": _arithmetic,
    "boolean": _boolean,
    "off_by_one": _off_by_one,
    "wrong_name": _wrong_name,
    "swapped_args": _swapped_args,
    "negated_condition": _negated_condition,
    "deleted_statement": _deleted_statement,
    "wrong_return": _wrong_return,
}


def _ast_dump(source: bytes) -> str | None:
    try:
        tree = ast.parse(source)
        compile(tree, "<mutant>", "exec")
    except (SyntaxError, ValueError):
        return None
    return ast.dump(tree)


def candidates(source: bytes, kind: str, seed: int = 0) -> list[Mutation]:
    """Every site where operator `kind` applies, in file order; not yet checked to compile."""
    root = _PARSER.parse(source).root_node
    return sorted(OPERATORS[kind](root, random.Random(f"{seed}:{kind}")), key=lambda m: m.start)


class Validator:
    """Accepts a mutant only if it compiles and changes the AST (a whitespace-only change is no
    bug) and differs from every mutant accepted before (no duplicate modules)."""

    def __init__(self, source: bytes) -> None:
        self.source = source
        self.seen = {_ast_dump(source)}

    def accept(self, mutation: Mutation) -> bool:
        dump = _ast_dump(mutation.apply(self.source))
        if dump is None or dump in self.seen:
            return False
        self.seen.add(dump)
        return True


def same_code(a: bytes | str, b: bytes | str) -> bool:
    """Equal after normalisation: same AST (formatting and comments ignored)."""
    dump_a, dump_b = _ast_dump(a), _ast_dump(b)
    return dump_a is not None and dump_a == dump_b


def enclosing_function(source: bytes, offset: int) -> tuple[str, int, int] | None:
    """Name, first and last line (1-based) of the innermost function around byte `offset`."""
    node = _PARSER.parse(source).root_node.descendant_for_byte_range(offset, offset)
    function = node if node is not None and node.type == "function_definition" else (
        _enclosing_function(node) if node is not None else None
    )
    if function is None:
        return None
    name = function.child_by_field_name("name")
    return (_text(name) if name is not None else "", function.start_point[0] + 1,
            function.end_point[0] + 1)
