"""The package's layering (docs/ARCHITECTURE.md): no module imports a higher layer or a peer, and
no import circle, lazy imports inside functions included."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "faceattr"

#: Each unit's layer: a unit may import units of lower layers and modules of its own subpackage.
#: Units of one layer are peers and do not import each other.
LAYERS = {
    "version": 0, "attributes": 0, "errors": 0, "geometry": 0, "files": 0,
    "config": 1, "image": 1, "runtime": 1, "asgi": 1, "localhost": 1,
    "data": 2,
    "models": 3,
    "evaluation": 4,
    "inference": 5, "training": 5,
    "prep": 6, "synthetic": 6, "bulk": 6, "label": 6, "explain": 6,
    "serve": 7, "__init__": 7,
    "cli": 8,
    # One-release re-exports of the old flat modules (see CHANGELOG).
    "detect": 9, "align": 9,
}


def module_name(path: Path) -> str:
    name = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return name.removesuffix(".__init__")


def imports_of(path: Path) -> list[tuple[str, int]]:
    """The faceattr modules a file imports, anywhere in it, with their line numbers."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found += [(f"{node.module}.{alias.name}", node.lineno) for alias in node.names]
        elif isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
    return [(name, line) for name, line in found if name == "faceattr" or name.startswith("faceattr.")]


def module_graph() -> dict[str, dict[str, int]]:
    """Module -> {imported module: line}; ``from faceattr.x import name`` resolves to the module."""
    paths = {module_name(path): path for path in PACKAGE.rglob("*.py")}
    graph: dict[str, dict[str, int]] = {}
    for module, path in paths.items():
        graph[module] = {}
        for name, line in imports_of(path):
            while name not in paths:
                name = name.rpartition(".")[0]
            if name != module:
                graph[module][name] = line
    return graph


def unit(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def test_every_unit_has_a_layer():
    assert {unit(module) for module in module_graph()} - set(LAYERS) == set()


def test_no_module_imports_a_higher_layer_or_a_peer():
    wrong = [f"{module} imports {target} (line {line})"
             for module, targets in module_graph().items() for target, line in targets.items()
             if unit(target) != unit(module) and LAYERS[unit(target)] >= LAYERS[unit(module)]
             and not (unit(module) == "__init__" and target == "faceattr")]
    assert wrong == []


def test_no_import_circle():
    graph = module_graph()
    # A package's __init__ imported by its own modules is Python's normal package loading.
    edges = {m: {t for t in targets if not m.startswith(t + ".")} for m, targets in graph.items()}
    circles, state = [], {}

    def visit(module: str, stack: list[str]) -> None:
        state[module] = "open"
        stack.append(module)
        for target in sorted(edges[module]):
            if state.get(target) == "open":
                circles.append(" -> ".join(stack[stack.index(target):] + [target]))
            elif target not in state:
                visit(target, stack)
        stack.pop()
        state[module] = "done"

    for module in sorted(edges):
        if module not in state:
            visit(module, [])
    assert circles == []
