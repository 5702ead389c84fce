"""Every dependency points down: no import cycle between towerpy's modules, type-only ones included.

The graph is read from the source with `ast`, not from an interpreter's ``sys.modules``: an
import under ``if TYPE_CHECKING:`` is an edge too (it is one for a type checker, and a cycle
there is a cycle of meaning). Module-level imports count, and so do imports inside functions
when they name a towerpy module (a lazy import still makes the importer depend on the
imported); only lazy imports of third-party modules (optional extras) are outside the graph,
since they are not towerpy modules anyway.

``from .pkg import name`` is an edge to ``pkg`` (its ``__init__`` runs) and, when ``name`` is a
submodule of ``pkg``, to that submodule as well.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import towerpy

SRC = Path(towerpy.__file__).resolve().parent


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(path): path for path in sorted(SRC.rglob("*.py"))}


def _resolve(importer: str, is_package: bool, level: int, module: str | None) -> str:
    if level == 0:
        return module or ""
    base = importer.split(".")
    if not is_package:
        base.pop()
    if level > 1:
        base = base[: len(base) - (level - 1)]
    return ".".join([*base, module] if module else base)


def import_graph() -> dict[str, set[str]]:
    """Each towerpy module and the towerpy modules it imports."""
    modules = _modules()
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        is_package = path.name == "__init__.py"
        edges: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = _resolve(name, is_package, node.level, node.module)
                submodules = [f"{base}.{alias.name}" for alias in node.names]
                targets = [s for s in submodules if s in modules]
                if len(targets) < len(submodules) or not name.startswith(base + "."):
                    # a name defined by the module (a package's __init__, maybe its own)
                    if base in modules:
                        edges.add(base)
                    targets.append(base)
            for target in targets:
                # `import towerpy.a.b` runs towerpy.a too: an edge to every enclosing package,
                # except the importer's own (they run before it, not because of it)
                while target.startswith("towerpy"):
                    if target in modules and target != name and not name.startswith(target + "."):
                        edges.add(target)
                    target = target.rpartition(".")[0]
        edges.discard(name)
        graph[name] = edges
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """A cycle of the graph as the path of modules around it, or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for edge in sorted(graph[node]):
            if state.get(edge) == 1:
                return [*path[path.index(edge) :], edge]
            if edge not in state and (cycle := visit(edge)) is not None:
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)) is not None:
            return cycle
    return None


def test_the_graph_is_read_from_every_module() -> None:
    graph = import_graph()
    assert "towerpy.limit" in graph["towerpy"]  # `from .limit import ...`
    assert "towerpy.limit.protocols" in graph["towerpy.limit"]  # a submodule's names
    assert "towerpy._service" in graph["towerpy.limit.rate"]  # a relative `from .. import`
    assert "towerpy.limit.protocols" in graph["towerpy.limit.rate"]  # under TYPE_CHECKING


def test_find_cycle_reports_the_path_around_a_cycle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert find_cycle(graph) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_module_imports_one_that_imports_it_back() -> None:
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_importing_the_tools_loads_nothing_of_the_llm_package() -> None:
    code = (
        "import sys, towerpy.tools; "
        "print(sorted(m for m in sys.modules if m.startswith('towerpy.llm')))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
