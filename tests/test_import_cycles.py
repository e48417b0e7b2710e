"""No import cycle anywhere in the project, counting imports hidden inside functions.

Why static: a cycle broken at run time by moving an import into a function still couples the
two modules both ways (neither can be understood, tested or moved without the other) and
fails as soon as someone hoists the import. So the graph is built with ``ast`` from every
``import`` statement in every module, wherever it sits, and any strongly connected component
with more than one module, or a module importing itself, fails the test.

Edges: ``import a.b.c`` and ``from a.b import c`` point at ``a.b.c`` (or ``a.b`` when ``c`` is
a name, not a module) and at the packages ``a`` and ``a.b`` whose ``__init__`` runs first,
except at the importer's own enclosing packages (those are already initialising whenever the
importer runs, so they are not a dependency the importer adds).
"""

from __future__ import annotations

import ast
from collections.abc import Iterable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("wire", "hardware", "device", "server", "converter", "training", "benchmarks")


def module_files(root: Path, packages: Iterable[str]) -> dict[str, Path]:
    """Dotted module name -> source file, for every ``.py`` under each package."""
    found: dict[str, Path] = {}
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


def _absolute(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    """Resolve ``from ..x import y`` against the importing module's package."""
    if node.level == 0:
        return node.module or ""
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join([*base, node.module] if node.module else base)


def _with_ancestors(name: str) -> list[str]:
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts) + 1)]


def import_graph(root: Path, packages: Iterable[str]) -> dict[str, set[str]]:
    """Module -> project modules it imports (any scope: top level, functions, classes)."""
    files = module_files(root, packages)
    graph: dict[str, set[str]] = {name: set() for name in files}
    for module, path in files.items():
        is_package = path.name == "__init__.py"
        enclosing = set(_with_ancestors(module))  # itself and the packages around it
        explicit: set[str] = set()  # imported by name: a dependency even if enclosing
        implicit: set[str] = set()  # only initialised on the way to an explicit target
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                explicit.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = _absolute(module, is_package, node)
                submodules = {f"{base}.{a.name}" for a in node.names} & files.keys()
                explicit.update(submodules)
                # ``from pkg import name`` reads pkg's __init__ unless every name is a module
                (implicit if len(submodules) == len(node.names) else explicit).add(base)
        for target in explicit | implicit:
            parents = _with_ancestors(target)[:-1]
            graph[module].update(p for p in parents if p in files and p not in enclosing)
        graph[module].update(t for t in explicit if t in files)
        graph[module].update(t for t in implicit if t in files and t not in enclosing)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components that form a cycle (Tarjan, iterative), sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for start in sorted(graph):
        if start in index:
            continue
        work: list[tuple[str, list[str]]] = [(start, sorted(graph[start]))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, pending = work[-1]
            if pending:
                nxt = pending.pop()
                if nxt not in index:
                    index[nxt] = low[nxt] = counter
                    counter += 1
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, sorted(graph.get(nxt, ()))))
                elif nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1 or node in graph.get(node, ()):
                    found.append(sorted(component))
    return sorted(found)


def test_no_import_cycle_in_any_package() -> None:
    graph = import_graph(ROOT, PACKAGES)
    assert len(graph) > 100, "the scan found too few modules: is ROOT right?"
    found = cycles(graph)
    assert found == [], "import cycles (function-level imports included):\n" + "\n".join(
        " <-> ".join(c) for c in found
    )


def _tree(tmp_path: Path, files: dict[str, str]) -> Path:
    """Write ``files``; every folder that gets no ``__init__.py`` of its own gets an empty one,
    so each case names only the modules that make its point."""
    for rel, text in files.items():
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    for folder in {p.parent for p in tmp_path.rglob("*.py")}:
        (folder / "__init__.py").touch(exist_ok=True)
    return tmp_path


# A subpackage whose __init__ re-exports from its own module: the shape the next cases vary.
SUB_REEXPORTS_IMPL = {"pkg/sub/__init__.py": "from pkg.sub.impl import X\n"}


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        pytest.param(
            {
                "pkg/a.py": "from pkg.b import f\n",
                "pkg/b.py": "def f():\n    from pkg import a\n    return a\n",
            },
            [["pkg.a", "pkg.b"]],
            id="hidden-in-a-function",
        ),
        pytest.param(
            {
                "pkg/a.py": "from . import b\n",
                "pkg/b.py": "import pkg.sub.c\n",
                "pkg/sub/c.py": "from ..a import x\n",
            },
            [["pkg.a", "pkg.b", "pkg.sub.c"]],
            id="relative-three-long",
        ),
        pytest.param(
            {
                **SUB_REEXPORTS_IMPL,
                "pkg/sub/impl.py": "X = 1\n",
                "pkg/other.py": "class K:\n    def m(self):\n        from pkg.sub.impl import X\n",
                "pkg/user.py": "import pkg.other\n",
                "pkg/sub/deep.py": "import pkg.user\n",
                "pkg/sub/more.py": "from pkg.sub import deep\n",
            },
            [],
            id="package-init-is-not-a-cycle",
        ),
        pytest.param(
            {"pkg/__init__.py": "from . import a\n", "pkg/a.py": "import pkg.a\n"},
            [["pkg.a"]],
            id="self-import",
        ),
        pytest.param(
            {
                **SUB_REEXPORTS_IMPL,
                "pkg/sub/impl.py": "import pkg.user\nX = 1\n",
                "pkg/user.py": "from pkg.sub.impl import X\n",
            },
            [["pkg.sub", "pkg.sub.impl", "pkg.user"]],
            id="through-a-package",
        ),
        pytest.param(
            {
                **SUB_REEXPORTS_IMPL,
                "pkg/sub/impl.py": "X = 1\n",
                "pkg/user.py": "import pkg.sub.impl\n",
                "pkg/sub/side.py": "def f():\n    import pkg.user\n",
                "pkg/sub/impl2.py": "",
            },
            [],
            id="acyclic-with-lazy-import",
        ),
    ],
)
def test_the_detector_finds_cycles_and_only_cycles(
    tmp_path: Path, files: dict[str, str], expected: list[list[str]]
) -> None:
    root = _tree(tmp_path, files)
    assert cycles(import_graph(root, ["pkg"])) == expected


def test_an_init_importing_a_module_that_imports_the_package_back_is_a_cycle(
    tmp_path: Path,
) -> None:
    """``pkg/sub/__init__`` -> ``pkg.sub.impl`` -> ``pkg.sub`` (explicitly) is a real cycle."""
    root = _tree(
        tmp_path,
        {
            "pkg/sub/__init__.py": "from pkg.sub.impl import X\nY = 2\n",
            "pkg/sub/impl.py": "def f():\n    from pkg.sub import Y\n    return Y\nX = 1\n",
        },
    )
    assert cycles(import_graph(root, ["pkg"])) == [["pkg.sub", "pkg.sub.impl"]]
