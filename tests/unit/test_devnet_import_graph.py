"""The devnet's import graph, built from the source (every import, ``TYPE_CHECKING`` ones and
imports inside functions included): no cycle among the devnet's modules, and the core never
imports the devnet."""
from __future__ import annotations

import ast
from pathlib import Path
from typing import Dict, List, Optional, Set

import golem_sync

ROOT = Path(golem_sync.__file__).parent
DEVNET = "golem_sync.devnet"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> Dict[str, Path]:
    return {_module_name(p): p for p in ROOT.rglob("*.py")}


def _resolve(importer: str, is_package: bool, level: int, module: Optional[str]) -> str:
    if not level:
        return module or ""
    base = importer.split(".")
    base = base if is_package else base[:-1]
    base = base[: len(base) - (level - 1)]
    return ".".join(base + ([module] if module else []))


def import_graph() -> Dict[str, Set[str]]:
    modules = _modules()
    graph: Dict[str, Set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        is_package = path.name == "__init__.py"
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            targets: List[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = _resolve(name, is_package, node.level, node.module)
                # Strict: ``from pkg import submodule`` counts as importing pkg too (its __init__ runs).
                targets = [base] + [f"{base}.{alias.name}" for alias in node.names]
            for target in targets:
                if target in modules and target != name:
                    graph[name].add(target)
    return graph


def _cycles(graph: Dict[str, Set[str]], nodes: Set[str]) -> List[List[str]]:
    found: List[List[str]] = []
    state: Dict[str, int] = {}
    stack: List[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node] & nodes):
            if state.get(nxt) == 1:
                found.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(nodes):
        if node not in state:
            visit(node)
    return found


def test_the_graph_sees_the_devnet() -> None:
    graph = import_graph()
    assert "golem_sync.devnet.gsb.wire" in graph["golem_sync.devnet.gsb.connection"]
    assert "golem_sync.devnet.provider" in graph["golem_sync.devnet.launcher"]  # a TYPE_CHECKING import


def test_no_import_cycle_inside_the_devnet() -> None:
    graph = import_graph()
    devnet = {name for name in graph if name == DEVNET or name.startswith(DEVNET + ".")}
    assert _cycles(graph, devnet) == []


def test_the_core_never_imports_the_devnet() -> None:
    graph = import_graph()
    offenders = {name: sorted(t for t in targets if t.startswith(DEVNET))
                 for name, targets in graph.items() if not name.startswith(DEVNET)}
    assert {name: t for name, t in offenders.items() if t} == {}
