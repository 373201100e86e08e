"""The segmentation dock's model, without a display: settings, presets, what is kept
between sessions, the run lifecycle and the recipe."""

from __future__ import annotations

import json

import pytest

from napari_inceptseg.dock.model import ALL, SegmentDockModel, default_values
from napari_inceptseg.dock.settings import settings_path
from napari_inceptseg.params import SegmentParams
from napari_inceptseg.presets import preset_params


@pytest.fixture
def model():
    return SegmentDockModel(["auto", "cpu"])


def test_a_preset_sets_every_method_setting_and_keeps_the_run_options(model):
    model.set("seed", 7)
    model.set("memory_gb", 3.0)
    model.set("preset", "paper-inception")
    assert model.parameters() == preset_params(
        "paper-inception", device="auto", seed=7, memory_gb=3.0
    )
    model.set("n_channels", 32)  # a method setting changed by hand after the preset
    assert model.parameters().n_channels == 32 and model.parameters().arch == "inception"


def test_the_defaults_are_the_default_method_with_a_drawn_seed(model):
    assert model.parameters() == SegmentParams(device="auto")
    assert model.parameters().seed is None and not model.all_slices


def test_settings_persist_between_sessions_and_restore_defaults(model):
    shown = []
    model.set("preset", "paper-vanilla")
    model.set("n_clusters", 5)
    model.set("slices", ALL)
    model.set_advanced_open(True)

    second = SegmentDockModel(["auto", "cpu"])  # the next session
    second.subscribe(lambda name, value: shown.append(name))
    assert second.load() is None
    assert second.parameters() == preset_params("paper-vanilla", n_clusters=5, device="auto")
    assert second.all_slices and second.advanced_open
    assert shown[0] == "preset" and "n_clusters" in shown  # the controls are told
    second.restore_defaults()
    third = SegmentDockModel(["auto", "cpu"])
    third.load()
    assert third.values == default_values() and not third.advanced_open


def test_saved_values_that_are_not_valid_are_skipped_one_by_one(model):
    saved = {
        "preset": [1],
        "n_conv": "many",
        "seed": {"a": 1},
        "device": "cuda:7",  # not on this machine
        "level": 2.0,  # outside [0, 1]
        "keep_preview": "yes",
        "max_iter": 40.0,  # a whole number written as a float is fine
        "n_channels": 1e308,  # every setting has an upper bound
        "memory_gb": 1e300,
        "tile_size": 10**18,
    }
    skipped = model.restore(saved)
    assert sorted(skipped) == sorted(set(saved) - {"max_iter"})
    assert model.values == {**default_values(), "max_iter": 40}


@pytest.mark.parametrize("text", ["[1, 2]", "{", "[" * 100_000 + "]" * 100_000])
def test_a_settings_file_that_cannot_be_read_gives_the_defaults_and_says_why(model, text):
    path = settings_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    problem = model.load()
    assert problem is not None and str(path) in problem and "defaults" in problem
    assert model.values == default_values()


def test_saving_writes_one_readable_file(model):
    model.set("seed", 11)
    assert json.loads(settings_path().read_text())["seed"] == 11
    quiet = SegmentDockModel(["auto", "cpu"], autosave=False)
    quiet.set("seed", 12)
    assert json.loads(settings_path().read_text())["seed"] == 11


def test_one_run_at_a_time(model):
    first, second = object(), object()
    assert model.begin(first) and model.running
    assert not model.begin(second) and model.run is first
    assert not model.end(second) and model.running  # a stale run's end changes nothing
    assert model.end(first) and not model.running
    assert model.device_name(model.parameters()) == "cpu"


def test_result_names_say_regions_or_clusters():
    regions = SegmentParams()
    clusters = preset_params("paper-vanilla")
    assert SegmentDockModel.result_name("cells", regions, guided=False) == "cells regions"
    assert SegmentDockModel.result_name("cells", regions, guided=True) == "cells clusters"
    assert SegmentDockModel.result_name("cells", clusters, guided=False) == "cells clusters"


def test_the_recipe_refuses_metadata_it_cannot_trust(model):
    with pytest.raises(ValueError, match="no napari-inceptseg run settings"):
        model.recipe("python", {"image": "x"}, "")
    meta = {"params": {**SegmentParams(seed=3).to_dict(), "n_clusters": "rm -rf"}}
    with pytest.raises(ValueError):
        model.recipe("command", meta, "cells.tif")


def test_a_saved_preset_alone_brings_its_method_settings(model):
    model.restore({"preset": "paper-inception", "seed": 5})
    assert model.parameters() == preset_params("paper-inception", device="auto", seed=5)
