"""The package's shape (docs/development.md): imports point one way, the engine and the
benchmark code import no GUI, and no module or function outgrows its page."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

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


def test_no_gui_outside_the_widgets():
    """The engine, the dock's model, the CLI and the benchmark code import no GUI (the
    demo opens napari when there is a display)."""
    for name, path in _modules().items():
        if name.startswith("napari_inceptseg._widgets") or name == "napari_inceptseg.cli.demo":
            continue
        assert not _third_party(path) & set(GUI), f"{name} imports a GUI package"


def _formatted(path: Path) -> str:
    """The module as ``ruff format`` (the project's settings) writes it: sizes are
    measured on formatted code, so packing lines cannot meet them."""
    done = subprocess.run(
        [sys.executable, "-m", "ruff", "format", "--stdin-filename", str(path), "-"],
        input=path.read_text(),
        capture_output=True,
        text=True,
        timeout=120,
        cwd=PACKAGE.parents[1],
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def _code_lines(node: ast.AST) -> int:
    """A function's lines from ``def`` to its end, less its docstring (numpydoc
    docstrings of the public API run long; the code a reader holds in mind does not)."""
    length = node.end_lineno - node.lineno + 1
    first = node.body[0]
    value = getattr(first, "value", None)
    if (
        isinstance(first, ast.Expr)
        and isinstance(value, ast.Constant)
        and isinstance(value.value, str)
    ):
        length -= first.end_lineno - first.lineno + 1
    return length


def test_no_module_or_function_outgrows_its_page():
    for name, path in _modules().items():
        text = _formatted(path)
        assert len(text.splitlines()) <= 400, f"{name} has {len(text.splitlines())} lines"
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                if node.name in LONG_ALLOWED:
                    continue
                length = _code_lines(node)
                assert length <= 60, f"{name}.{node.name} has {length} lines of code"


#: signatures a library sets: ``torch.autograd.Function.forward`` takes the tensors as
#: positional arguments, and higra calls a merge callback with six
LIBRARY_SIGNATURES = {
    ("napari_inceptseg.engine.modeling.loss", "forward"),
    ("napari_inceptseg.regions.hierarchy", "__call__"),
}


def test_no_function_takes_more_than_five_positional_parameters():
    """Bundles are passed, not their fields; the rest are named at the call."""
    for name, path in _modules().items():
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            args = [a.arg for a in node.args.posonlyargs + node.args.args]
            args = [a for a in args if a not in ("self", "cls")]
            if (name, node.name) not in LIBRARY_SIGNATURES:
                assert len(args) <= 5, f"{name}.{node.name} takes {len(args)} positional"


def test_the_package_root_keeps_the_public_face():
    """At most eight modules at the root; everything else lives in a room named for it."""
    root = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert len(root) <= 8, root


def test_own_modules_are_imported_inside_functions_only_where_that_keeps_imports_quick():
    """torch's modules (engine/modeling) wait for a run; the docks and the command wait to
    import the engine until they use it; the optional Dask package waits for its use."""
    lazy_sources = ("napari_inceptseg._widgets", "napari_inceptseg.cli")
    modules = _modules()
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for fn in ast.walk(ast.parse(path.read_text())):
            if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for node in ast.walk(fn):
                if not (isinstance(node, ast.ImportFrom) and node.level):
                    continue
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
                allowed = (
                    name.startswith(lazy_sources)
                    or target.startswith("napari_inceptseg.engine.modeling")
                    or name == "napari_inceptseg.distributed"
                )
                assert allowed, f"{name} imports {target} inside {fn.name}"
