"""The floor plan of fastflow/: which package may import which, and no import circles.

Every import statement of every module counts, at any depth (a function-level import is
still an arrow), read from the source with ``ast``; docs/ARCHITECTURE.md draws the table.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "fastflow"

# Layer of a module: the first prefix it matches (longest prefixes first where they nest).
LAYERS: list[tuple[str, str]] = [
    ("fastflow._cext", "cext"),
    ("fastflow._store_tools", "store_tools"),
    ("fastflow._store", "store"),
    ("fastflow._runtime", "runtime"),
    ("fastflow._engine", "formats"),
    ("fastflow._contracts", "contracts"),
    ("fastflow._hooks", "hooks"),
    ("fastflow._progress", "progress"),
    ("fastflow._observe.at_rest", "cli"),  # the page of a store at rest reads the tools
    ("fastflow._observe", "observe"),
    ("fastflow._tracebacks", "tracebacks"),
    ("fastflow.errors", "errors"),
    ("fastflow.dataflow", "api"),
    ("fastflow.inputs", "api"),
    ("fastflow.outputs", "api"),
    ("fastflow.operators", "operators"),
    ("fastflow.connectors", "connectors"),
    ("fastflow.cli", "cli"),
    ("fastflow.dashboard", "cli"),  # `fastflow dashboard`: a store at rest, through the tools
    ("fastflow.__main__", "cli"),
    ("fastflow", "facade"),  # the package, recovery, run, testing, visualize, compat, ...
]

# Layer -> the layers its modules may import (its own is always allowed).
ALLOWED: dict[str, set[str]] = {
    "cext": set(),
    "hooks": set(),
    "progress": set(),
    "store": {"cext", "hooks"},
    "store_tools": {"store", "cext", "progress"},
    "errors": {"store"},  # re-exports the store's errors
    "formats": set(),
    "contracts": set(),
    "api": set(),
    "tracebacks": {"errors"},
    "runtime": {"store", "cext", "contracts", "formats", "errors", "api", "tracebacks", "hooks"},
    "observe": {"runtime", "store", "cext", "errors", "api", "hooks", "progress", "tracebacks"},
    "operators": {"api", "contracts", "cext"},
    "connectors": {"api", "operators", "errors"},
    "facade": {"runtime", "store", "cext", "errors", "api", "tracebacks", "observe", "hooks",
               "progress"},
    "cli": {"facade", "store_tools", "errors", "observe", "progress"},
}


def layer_of(module: str) -> str:
    for prefix, layer in LAYERS:
        if module == prefix or module.startswith(prefix + "."):
            return layer
    raise AssertionError(f"{module} is in no layer; add it to LAYERS")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    return {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """The fastflow modules ``name`` imports (``from pkg import mod`` counts as ``pkg.mod``)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                found.add(sub if sub in known else target)
    return {m for m in found if m in known and m != name}


def import_graph() -> dict[str, set[str]]:
    found = modules()
    return {name: imports_of(name, path, set(found)) for name, path in found.items()}


def test_every_module_has_a_layer() -> None:
    for name in modules():
        assert layer_of(name) in ALLOWED


@pytest.mark.parametrize("layer", sorted(ALLOWED))
def test_each_layer_imports_only_the_layers_below_it(layer: str) -> None:
    wrong = sorted(
        f"{name} -> {target}"
        for name, targets in import_graph().items()
        if layer_of(name) == layer
        for target in targets
        if layer_of(target) not in ALLOWED[layer] | {layer}
    )
    assert wrong == []


def test_the_rules_of_the_floor_plan() -> None:
    # The table says so; this states the rules of docs/ARCHITECTURE.md one by one.
    assert "runtime" not in ALLOWED["store"] and "store_tools" not in ALLOWED["store"]
    assert [layer for layer, allowed in ALLOWED.items() if "store_tools" in allowed] == ["cli"]
    assert "store_tools" not in ALLOWED["runtime"]
    assert all("facade" not in ALLOWED[low] for low in ALLOWED if low not in ("facade", "cli"))
    assert "runtime" not in ALLOWED["operators"] and "operators" not in ALLOWED["runtime"]


def test_the_layer_check_sees_a_wrong_arrow() -> None:
    # The walk must find function-level imports: the check would pass vacuously otherwise.
    graph = import_graph()
    assert "fastflow._store_tools" in graph["fastflow.cli"]  # imported inside functions
    assert "fastflow._runtime.execute" in graph["fastflow.run"]


def test_no_import_circles() -> None:
    graph = import_graph()
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    circles: list[list[str]] = []

    def visit(node: str) -> None:  # Tarjan's strongly connected components
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in graph[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                circles.append(sorted(component))

    for node in graph:
        if node not in index:
            visit(node)
    assert circles == []


def test_engine_does_not_import_operators() -> None:
    code = (
        "import sys, fastflow._runtime.worker, fastflow._runtime.execute\n"
        "print(sorted(m for m in sys.modules if m.startswith('fastflow.operators')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
