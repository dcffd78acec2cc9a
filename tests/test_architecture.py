"""The import graph of ``src/streetvision`` is layered: a module imports only modules of its own layer or of a
layer below, and no set of modules imports itself round a cycle. Read from the source with ``ast`` (every import
counts, including those inside functions; only ``if TYPE_CHECKING:`` blocks are exempt, as they never run), so a
back-edge cannot hide in a lazy import; nor may two packages import each other, even through modules that form no
cycle. The layers are drawn in src/streetvision/ARCHITECTURE.md."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "streetvision"

# Lowest first. A module belongs to the layer of the longest prefix that names it.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("base", ("streetvision.errors", "streetvision.console")),
    ("io", ("streetvision.io",)),
    ("metrics", ("streetvision.metrics", "streetvision.validator")),
    ("config", ("streetvision.config",)),
    ("data", ("streetvision.data",)),
    ("models", ("streetvision.models",)),
    ("bundle", ("streetvision.bundle",)),
    ("eval", ("streetvision.eval",)),
    ("pipeline", ("streetvision.pipeline",)),
    ("cli", ("streetvision.cli", "streetvision.miner", "streetvision")),
]
# Third-party packages a part of the tree must not import (models/ works without Hydra; metrics/ is pure numpy).
FORBIDDEN: dict[str, tuple[str, ...]] = {
    "streetvision.metrics": ("torch", "transformers", "lightning", "hydra", "omegaconf"),
    "streetvision.models": ("hydra", "omegaconf"),
    "streetvision.data": ("hydra", "omegaconf"),
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer_of(module: str) -> int:
    best, rank = -1, -1
    for i, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best:
                best, rank = len(prefix), i
    assert rank >= 0, f"{module} belongs to no layer: add it to LAYERS (and to ARCHITECTURE.md)"
    return rank


def _runtime_nodes(tree: ast.AST):
    """Every node except those under ``if TYPE_CHECKING:``."""
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            stack.extend(node.orelse)
            continue
        yield node
        stack.extend(ast.iter_child_nodes(node))


def imports_of(path: Path, modules: set[str]) -> tuple[set[str], set[str]]:
    """(streetvision modules, top-level third-party packages) that ``path`` imports anywhere at run time."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    internal, external = set(), set()
    for node in _runtime_nodes(ast.parse(path.read_text())):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*up, base] if base else up)
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
        for target in targets:
            if target.split(".")[0] == "streetvision":
                while target not in modules and "." in target:
                    target = target.rpartition(".")[0]
                if target != name:
                    internal.add(target)
            else:
                external.add(target.split(".")[0])
    return internal, external


def build_graph() -> dict[str, tuple[set[str], set[str]]]:
    """module -> (streetvision modules it imports, third-party packages it imports)."""
    files = {module_name(p): p for p in SRC.rglob("*.py")}
    return {name: imports_of(path, set(files)) for name, path in files.items()}


def upward_imports(edges: dict[str, set[str]]) -> list[str]:
    """Each import of a module from a higher layer (a module may import its own ancestor packages)."""
    return [f"{m} ({LAYERS[layer_of(m)][0]}) imports {d} ({LAYERS[layer_of(d)][0]})"
            for m, deps in sorted(edges.items()) for d in sorted(deps)
            if layer_of(d) > layer_of(m) and not m.startswith(d + ".")]


def find_cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan). A module importing its own ancestor
    package is left out: Python runs the package's __init__ first anyway, and that is no dependency of knowledge."""
    edges = {m: {d for d in deps if not m.startswith(d + ".")} for m, deps in edges.items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while (w := stack.pop()) != v:
                component.append(w)
            if component:
                cycles.append(sorted([v, *component]))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return cycles


@pytest.fixture(scope="module")
def graph() -> dict[str, tuple[set[str], set[str]]]:
    return build_graph()


def test_every_import_points_down_or_sideways(graph):
    upward = upward_imports({m: deps for m, (deps, _) in graph.items()})
    assert not upward, "upward imports:\n" + "\n".join(upward)


def test_no_import_cycle(graph):
    cycles = find_cycles({m: deps for m, (deps, _) in graph.items()})
    assert not cycles, "import cycles:\n" + "\n".join(" <-> ".join(c) for c in cycles)


def package_edges(edges: dict[str, set[str]]) -> dict[str, set[str]]:
    """The import graph between packages (``streetvision.<name>``; a top-level module is its own package), lazy
    imports included; the root package ``streetvision`` (the public API's re-exports) is left out."""
    def package(module: str) -> str:
        return ".".join(module.split(".")[:2])

    out: dict[str, set[str]] = {}
    for m, deps in edges.items():
        for d in deps:
            a, b = package(m), package(d)
            if a != b and "streetvision" not in (a, b):
                out.setdefault(a, set()).add(b)
    return out


def test_no_two_packages_import_each_other(graph):
    cycles = find_cycles(package_edges({m: deps for m, (deps, _) in graph.items()}))
    assert not cycles, "package import cycles:\n" + "\n".join(" <-> ".join(c) for c in cycles)


def test_lower_layers_stay_free_of_heavy_frameworks(graph):
    bad = [f"{m} imports {pkg}" for m, (_, ext) in sorted(graph.items()) for prefix, banned in FORBIDDEN.items()
           if m == prefix or m.startswith(prefix + ".") for pkg in sorted(ext & set(banned))]
    assert not bad, "\n".join(bad)


def test_the_checks_see_a_lazy_upward_import_and_a_cycle(tmp_path):
    """Not vacuous: an import inside a function counts, a TYPE_CHECKING import does not, and a planted upward
    edge and a three-module cycle are reported."""
    planted = SRC / "metrics" / "planted_for_test.py"  # never written: parsed from tmp_path under this name
    source = tmp_path / "planted.py"
    source.write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import streetvision.cli\n"
                      "def f():\n    from streetvision.bundle.predictor import Predictor\n")
    tree = ast.parse(source.read_text())
    seen = {n.module or n.names[0].name for n in _runtime_nodes(tree) if isinstance(n, (ast.Import, ast.ImportFrom))}
    assert seen == {"typing", "streetvision.bundle.predictor"}
    name = module_name(planted)
    assert upward_imports({name: {"streetvision.bundle.predictor"}}) == [
        f"{name} (metrics) imports streetvision.bundle.predictor (bundle)"]
    ring = {"streetvision.io.a": {"streetvision.io.b"}, "streetvision.io.b": {"streetvision.io.c"},
            "streetvision.io.c": {"streetvision.io.a"}, "streetvision.io": {"streetvision.io.a"}}
    assert find_cycles(ring) == [["streetvision.io.a", "streetvision.io.b", "streetvision.io.c"]]
    lazy_pair = {"streetvision.metrics.x": {"streetvision.validator.y"}, "streetvision.validator.z":
                 {"streetvision.metrics.w"}}  # no module cycle, but the two packages import each other
    assert find_cycles(lazy_pair) == []
    assert find_cycles(package_edges(lazy_pair)) == [["streetvision.metrics", "streetvision.validator"]]


def test_architecture_page_lists_every_layer_and_phase():
    from streetvision.pipeline.registry import load_phases

    page = (SRC / "ARCHITECTURE.md").read_text()
    for _, prefixes in LAYERS:
        for prefix in prefixes:
            if prefix != "streetvision":
                assert prefix.removeprefix("streetvision.").replace(".", "/") in page, prefix
    for name, spec in load_phases().items():
        assert f"| `{name}`" in page and f"`{spec.dir}/`" in page, name
