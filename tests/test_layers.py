"""The import graph of src/iipa has layers: a module imports only from its own layer or lower
ones (imports inside functions count too), and no two modules import each other, directly or
through others. Read from the source with ``ast``; nothing is imported."""

from __future__ import annotations

import ast
import fnmatch
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"

# Lowest first. A module matches the first layer with a matching pattern; `library` takes what
# the others do not name. Names imported from the root package that are not modules
# (``__version__``) belong to the base layer.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("base", ("iipa.errors", "iipa.constants", "iipa._lazy", "iipa.csvsafe", "iipa.fileio", "iipa.extras",
              "iipa.progress", "iipa.templating", "iipa.levels", "iipa.plots", "iipa.registry",
              "iipa.__version__")),
    ("inputs", ("iipa.images", "iipa.decodecost", "iipa.inputs", "iipa.inputpolicy", "iipa.profiles")),
    ("backbones", ("iipa.backbones", "iipa.backbones.*")),
    ("model", ("iipa.model", "iipa.model.*")),
    ("backends", ("iipa.backends", "iipa.backends.*", "iipa.scoring")),
    ("entry", ("iipa.commands", "iipa.commands.*", "iipa.cli", "iipa.__main__", "iipa")),
    ("library", ("iipa.*",)),
]
ORDER = ["base", "inputs", "backbones", "model", "backends", "library", "entry"]


def layer_of(module: str) -> str:
    return next(name for name, patterns in LAYERS if any(fnmatch.fnmatchcase(module, p) for p in patterns))


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """module -> the iipa modules (or root-package names such as ``iipa.__version__``) it imports."""
    paths = {module_name(p): p for p in (SRC / "iipa").rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for module, path in paths.items():
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        deps: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                deps |= {a.name for a in node.names if a.name.split(".")[0] == "iipa"}
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(up + ([node.module] if node.module else []))
                if base.split(".")[0] != "iipa":
                    continue
                for alias in node.names:
                    sub = f"{base}.{alias.name}"
                    deps.add(sub if sub in paths or (base == "iipa" and alias.name.startswith("__")) else base)
        graph[module] = {d for d in deps if d != module}
    return graph


GRAPH = import_graph()


def test_no_module_imports_from_a_higher_layer():
    wrong = [f"{m} ({layer_of(m)}) imports {d} ({layer_of(d)})" for m, deps in sorted(GRAPH.items()) for d in sorted(deps)
             if ORDER.index(layer_of(d)) > ORDER.index(layer_of(m))]
    assert not wrong, "imports that run up the layers:\n" + "\n".join(wrong)


def test_no_import_cycle():
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    cycles: list[list[str]] = []

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for dep in sorted(GRAPH.get(module, ())):
            if state.get(dep) == 1:
                cycles.append(path[path.index(dep):] + [dep] if dep in path else [module, dep])
            elif dep not in state:
                visit(dep, path + [dep])
        state[module] = 2

    for module in sorted(GRAPH):
        if module not in state:
            visit(module, [module])
    assert not cycles, "modules that import each other: " + "; ".join(" -> ".join(c) for c in cycles)


def test_the_checks_can_fail():
    """Each rule catches a made-up violation: a model module importing a command, and a pair of
    modules importing each other."""
    assert layer_of("iipa.model.record") == "model" and layer_of("iipa.commands.score") == "entry"
    assert layer_of("iipa.model.quantize") == "model" and layer_of("iipa.backends.onnxrt") == "backends"
    assert ORDER.index(layer_of("iipa.backbones.popularity_net")) < ORDER.index(layer_of("iipa.model.record"))
    assert layer_of("iipa.serve.app") == "library" and layer_of("iipa.__version__") == "base"
    assert ORDER.index(layer_of("iipa.commands.score")) > ORDER.index(layer_of("iipa.model.record"))
    saved = dict(GRAPH)
    try:
        GRAPH["iipa.errors"] = GRAPH["iipa.errors"] | {"iipa.fileio"}
        GRAPH["iipa.fileio"] = GRAPH["iipa.fileio"] | {"iipa.errors"}
        try:
            test_no_import_cycle()
        except AssertionError as exc:
            assert "iipa.errors" in str(exc)
        else:
            raise AssertionError("a two-module cycle went unnoticed")
    finally:
        GRAPH.clear()
        GRAPH.update(saved)
