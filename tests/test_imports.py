"""The package's layers: no import cycle between modules, and no package importing one above it.

Imports inside functions count too: a lazy import hides a cycle from Python, not from a reader.
"""

from __future__ import annotations

import ast
from pathlib import Path

import kp_platform

ROOT = Path(kp_platform.__file__).parent
LAYERS = ("errors", "console", "files", "config", "ranks", "heatmaps", "data", "metrics", "models",
          "training", "inference", "tune", "pipeline", "fit", "cli")
"""Bottom to top: a package may import only those before it (and itself)."""


def module_name(path: Path) -> str:
    parts = ("kp_platform", *path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """Module → the kp_platform modules it imports anywhere in its code."""
    modules = {module_name(p): p for p in ROOT.rglob("*.py")}
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                for alias in node.names:
                    child = f"{node.module}.{alias.name}"
                    target = child if child in modules else node.module
                    if target in modules:
                        graph[name].add(target)
            elif isinstance(node, ast.Import):
                graph[name].update(a.name for a in node.names if a.name in modules)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for start in graph:
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def layer(module: str) -> str:
    return module.split(".")[1] if "." in module else "kp_platform"


def test_no_import_cycles():
    assert cycles(import_graph()) == []


def test_the_cycle_finder_finds_one():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_package_imports_a_layer_above_it():
    upward = []
    for module, imported in import_graph().items():
        here = layer(module)
        if here not in LAYERS:
            continue
        for target in imported:
            there = layer(target)
            if there in LAYERS and LAYERS.index(there) > LAYERS.index(here):
                upward.append(f"{module} -> {target}")
    assert upward == []


def test_every_package_has_a_layer():
    packages = {layer(m) for m in import_graph()} - {"kp_platform", "__main__"}
    assert packages <= set(LAYERS), packages - set(LAYERS)


TUNE_LAYERS = ("base", "spec", "trial", "driver", "results")
"""`tune/` by when its code runs, bottom to top; `base`: the modules every phase shares
(`tune.experiment`, `tune.storage`)."""


def tune_layer(module: str) -> str:
    parts = module.split(".")
    return parts[2] if len(parts) > 3 else "base"


def test_tune_groups_import_only_earlier_groups():
    upward = []
    for module, imported in import_graph().items():
        if layer(module) != "tune" or module == "kp_platform.tune":
            continue
        for target in imported:
            if layer(target) == "tune" and target != "kp_platform.tune" and (
                    TUNE_LAYERS.index(tune_layer(target)) > TUNE_LAYERS.index(tune_layer(module))):
                upward.append(f"{module} -> {target}")
    assert upward == []


def test_every_tune_module_has_a_group():
    groups = {tune_layer(m) for m in import_graph() if layer(m) == "tune"}
    assert groups <= set(TUNE_LAYERS), groups - set(TUNE_LAYERS)
