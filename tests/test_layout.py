"""The package's shape (docs/development.md): imports point one way, the engine and the
benchmark code import no GUI, and no module or function outgrows its page."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "napari_inceptseg"
GUI = ("napari", "qtpy", "PyQt5", "PySide2", "PySide6", "magicgui", "vispy")
#: argument parsers list their options one after another: longer is clearer there
LONG_ALLOWED = {"build_parser"}


def _modules():
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def _imports(name: str, path: Path, modules) -> set:
    """The package's modules that ``name`` imports, at module level or inside functions."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            for cand in [target] + [f"{target}.{a.name}" for a in node.names]:
                if cand in modules and cand != name:
                    out.add(cand)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name in modules and a.name != name)
    return out


def _third_party(path: Path) -> set:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and not node.level and node.module:
            names.add(node.module.split(".")[0])
        elif isinstance(node, ast.Import):
            names.update(a.name.split(".")[0] for a in node.names)
    return names


def test_no_import_cycle():
    modules = _modules()
    graph = {m: _imports(m, p, modules) for m, p in modules.items()}
    # a module importing its own package's __init__ is how Python loads it, not a cycle
    graph = {m: {t for t in ts if not m.startswith(t + ".")} for m, ts in graph.items()}
    state: dict = {}

    def visit(m, path):
        state[m] = "open"
        for t in graph[m]:
            assert state.get(t) != "open", "import cycle: " + " -> ".join(path + [t])
            if t not in state:
                visit(t, path + [t])
        state[m] = "done"

    for m in graph:
        if m not in state:
            visit(m, [m])


@pytest.mark.parametrize("part", ["engine", "bench", "cli", "params", "image", "labels", "regions", "metrics", "io"])
def test_no_gui_outside_the_widgets(part):
    paths = sorted((PACKAGE / part).rglob("*.py")) if (PACKAGE / part).is_dir() else [PACKAGE / f"{part}.py"]
    allowed = {"cli": {"demo.py"}}.get(part, set())  # the demo opens napari when there is a display
    for path in paths:
        if path.name in allowed:
            continue
        assert not _third_party(path) & set(GUI), f"{path.relative_to(PACKAGE)} imports a GUI package"


def test_no_module_or_function_outgrows_its_page():
    for name, path in _modules().items():
        text = path.read_text()
        assert len(text.splitlines()) <= 400, f"{name} has {len(text.splitlines())} lines"
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name not in LONG_ALLOWED:
                length = node.end_lineno - node.lineno + 1
                assert length <= 60, f"{name}.{node.name} has {length} lines"
