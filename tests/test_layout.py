"""The shape of `server/`: the imports run one way (no module imports, even for types only, one
that imports it back), and modules and functions stay small enough to read."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.servers import ROOT

SERVER = ROOT / "server"
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path, modules: set[str]) -> set[str]:
    """The modules of `server` this file imports, at any depth (inside functions and
    TYPE_CHECKING blocks too): `from server.x import y` counts as server.x.y when that is a module."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names}
    return {name for name in found if name in modules}


def graph() -> dict[str, set[str]]:
    paths = {module_name(path): path for path in SERVER.rglob("*.py")}
    modules = set(paths)
    # A package's __init__ is not an import of its modules' importers: `from server.http import auth`
    # names server.http and server.http.auth; only the module is an edge.
    return {name: {m for m in imports_of(path, modules) if not paths[m].name == "__init__.py"} - {name}
            for name, path in paths.items()}


def cycle_in(edges: dict[str, set[str]]) -> list[str]:
    """One import cycle, as the modules around it, or [] when there is none (depth-first search)."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str]:
        state[node] = 1
        path.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt):], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        path.pop()
        state[node] = 2
        return []

    for start in sorted(edges):
        if start not in state and (found := visit(start)):
            return found
    return []


def test_the_cycle_finder_finds_one():
    assert cycle_in({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert cycle_in({"a": {"b"}, "b": {"c"}, "c": set()}) == []


def test_server_imports_run_one_way():
    edges = graph()
    assert "server.http.state" in edges["server.ingest.routes"]  # the graph sees the imports at all
    assert cycle_in(edges) == [], "import cycle: " + " -> ".join(cycle_in(edges))


def test_the_plumbing_imports_no_room_above_it():
    """server/http/ and server/store/ are used by every room and use none of them."""
    above = ("server.ingest", "server.query", "server.reports", "server.data", "server.process", "server.cli")
    for name, imported in graph().items():
        if name.startswith(("server.http", "server.store")):
            assert not [m for m in imported if m.startswith(above)], name


def test_modules_and_functions_stay_small():
    for path in SERVER.rglob("*.py"):
        text = path.read_text()
        assert text.count("\n") <= MAX_MODULE_LINES, f"{path.relative_to(ROOT)}: over {MAX_MODULE_LINES} lines"
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = (node.end_lineno or node.lineno) - node.lineno + 1
                assert length <= MAX_FUNCTION_LINES, f"{path.relative_to(ROOT)}:{node.name} is {length} lines"
