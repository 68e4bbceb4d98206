"""The module map holds: no import cycle, and the doors that must stay light stay light (issue #10)."""
from __future__ import annotations

import ast
import pathlib
import subprocess
import sys
from typing import Dict, List, Set

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parents[2] / "golem_sync"


def _modules() -> Dict[str, pathlib.Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def _imports(module: str, path: pathlib.Path, known: Set[str]) -> Set[str]:
    """Every golem_sync module ``module`` imports, TYPE_CHECKING and function-level imports included."""
    is_package = path.name == "__init__.py"
    here = module.split(".") if is_package else module.split(".")[:-1]
    targets: Set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names: List[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = here[:len(here) - node.level + 1] if node.level else []
            prefix = ".".join(base + ([node.module] if node.module else [])) if node.level else (node.module or "")
            names = [f"{prefix}.{alias.name}" for alias in node.names] + [prefix]
        for name in names:
            while name and name not in known:
                name = name.rpartition(".")[0]
            if name and name != module:
                targets.add(name)
    return targets


def _cycles(graph: Dict[str, Set[str]]) -> List[List[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: Dict[str, int] = {}
    low: Dict[str, int] = {}
    stack: List[str] = []
    on_stack: Set[str] = set()
    found: List[List[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_no_import_cycle_among_golem_sync_modules():
    modules = _modules()
    known = set(modules)
    graph = {m: {t for t in _imports(m, p, known) if t != "golem_sync"} for m, p in modules.items()}
    assert _cycles(graph) == []


def test_the_core_never_imports_the_devnet():
    modules = _modules()
    known = set(modules)
    for module, path in modules.items():
        if module.startswith("golem_sync.devnet"):
            continue
        assert not [t for t in _imports(module, path, known) if t.startswith("golem_sync.devnet")], module


@pytest.mark.parametrize("door", ["golem_sync.store", "golem_sync.devnet.pytest_plugin"])
def test_light_doors_do_not_load_the_sdk(door):
    """A web process that only looks jobs up, and pytest's plugin loader, load no job layer or HTTP client."""
    code = (f"import sys, {door}\n"
            "heavy = [m for m in ('golem_sync._network', 'golem_sync._job', 'golem_sync.yagna.client', 'requests')"
            " if m in sys.modules]\n"
            "print(','.join(heavy))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                         cwd=str(PACKAGE.parent))
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == ""


def test_test_modules_have_unique_names_across_the_suite():
    # The suite runs in one pytest session without packages (rootdir-relative imports): two test
    # files of the same name in different folders abort the whole run at collection.
    tests = PACKAGE.parent / "tests"
    seen: Dict[str, List[str]] = {}
    for path in tests.rglob("test_*.py"):
        seen.setdefault(path.name, []).append(str(path.relative_to(tests)))
    assert {name: paths for name, paths in seen.items() if len(paths) > 1} == {}
