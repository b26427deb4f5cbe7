"""The package's import graph has no cycles: every ``import`` in ``ngym/``, read with ``ast``.

Imports inside functions count too (they run on first call, and a cycle hidden in a function is
still a layering fault). Imports under ``if TYPE_CHECKING:`` do not: they never run. An edge goes
from a module to the module it imports (``from ngym.server import local`` -> ``ngym.server.local``;
``from ngym.server.base import Server`` -> ``ngym.server.base``); parent packages are not added,
since every ``__init__`` of the package imports only ``ngym.lazy`` (checked below).
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "ngym"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _type_checking_only(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)


def imported(name: str, path: Path, known: set[str]) -> set[str]:
    """The ngym modules ``name`` imports, anywhere in the file except ``if TYPE_CHECKING:``."""
    tree = ast.parse(path.read_text(), str(path))
    skip: set[int] = set()
    for node in ast.walk(tree):
        if _type_checking_only(node):
            skip.update(id(n) for n in ast.walk(node))
    is_package = path.name == "__init__.py"
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".") if is_package else name.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                source = ".".join([*base, node.module] if node.module else base)
            else:
                source = node.module or ""
            targets = [f"{source}.{alias.name}" if f"{source}.{alias.name}" in known else source for alias in node.names]
        else:
            continue
        for target in targets:
            while target and target not in known:  # `import ngym.x.y as z` names a module; trim attributes
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def import_graph() -> dict[str, set[str]]:
    mods = modules()
    return {name: imported(name, path, set(mods)) for name, path in mods.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0

    def visit(v: str) -> None:
        nonlocal counter
        index[v] = low[v] = counter
        counter += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
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


def test_the_package_has_no_import_cycles() -> None:
    graph = import_graph()
    assert len(graph) > 50 and graph["ngym.server.base"] >= {"ngym.server.client", "ngym.server.fastpath"}
    found = cycles(graph)
    detail = "\n".join(
        " -> ".join(c) + "\n    " + "\n    ".join(f"{m} imports {sorted(graph[m] & set(c))}" for m in c) for c in found
    )
    assert not found, f"import cycles in ngym/:\n{detail}"


def test_package_inits_import_nothing_that_imports_back() -> None:
    graph = import_graph()
    for name, path in modules().items():
        if path.name == "__init__.py":
            assert graph[name] <= {"ngym.lazy", *(m for m in graph if m.startswith(name + "."))}, name


def test_the_walker_finds_a_cycle_hidden_in_a_function() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_the_server_core_is_layered() -> None:
    """Each layer of ngym.server imports only layers below it (docs/architecture.md)."""
    layers = [
        {"ngym.server.http", "ngym.server.auth", "ngym.server.process"},
        {"ngym.server.sessions", "ngym.server.asgi", "ngym.server.middleware"},
        {"ngym.server.fastpath"},
        {"ngym.server.local"},
        {"ngym.server.transport"},
        {"ngym.server.client", "ngym.server.loader"},
        {"ngym.server.base"},
        {"ngym.server.host"},
    ]
    graph = import_graph()
    for i, layer in enumerate(layers):
        below = set().union(*layers[:i])
        for module in layer:
            core = {m for m in graph[module] if m.startswith("ngym.server.")}
            assert core <= below, f"{module} imports {sorted(core - below)}, which is not below it"


def test_the_packages_form_no_cycle_either() -> None:
    """Folded to sub-packages (``ngym.server``, ``ngym.rollout``...), the graph stays acyclic:
    ``server`` never imports ``rollout``, ``env`` never ``devkit``, and so on."""
    graph = import_graph()

    def package(module: str) -> str:
        return ".".join(module.split(".")[:2])

    folded: dict[str, set[str]] = {}
    for module, targets in graph.items():
        folded.setdefault(package(module), set()).update(package(t) for t in targets if package(t) != package(module))
    assert not cycles(folded), cycles(folded)
    assert folded["ngym.server"] <= {"ngym.config", "ngym.errors"}
