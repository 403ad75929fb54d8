"""The project's modules import each other without cycles, and use no other
module's private names.

Imports inside functions count: they hide a cycle from Python's import machinery,
not from the reader, who still has to hold both modules in mind at once. The walk
reads the source (``ast``), so it sees every import, ``TYPE_CHECKING`` ones too.
An import of ``a.b.c`` is an edge to ``a.b.c`` only: importing a submodule also
runs its packages' ``__init__``, but counting that would make every package that
re-exports its submodules a cycle.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("suho", "suho_models", "repositories", "trainers")


def modules(root: Path, packages: tuple[str, ...]) -> dict[str, Path]:
    """Dotted name -> file of every module of ``packages`` under ``root``."""
    found = {}
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


def _known(name: str, known: dict[str, Path]) -> str | None:
    """``name`` or its nearest enclosing module that is one of ``known``."""
    while name and name not in known:
        name = name.rpartition(".")[0]
    return name or None


def imports_of(
    name: str, known: dict[str, Path]
) -> Iterator[tuple[ast.ImportFrom | ast.Import, str]]:
    """(statement, imported module) for every import in module ``name``, at any depth."""
    path = known[name]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                target = _known(alias.name, known)
                if target:
                    yield node, target
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: from the module's package upwards
                package = name.split(".")
                if path.name != "__init__.py":
                    package.pop()
                package = package[: len(package) - node.level + 1]
                base = ".".join(package + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            for alias in node.names:
                # ``from pkg import submodule`` imports the submodule.
                target = _known(f"{base}.{alias.name}", known) or _known(base, known)
                if target:
                    yield node, target


def import_graph(known: dict[str, Path]) -> dict[str, set[str]]:
    return {
        name: {target for _, target in imports_of(name, known) if target != name} for name in known
    }


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for other in sorted(graph[node]):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
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

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def private_imports(known: dict[str, Path], packages: tuple[str, ...]) -> list[str]:
    """``from x import _name`` where x is another of the project's modules."""
    found = []
    for name in known:
        for node, target in imports_of(name, known):
            if not isinstance(node, ast.ImportFrom) or target == name:
                continue
            if not (node.level or (node.module or "").split(".")[0] in packages):
                continue
            for alias in node.names:
                if alias.name.startswith("_") and not alias.name.startswith("__"):
                    found.append(f"{name}:{node.lineno} imports {alias.name} from {target}")
    return sorted(set(found))


def test_no_import_cycles_among_the_project_modules() -> None:
    known = modules(ROOT, PACKAGES)
    # The walk found the project (these two were the two ends of a cycle once).
    assert {"suho_models.db.database", "trainers.config_file", "suho.cli"} <= set(known)
    assert cycles(import_graph(known)) == []


def test_no_module_imports_another_modules_private_names() -> None:
    assert private_imports(modules(ROOT, PACKAGES), PACKAGES) == []


def test_the_walk_sees_cycles_and_private_names_hidden_in_functions(tmp_path: Path) -> None:
    """The checks above can fail: a cycle closed by an import inside a function, and
    a private name imported inside a method, are both found."""
    package = tmp_path / "pkg"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "sub" / "__init__.py").write_text("from pkg.sub import c\n")
    (package / "a.py").write_text("from pkg import b\n")
    (package / "b.py").write_text("def f():\n    from pkg.sub.c import g\n    return g\n")
    (package / "sub" / "c.py").write_text(
        "class K:\n    def m(self):\n        from ..a import _hidden\n        return _hidden\n"
        "def g():\n    import pkg.a\n"
    )
    (package / "d.py").write_text("from . import a\nfrom .sub import c\n")
    known = modules(tmp_path, ("pkg",))
    graph = import_graph(known)
    assert graph["pkg.d"] == {"pkg.a", "pkg.sub.c"}
    assert cycles(graph) == [["pkg.a", "pkg.b", "pkg.sub.c"]]
    assert private_imports(known, ("pkg",)) == ["pkg.sub.c:3 imports _hidden from pkg.a"]
