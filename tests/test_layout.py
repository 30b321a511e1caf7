"""The shape of the code, read from its imports: data flows one way (agent -> runner -> sandboxes;
agent -> model), no package imports the command line, and no two modules import each other."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# What each package may import of ours (besides itself).
ALLOWED = {"model": set(), "sandboxes": set(), "runner": {"sandboxes"},
           "agent": {"model", "runner", "sandboxes"}}  # fmt: skip


def _modules() -> dict[str, Path]:
    found = {}
    for package in ALLOWED:
        for path in (ROOT / package).rglob("*.py"):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found["greenpatch." + ".".join(parts)] = path
    return found


def _graph() -> dict[str, set[str]]:
    """module -> the modules of ours it imports (`from pkg import sub` names the submodule)."""
    modules = _modules()
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("greenpatch."):
                subs = {f"{node.module}.{a.name}" for a in node.names} & modules.keys()
                graph[name] |= subs or ({node.module} & modules.keys())
            elif isinstance(node, ast.Import):
                graph[name] |= {a.name for a in node.names} & modules.keys()
        graph[name].discard(name)
    return graph


def _package(module: str) -> str:
    return module.split(".")[1]


def test_data_flows_one_way() -> None:
    graph = _graph()
    # The reading itself: imports of each form are seen.
    assert "greenpatch.runner.pool" in graph["greenpatch.agent.pipeline.harness"]
    assert "greenpatch.sandboxes.safegit" in graph["greenpatch.sandboxes.worktree"]
    against = [(m, t) for m, targets in graph.items() for t in targets
               if _package(t) != _package(m) and _package(t) not in ALLOWED[_package(m)]]
    assert against == []


def test_no_package_imports_the_command_line() -> None:
    cli = "greenpatch.agent.commands"
    main = "greenpatch.agent.__main__"
    importers = [(m, t) for m, targets in _graph().items() for t in targets
                 if t.startswith(cli) and not m.startswith(cli) and m != main]
    assert importers == []


def test_no_import_cycles() -> None:
    graph = _graph()
    cycles, seen, path = [], set(), []

    def visit(module: str) -> None:
        if module in path:
            cycles.append(path[path.index(module):] + [module])
            return
        if module in seen:
            return
        seen.add(module)
        path.append(module)
        for target in sorted(graph[module]):
            visit(target)
        path.pop()

    for module in sorted(graph):
        visit(module)
    assert cycles == []
