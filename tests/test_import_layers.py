"""The package's imports flow one way: no cycle between its top-level parts (subpackages and
modules), counting lazy imports inside functions too — a cycle there is still a design cycle."""

from __future__ import annotations

import ast
from pathlib import Path

PKG = Path(__file__).resolve().parents[1] / "src" / "obliviate"


def _unit(module: str) -> str:
    """``obliviate.methods.ssd`` -> ``methods``; ``obliviate.training`` -> ``training``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def import_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for f in PKG.rglob("*.py"):
        rel = f.relative_to(PKG.parent).with_suffix("")
        mod_parts = list(rel.parts)
        if mod_parts[-1] == "__init__":
            mod_parts = mod_parts[:-1]
        module = ".".join(mod_parts)
        pkg_parts = mod_parts if f.name == "__init__.py" else mod_parts[:-1]
        src = _unit(module) if len(mod_parts) > 1 else None
        if src is None:
            continue  # obliviate/__init__.py itself
        deps = graph.setdefault(src, set())
        for node in ast.walk(ast.parse(f.read_text())):
            targets: list[str] = []
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = pkg_parts[: len(pkg_parts) - node.level + 1]
                    name = ".".join(base + ([node.module] if node.module else []))
                    targets = [name] if node.module else [f"{name}.{a.name}" for a in node.names]
                elif node.module and node.module.startswith("obliviate"):
                    targets = [node.module]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names if a.name.startswith("obliviate")]
            for t in targets:
                if t.count(".") >= 1:
                    u = _unit(t)
                    if u != src:
                        deps.add(u)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(n: str) -> list[str] | None:
        state[n] = 1
        stack.append(n)
        for m in sorted(graph.get(n, ())):
            if state.get(m) == 1:
                return stack[stack.index(m) :] + [m]
            if state.get(m) is None:
                found = visit(m)
                if found:
                    return found
        stack.pop()
        state[n] = 2
        return None

    for n in sorted(graph):
        if state.get(n) is None:
            found = visit(n)
            if found:
                return found
    return None


def test_the_checker_finds_a_cycle() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycle_between_subpackages() -> None:
    graph = import_graph()
    assert {"core", "data", "models", "methods", "metrics", "study", "report", "cli"} <= set(graph)
    assert find_cycle(graph) is None, f"import cycle: {' -> '.join(find_cycle(graph) or [])}"


def test_the_layers_read_as_documented() -> None:
    g = import_graph()
    assert g["core"] <= {"_registry", "utils"}
    assert "llm" not in g  # one stack: text data, causal LMs, their training and metrics sit beside the vision ones
    assert not ({"methods", "metrics", "study"} & g["lm_training"]) and not ({"methods", "study"} & g["lm_losses"])
    assert not ({"study", "report", "cli"} & g["methods"])
    assert "methods" not in g["metrics"] and "methods" not in g["attacks"]


def module_graph() -> dict[str, set[str]]:
    """Module -> the modules of the package it imports (lazy imports inside functions included;
    ``from pkg import name`` points at ``pkg.name`` when that is a module, else at ``pkg``)."""
    modules: dict[str, Path] = {}
    for f in PKG.rglob("*.py"):
        parts = list(f.relative_to(PKG.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join(parts)] = f
    graph: dict[str, set[str]] = {}
    for module, f in modules.items():
        pkg = module.split(".") if f.name == "__init__.py" else module.split(".")[:-1]
        deps = graph.setdefault(module, set())
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = ".".join(pkg[: len(pkg) - node.level + 1] + ([node.module] if node.module else []))
                elif node.module and node.module.startswith("obliviate"):
                    base = node.module
                else:
                    continue
                for a in node.names:
                    deps.add(f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base)
            elif isinstance(node, ast.Import):
                deps.update(a.name for a in node.names if a.name in modules)
        deps.discard(module)
    # a package's __init__ re-exporting its own modules is not a design tie: drop package -> own child edges
    for module in graph:
        graph[module] = {d for d in graph[module] if not d.startswith(module + ".")}
    return graph


def test_no_import_cycle_between_modules() -> None:
    """Inside a subpackage too (the study runner, its executors, spec and tasks once formed a circle)."""
    graph = module_graph()
    assert {"obliviate.study.runner", "obliviate.study.executors", "obliviate.cli"} <= set(graph)
    cycle = find_cycle(graph)
    assert cycle is None, f"import cycle: {' -> '.join(cycle or [])}"
