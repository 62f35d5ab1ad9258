"""The import rules of docs/architecture.md, read from the source (AST only, nothing is imported).

A unit is a top-level module of ``rramfx`` (``errors``, ``policy``, ...) or a subpackage (``graph``,
``crossbar``, ...; ``passes/`` is the unit ``passes``). Units sit in layers, lowest first; a module may
import from its own unit and from units of lower layers only.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

#: The layers of docs/architecture.md, lowest first. Units in one layer may not import each other.
LAYERS: list[set[str]] = [
    {"errors", "version"},
    {"checks", "tensor_checks", "statistics", "tables", "files", "engines"},
    {"policy", "crossbar"},
    {"graph"},
    {"channels"},
    {"passes"},
    {"preparation", "models", "data"},
    {"evaluation", "cost", "onnx"},
    {"training", "search"},
    {"experiment"},
    {"cli"},
]
#: Modules outside the layers: the package root (the public API) and ``python -m rramfx``.
ENTRY_POINTS = {"rramfx", "rramfx.__main__"}
LAYER_OF = {unit: i for i, layer in enumerate(LAYERS) for unit in layer}


@dataclass(frozen=True)
class Import:
    module: str  # the importing module
    target: str  # the imported module (``from a.b import c`` gives ``a.b``, or ``a.b.c`` when c is a module)
    names: tuple[str, ...]
    line: int


def _module_files() -> dict[str, Path]:
    files: dict[str, Path] = {}
    for base, prefix in ((ROOT / "rramfx", ["rramfx"]), (ROOT / "passes", ["rramfx", "passes"])):
        for path in sorted(base.rglob("*.py")):
            rel = path.relative_to(base)
            if any(p.is_symlink() for p in [path, *path.parents] if base in p.parents or p == path):
                continue
            parts = [*prefix, *rel.with_suffix("").parts]
            if parts[-1] == "__init__":
                parts = parts[:-1]
            files[".".join(parts)] = path
    return files


FILES = _module_files()


def _in_type_checking(node: ast.AST, parents: dict[ast.AST, ast.AST]) -> bool:
    while node in parents:
        node = parents[node]
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            return True
    return False


def _imports(module: str, path: Path) -> list[Import]:
    tree = ast.parse(path.read_text())
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    is_package = path.name == "__init__.py"
    found = []
    for node in ast.walk(tree):
        if _in_type_checking(node, parents):
            continue
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".") if is_package else module.split(".")[:-1]
                base = base[: len(base) - node.level + 1]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            if target != "rramfx" and not target.startswith("rramfx."):
                continue
            names = tuple(a.name for a in node.names)
            submodules = [f"{target}.{n}" for n in names if f"{target}.{n}" in FILES]
            if submodules:
                found += [Import(module, s, (), node.lineno) for s in submodules]
                names = tuple(n for n in names if f"{target}.{n}" not in FILES)
                if not names:
                    continue
            found.append(Import(module, target, names, node.lineno))
        elif isinstance(node, ast.Import):
            found += [Import(module, a.name, (), node.lineno) for a in node.names
                      if a.name == "rramfx" or a.name.startswith("rramfx.")]
    return found


IMPORTS = [imp for module, path in FILES.items() for imp in _imports(module, path)]


def unit_of(module: str) -> str:
    """``rramfx.graph.record`` → ``graph``; ``rramfx`` → ``rramfx``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "rramfx"


def _where(imp: Import) -> str:
    return f"{FILES[imp.module].relative_to(ROOT)}:{imp.line} imports {imp.target}"


def test_every_unit_has_a_layer():
    units = {unit_of(m) for m in FILES} - {unit_of(m) for m in ENTRY_POINTS if m.count(".") == 0} - {"__main__"}
    assert units <= set(LAYER_OF), f"units missing from LAYERS (and docs/architecture.md): {units - set(LAYER_OF)}"


def test_no_import_goes_up_or_sideways():
    bad = []
    for imp in IMPORTS:
        if imp.module in ENTRY_POINTS:
            continue
        src, dst = unit_of(imp.module), unit_of(imp.target)
        if src == dst:
            continue
        if dst == "rramfx":
            bad.append(f"{_where(imp)}: nothing below the root may import the package root")
        elif LAYER_OF[dst] > LAYER_OF[src]:
            bad.append(f"{_where(imp)}: {src} (layer {LAYER_OF[src]}) may not import {dst} (layer {LAYER_OF[dst]})")
        elif LAYER_OF[dst] == LAYER_OF[src]:
            bad.append(f"{_where(imp)}: {src} and {dst} share layer {LAYER_OF[src]} and may not import each other")
    assert not bad, "\n".join(bad)


def test_no_private_name_crosses_a_unit():
    bad = [f"{_where(imp)}: private name(s) {[n for n in imp.names if _private(n)]}"
           for imp in IMPORTS
           if imp.module not in ENTRY_POINTS and unit_of(imp.module) != unit_of(imp.target)
           and (any(_private(n) for n in imp.names) or any(_private(p) for p in imp.target.split(".")))]
    assert not bad, "\n".join(bad)


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def test_no_import_cycle_between_modules():
    graph: dict[str, set[str]] = {m: set() for m in FILES}
    for imp in IMPORTS:
        target = imp.target
        while target not in FILES and "." in target:
            target = target.rpartition(".")[0]
        if target != imp.module:
            graph[imp.module].add(target)
    cycles = _cycles(graph)
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle per strongly connected component with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
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


@pytest.mark.parametrize("package", sorted(m for m, p in FILES.items() if p.name == "__init__.py"))
def test_no_submodule_hidden_by_a_reexport(package):
    """``import rramfx.x.y as m`` must give the module y: a package may not bind a function or class
    under the name of one of its submodules."""
    hidden = sorted(name for imp in IMPORTS if imp.module == package and imp.target != package
                    for name in imp.names if f"{package}.{name}" in FILES)
    assert not hidden, f"{package} re-exports {hidden}, hiding the submodule(s) of the same name"


@pytest.mark.parametrize("module", sorted(m for m in FILES if m != "rramfx.__main__"))
def test_every_module_declares_all(module):
    tree = ast.parse(FILES[module].read_text())
    declared = any(isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "__all__" for t in node.targets)
                   for node in tree.body)
    assert declared, f"{FILES[module].relative_to(ROOT)} has no __all__"


def test_layers_match_the_architecture_document():
    doc = (ROOT / "docs" / "architecture.md").read_text()
    for i, layer in enumerate(LAYERS):
        for unit in sorted(layer):
            assert f"`{unit}`" in doc, f"docs/architecture.md does not name unit {unit!r} (layer {i})"


#: Size limits that keep a module about one thing and a function readable in one screen.
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60


def test_modules_and_functions_stay_small():
    too_big = []
    for module, path in FILES.items():
        source = path.read_text()
        lines = len(source.splitlines())
        if lines > MAX_MODULE_LINES:
            too_big.append(f"{module}: {lines} lines (split it by purpose)")
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    too_big.append(f"{module}.{node.name} (line {node.lineno}): {length} lines")
    assert not too_big, f"over {MAX_MODULE_LINES} lines a module or {MAX_FUNCTION_LINES} a function:\n" + "\n".join(
        too_big)
