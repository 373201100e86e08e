"""The public API's numpydoc docstrings: every entry has its sections, and every
example in them runs and prints what it says (as scikit-image's do)."""

from __future__ import annotations

import doctest
import importlib
import inspect

import pytest

import napari_inceptseg

PUBLIC = sorted(napari_inceptseg._LAZY)
#: modules whose docstring examples are run (the public API's homes, and the dock model)
MODULES = sorted(
    {
        importlib.import_module(mod, "napari_inceptseg").__name__
        for mod in napari_inceptseg._LAZY.values()
    }
    | {
        "napari_inceptseg.distributed.run",
        "napari_inceptseg.dock.model",
        "napari_inceptseg.regions.hierarchy",
        "napari_inceptseg.scoring.objects",
        "napari_inceptseg.params",
        "napari_inceptseg.presets",
    }
)


@pytest.mark.parametrize("name", PUBLIC)
def test_every_public_name_has_a_numpydoc_docstring_with_an_example(name):
    obj = getattr(napari_inceptseg, name)
    doc = inspect.getdoc(obj) or ""
    assert "Examples\n--------\n>>> " in doc, f"{name} has no example"
    takes = inspect.isfunction(obj) and len(inspect.signature(obj).parameters) > 0
    if takes or inspect.isclass(obj) and not issubclass(obj, BaseException):
        assert "\nParameters\n----------\n" in doc or "\nAttributes\n----------\n" in doc, name
    if inspect.isfunction(obj) and not inspect.isgeneratorfunction(obj):
        assert "\nReturns\n-------\n" in doc, f"{name} says nothing of what it returns"


@pytest.mark.parametrize("module", MODULES)
def test_docstring_examples_run(module, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # (examples that write files write them here)
    mod = importlib.import_module(module)
    flags = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
    result = doctest.testmod(mod, optionflags=flags, verbose=False)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples failed"
