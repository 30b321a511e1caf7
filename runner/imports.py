"""Which project files a module imports, directly or transitively (static, from the source).

Coverage only sees lines run inside a test; a test that merely imports a module (reads a constant,
subclasses a class) executes none of its lines. Selection adds this import closure so that a
module-level change reaches every test that imports the module.
"""

from __future__ import annotations

import ast
from collections.abc import Mapping
from pathlib import PurePosixPath


def module_index(paths: list[str]) -> dict[str, str]:
    """Dotted module name -> relpath, for every Python file, under the root and under src/."""
    index: dict[str, str] = {}
    for path in paths:
        if not path.endswith(".py"):
            continue
        parts = list(PurePosixPath(path).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        for start in (0, 1) if parts and parts[0] == "src" else (0,):
            name = ".".join(parts[start:])
            if name:
                index.setdefault(name, path)
    return index


def _package_of(path: str, index: Mapping[str, str]) -> str:
    names = [name for name, p in index.items() if p == path]
    if not names:
        return ""
    name = min(names, key=len)  # under src/ layouts the import name is the one without "src."
    return name if path.endswith("__init__.py") else name.rpartition(".")[0]


def direct_imports(path: str, source: str, index: Mapping[str, str]) -> set[str]:
    """Project files `path` imports (each package's `__init__` along a dotted path included)."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return set()
    package = _package_of(path, index)
    found: set[str] = set()

    def add(dotted: str) -> None:
        parts = dotted.split(".")
        for i in range(1, len(parts) + 1):
            hit = index.get(".".join(parts[:i]))
            if hit:
                found.add(hit)

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                add(alias.name)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".") if package else []
                base = base[: len(base) - (node.level - 1)] if node.level > 1 else base
                module = ".".join([*base, *([node.module] if node.module else [])])
            else:
                module = node.module or ""
            if module:
                add(module)
            for alias in node.names:
                add(f"{module}.{alias.name}" if module else alias.name)
    found.discard(path)
    return found


def import_graph(sources: Mapping[str, str]) -> dict[str, set[str]]:
    """relpath -> project files it imports directly, for every Python file in `sources`."""
    index = module_index(list(sources))
    return {path: direct_imports(path, text, index) for path, text in sources.items()}


def closure(graph: Mapping[str, set[str]], start: str) -> set[str]:
    """Every project file reachable from `start` by imports (`start` itself included)."""
    seen = {start}
    stack = [start]
    while stack:
        for dep in graph.get(stack.pop(), ()):
            if dep not in seen:
                seen.add(dep)
                stack.append(dep)
    return seen
