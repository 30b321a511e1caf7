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

# The kinds the agent's mutation operators invert (tasks of 2026-11-22); their order and
# behaviour are frozen, as task ids hash the mutants they propose.
ORIGINAL_KINDS = (
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
# Simple-bug patterns measured in real projects (ManySStuBs4J, PySStuBs) that no single inverse
# operator undoes, plus a loop that never ends (its tests hang).
REAL_BUG_KINDS = (
    "more_specific_condition",
    "less_specific_condition",
    "missing_wrapper_call",
    "changed_argument",
    "swapped_concatenation",
    "missing_loop_statement",
    "missing_loop_progress",
    "wrong_attribute",
)
KINDS = ORIGINAL_KINDS + REAL_BUG_KINDS

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


def _positional(args: Node) -> list[Node]:
    """Positional arguments up to the first keyword, splat or comment."""
    found: list[Node] = []
    for child in args.named_children:
        if child.type in _POSITIONAL_SKIP or child.type == "comment":
            break
        found.append(child)
    return found


def _swapped_args(root: Node, rng: random.Random) -> Iterator[Mutation]:
    for node in _walk(root):
        if node.type != "call" or _enclosing_function(node) is None:
            continue
        args = node.child_by_field_name("arguments")
        if args is None or args.type != "argument_list":
            continue
        positional = _positional(args)
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

# Expressions that keep their meaning wherever an expression goes: no parentheses needed.
_ATOMS = {
    "identifier", "attribute", "subscript", "call", "string", "concatenated_string", "integer",
    "float", "true", "false", "none", "list", "tuple", "dictionary", "set",
    "parenthesized_expression", "list_comprehension", "dictionary_comprehension",
    "set_comprehension",
}
# Operands a condition can gain from elsewhere in its function: one test, not a compound.
_CONDITION_PARTS = {"comparison_operator", "identifier", "attribute", "call", "not_operator",
                    "subscript"}
# Builtins that wrap a value; dropping one leaves code that still runs on many inputs.
_WRAPPERS = {
    "abs", "all", "any", "bool", "dict", "float", "frozenset", "int", "iter", "len", "list",
    "max", "min", "next", "repr", "reversed", "round", "set", "sorted", "str", "sum", "tuple",
}
_SEQUENCE_LITERALS = {"string", "concatenated_string", "list", "tuple"}
_LOOPS = {"for_statement", "while_statement"}


def _parenthesized(node: Node) -> str:
    return _text(node) if node.type in _ATOMS else f"({_text(node)})"


def _operator(node: Node) -> str:
    """The operator token of a binary or boolean operator node."""
    found = node.child_by_field_name("operator")
    return _text(found) if found is not None else ""


def _operands(node: Node) -> list[Node]:
    """The leaf tests of a condition: `a and (b or c)` gives a and (b or c)."""
    if node.type == "boolean_operator":
        return [leaf for side in ("left", "right")
                for leaf in _operands(node.child_by_field_name(side))]
    return [node]


def _names(node: Node) -> set[str]:
    return {_text(n) for n in _walk(node) if n.type == "identifier"}


def _conditions(function: Node) -> list[Node]:
    return [n.child_by_field_name("condition") for n in _walk(function)
            if n.type in {"if_statement", "elif_clause", "while_statement"}
            and n.child_by_field_name("condition") is not None]


def _dropped_operands(root: Node, op: str, kind: str) -> Iterator[Mutation]:
    """`a <op> b` becomes `a`, or `b`: an operand dropped from a boolean expression."""
    for node in _walk(root):
        if node.type != "boolean_operator" or _operator(node) != op:
            continue
        if _enclosing_function(node) is None:
            continue
        for side in ("left", "right"):
            kept = node.child_by_field_name(side)
            yield Mutation(kind, node.start_byte, node.end_byte, _text(node), _text(kept))


def _added_operands(root: Node, op: str, kind: str, rng: random.Random) -> Iterator[Mutation]:
    """`if c:` becomes `if c <op> d:`, d a test taken from another condition of the function,
    so the added test reads like the code around it."""
    for node in _walk(root):
        if node.type != "function_definition":
            continue
        conditions = _conditions(node)
        parts = {_text(p): p for c in conditions for p in _operands(c)
                 if p.type in _CONDITION_PARTS}
        for condition in conditions:
            if _enclosing_function(condition) != node:
                continue  # a nested function's conditions are its own
            own = _text(condition)
            # The added test must read a name the condition does not (no `n == 0 and n == 1`).
            pool = sorted(text for text, part in parts.items()
                          if text not in own and _names(part) - _names(condition))
            if not pool:
                continue
            mixed = condition.type == "boolean_operator" and _operator(condition) != op
            left = f"({own})" if mixed or condition.type not in _ATOMS | {
                "boolean_operator", "comparison_operator", "not_operator"} else own
            yield Mutation(kind, condition.start_byte, condition.end_byte, own,
                           f"{left} {op} {rng.choice(pool)}")


def _more_specific_condition(root: Node, rng: random.Random) -> Iterator[Mutation]:
    """The bug narrows a condition: a disjunct dropped or a conjunct added (its fix is what
    ManySStuBs4J calls a less specific if)."""
    yield from _dropped_operands(root, "or", "more_specific_condition")
    yield from _added_operands(root, "and", "more_specific_condition", rng)


def _less_specific_condition(root: Node, rng: random.Random) -> Iterator[Mutation]:
    """The bug widens a condition: a conjunct dropped or a disjunct added (the fix: a more
    specific if)."""
    yield from _dropped_operands(root, "and", "less_specific_condition")
    yield from _added_operands(root, "or", "less_specific_condition", rng)


def _missing_wrapper_call(root: Node, rng: random.Random) -> Iterator[Mutation]:
    """`max(a, b)` becomes `b`, `len(x)` becomes `x`: a builtin call replaced by an argument."""
    for node in _walk(root):
        if node.type != "call" or _enclosing_function(node) is None:
            continue
        name, args = node.child_by_field_name("function"), node.child_by_field_name("arguments")
        if name.type != "identifier" or _text(name) not in _WRAPPERS:
            continue
        if args.type != "argument_list":  # `sum(x for x in xs)`: a generator, no argument list
            continue
        for arg in _positional(args):
            yield Mutation("missing_wrapper_call", node.start_byte, node.end_byte, _text(node),
                           _parenthesized(arg))


def _changed_argument(root: Node, rng: random.Random) -> Iterator[Mutation]:
    """`f(k - n)` becomes `f(k)`: an argument computed by arithmetic loses one operand (the
    one that is not a bare number, so the argument keeps a variable)."""
    for node in _walk(root):
        if node.type != "argument_list" or _enclosing_function(node) is None:
            continue
        values = [c.child_by_field_name("value") if c.type == "keyword_argument" else c
                  for c in node.named_children]
        for value in values:
            if value is None or value.type != "binary_operator":
                continue
            if _operator(value) not in {"+", "-", "*", "/", "//", "%"}:
                continue
            left, right = value.child_by_field_name("left"), value.child_by_field_name("right")
            if {left.type, right.type} & _SEQUENCE_LITERALS:
                continue  # `"%s" % x` and `(a,) + rest` format or join, they do not compute
            kept = right if left.type in {"integer", "float"} else left
            if kept.type not in {"integer", "float"}:
                yield Mutation("changed_argument", value.start_byte, value.end_byte,
                               _text(value), _text(kept))


def _concatenation(node: Node) -> bool:
    """A `+` that plausibly joins strings or sequences: a literal one somewhere in its chain."""
    if node.type != "binary_operator" or _operator(node) != "+":
        return False
    sides = (node.child_by_field_name("left"), node.child_by_field_name("right"))
    return any(s.type in _SEQUENCE_LITERALS or _concatenation(s) for s in sides)


def _swapped_concatenation(root: Node, rng: random.Random) -> Iterator[Mutation]:
    """`prefix + "x"` becomes `"x" + prefix`."""
    source = root.text
    for node in _walk(root):
        if not _concatenation(node) or _enclosing_function(node) is None:
            continue
        left, right = node.child_by_field_name("left"), node.child_by_field_name("right")
        if _text(left) == _text(right):
            continue
        between = source[left.end_byte : right.start_byte].decode()
        yield Mutation("swapped_concatenation", node.start_byte, node.end_byte, _text(node),
                       _text(right) + between + _text(left))


def _statements(block: Node) -> list[Node]:
    return [c for c in block.named_children if c.type != "comment"]


def _deletion(source: bytes, node: Node, kind: str) -> Mutation | None:
    """The whole lines of `node` removed; a block's only statement becomes `pass`."""
    span = _line_span(source, node)
    if span is None:
        return None
    block = node.parent
    indent = source[span[0] : node.start_byte].decode()
    alone = block is not None and len(_statements(block)) < 2
    return Mutation(kind, span[0], span[1], source[span[0] : span[1]].decode(),
                    f"{indent}pass\n" if alone else "")


def _bound_names(statement: Node) -> set[str]:
    """Names and attributes a statement moves forward: assignment targets and the receivers of
    its method calls (`i += 1`, `node = node.next`, `stack.pop()`)."""
    names: set[str] = set()
    for node in _walk(statement):
        if node.type in {"assignment", "augmented_assignment"}:
            target = node.child_by_field_name("left")
            names |= {_text(n) for n in _walk(target) if n.type in {"identifier", "attribute"}}
        elif node.type == "call":
            function = node.child_by_field_name("function")
            if function.type == "attribute":
                names.add(_text(function.child_by_field_name("object")))
    return names


def _progress(loop: Node) -> list[Node]:
    """The statements of a while loop's body (at any depth) that change what its condition
    reads: without them the loop never ends."""
    condition = loop.child_by_field_name("condition")
    read = {_text(n) for n in _walk(condition) if n.type in {"identifier", "attribute"}}
    body = loop.child_by_field_name("body")
    found = []
    for node in _walk(body):
        if node.type == "function_definition" or node.parent is None:
            continue
        if node.parent.type == "block" and node.type == "expression_statement" and (
                _bound_names(node) & read):
            found.append(node)
    return found


def _missing_loop_statement(root: Node, rng: random.Random) -> Iterator[Mutation]:
    """A statement of a loop body left out (any statement but the one that makes a while loop
    progress: that is `missing_loop_progress`)."""
    source = root.text
    for loop in _walk(root):
        if loop.type not in _LOOPS or _enclosing_function(loop) is None:
            continue
        body = loop.child_by_field_name("body")
        progress = _progress(loop) if loop.type == "while_statement" else []
        statements = _statements(body)
        for node in statements if len(statements) >= 2 else ():
            if node in progress or node.type == "pass_statement" or (
                    node.named_children and node.named_children[0].type == "string"):
                continue
            mutation = _deletion(source, node, "missing_loop_statement")
            if mutation is not None:
                yield mutation


def _missing_loop_progress(root: Node, rng: random.Random) -> Iterator[Mutation]:
    """`i += 1` left out of `while i < n:`: the loop never ends and a test hangs."""
    source = root.text
    for loop in _walk(root):
        if loop.type != "while_statement" or _enclosing_function(loop) is None:
            continue
        for node in _progress(loop):
            mutation = _deletion(source, node, "missing_loop_progress")
            if mutation is not None:
                yield mutation


def _receivers(root: Node) -> dict[str, set[str]]:
    """Attribute names read or written on each receiver (other than self/cls) in the module."""
    found: dict[str, set[str]] = {}
    for node in _walk(root):
        if node.type == "attribute":
            receiver = _text(node.child_by_field_name("object"))
            found.setdefault(receiver, set()).add(_text(node.child_by_field_name("attribute")))
    return found


def _wrong_attribute(root: Node, rng: random.Random) -> Iterator[Mutation]:
    """`node.left` becomes `node.right`: another attribute the module uses on that receiver
    (self's attributes are `wrong_name`'s)."""
    pools = _receivers(root)
    for node in _walk(root):
        if node.type != "attribute" or _enclosing_function(node) is None:
            continue
        receiver = _text(node.child_by_field_name("object"))
        name = node.child_by_field_name("attribute")
        others = sorted(pools[receiver] - {_text(name)})
        if receiver not in {"self", "cls"} and others:
            yield Mutation("wrong_attribute", name.start_byte, name.end_byte, _text(name),
                           rng.choice(others))


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
    "more_specific_condition": _more_specific_condition,
    "less_specific_condition": _less_specific_condition,
    "missing_wrapper_call": _missing_wrapper_call,
    "changed_argument": _changed_argument,
    "swapped_concatenation": _swapped_concatenation,
    "missing_loop_statement": _missing_loop_statement,
    "missing_loop_progress": _missing_loop_progress,
    "wrong_attribute": _wrong_attribute,
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
