"""The repository's import graph, read from the source (AST, every import including the ones inside functions):
``utils/`` is the ground floor, packages import only from the layers below them, and the module-level graph has no
cycle. A violation names the file, the line and the rule."""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

from utils.paths import REPO_ROOT

# Layer of every first-party top-level package and entry script: a module may import from its own package and from
# packages of a strictly lower layer. Today model ← datasets holds (datasets/collate.py builds the model's photo
# template and CLIP input; nothing in model/ reads a dataset), so datasets sits above model.
LAYERS = {
    "utils": 0,
    "model": 1, "optim": 1,
    "datasets": 2,
    "preprocess_data": 3,
    "training": 4,
    "demo": 5,
    "bench": 6, "train": 6, "evaluate": 6, "run_demo": 6,
    "tests": 7,
}

# Not walked: generated or vendored trees, and the parity oracle's driver, which runs in the ORIGINAL code's
# virtual environment and imports the original's own ``model`` / ``utils`` packages, not ours.
SKIP_DIRS = {".venv", ".git", "runs", "outputs", "output", "data", "trained_models", "__pycache__", ".cache",
             ".pytest_cache", "fixtures"}
SKIP_FILES = {Path("tests/parity/oracle_side.py")}


@dataclass(frozen=True)
class Import:
    source: str  # importing module
    target: str  # imported first-party module
    line: int
    module_level: bool  # executed when the module is imported (not inside a function)


def _module_name(path: Path) -> str:
    parts = path.relative_to(REPO_ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def first_party_modules() -> dict[str, Path]:
    modules = {}
    for path in sorted(REPO_ROOT.rglob("*.py")):
        rel = path.relative_to(REPO_ROOT)
        if any(part in SKIP_DIRS or part.startswith(".") for part in rel.parts[:-1]) or rel in SKIP_FILES:
            continue
        modules[_module_name(path)] = path
    return modules


MODULES = first_party_modules()
TOP_LEVEL = {name.split(".")[0] for name in MODULES}


def _resolve(name: str) -> str | None:
    """The first-party module an import binds (``a.b.c`` → the longest existing prefix), or None if third-party."""
    if name.split(".")[0] not in TOP_LEVEL:
        return None
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def module_imports(name: str, path: Path) -> list[Import]:
    """Every first-party import of one module; ``module_level`` is False inside functions and TYPE_CHECKING blocks."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: list[Import] = []

    def add(target: str | None, line: int, module_level: bool) -> None:
        resolved = None if target is None else _resolve(target)
        if resolved is not None and resolved != name:
            found.append(Import(name, resolved, line, module_level))

    def visit(node: ast.AST, module_level: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.Import):
                for alias in child.names:
                    add(alias.name, child.lineno, module_level)
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:  # relative import
                    anchor = package.split(".")[: len(package.split(".")) - child.level + 1]
                    base = ".".join(anchor + ([base] if base else []))
                for alias in child.names:  # `from pkg import module` binds the submodule
                    full = f"{base}.{alias.name}" if base else alias.name
                    add(full if full in MODULES else base, child.lineno, module_level)
            inner = module_level and not isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            if isinstance(child, ast.If) and _is_type_checking(child):
                inner = False
            visit(child, inner)

    visit(ast.parse(path.read_text(encoding="utf-8"), filename=str(path)), True)
    return found


ALL_IMPORTS = [imp for name, path in MODULES.items() for imp in module_imports(name, path)]


def _where(imp: Import) -> str:
    return f"{MODULES[imp.source].relative_to(REPO_ROOT)}:{imp.line} imports {imp.target}"


def _top(module: str) -> str:
    return module.split(".")[0]


def test_the_walk_sees_the_whole_repository():
    """The checks below are only as good as the walk: it must see every package, function-level imports included."""
    assert {"utils", "model", "datasets", "training", "train", "evaluate", "run_demo", "tests"} <= TOP_LEVEL
    assert "tests.test_architecture" in MODULES and "training.predict" in MODULES
    inside_functions = [i for i in ALL_IMPORTS if not i.module_level]
    assert inside_functions, "no function-level import found: the walk does not descend into functions"
    assert any(i.source == "train" and i.target == "training.build" for i in ALL_IMPORTS)


def test_utils_imports_only_utils():
    """``utils/`` is the ground floor: nothing in it imports model/, datasets/, training/, optim/, demo/, the
    benchmarks, the data generators or an entry script, not even inside a function."""
    bad = [_where(i) for i in ALL_IMPORTS if _top(i.source) == "utils" and _top(i.target) != "utils"]
    assert not bad, "utils/ must import nothing above it:\n" + "\n".join(bad)


def test_every_package_has_a_layer():
    unknown = sorted(TOP_LEVEL - set(LAYERS))
    assert not unknown, f"new top-level modules {unknown}: give each a layer in LAYERS (tests/test_architecture.py)"


def test_imports_go_down_the_layers():
    """utils < model, optim < datasets < preprocess_data < training < demo < bench, entry points < tests; a module
    imports from its own package or from a lower layer (no sideways imports between packages of one layer)."""
    bad = []
    for imp in ALL_IMPORTS:
        source, target = _top(imp.source), _top(imp.target)
        if source == target or source not in LAYERS or target not in LAYERS:
            continue
        if LAYERS[target] >= LAYERS[source]:
            bad.append(f"{_where(imp)} (layer {LAYERS[source]} {source} → layer {LAYERS[target]} {target})")
    assert not bad, "imports that go up or sideways:\n" + "\n".join(bad)


def test_model_and_datasets_one_direction():
    """datasets/ builds on model/ (photo templates, CLIP preprocessing); model/ never reads a dataset."""
    assert any(_top(i.source) == "datasets" and _top(i.target) == "model" for i in ALL_IMPORTS)
    back = [_where(i) for i in ALL_IMPORTS if _top(i.source) == "model" and _top(i.target) == "datasets"]
    assert not back, "model/ imports datasets/:\n" + "\n".join(back)


def _module_level_graph() -> dict[str, set[str]]:
    """Edges that run at import time. Importing ``a.b`` from outside package ``a`` also runs ``a/__init__.py``."""
    graph: dict[str, set[str]] = {name: set() for name in MODULES}
    for imp in ALL_IMPORTS:
        if not imp.module_level:
            continue
        graph[imp.source].add(imp.target)
        parts = imp.target.split(".")
        for n in range(1, len(parts)):
            parent = ".".join(parts[:n])
            if parent in MODULES and not (imp.source == parent or imp.source.startswith(parent + ".")):
                graph[imp.source].add(parent)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of the directed graph as [a, b, ..., a], or None (iterative depth-first search)."""
    state: dict[str, int] = {}  # 1 = on the current path, 2 = finished
    for root in sorted(graph):
        if root in state:
            continue
        path, stack = [root], [iter(sorted(graph[root]))]
        state[root] = 1
        while stack:
            nxt = next(stack[-1], None)
            if nxt is None:
                state[path.pop()] = 2
                stack.pop()
            elif state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            elif nxt not in state:
                state[nxt] = 1
                path.append(nxt)
                stack.append(iter(sorted(graph.get(nxt, ()))))
    return None


def test_find_cycle_finds_a_planted_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


def test_module_level_import_graph_has_no_cycle():
    cycle = find_cycle(_module_level_graph())
    assert cycle is None, "import cycle: " + " → ".join(cycle)


