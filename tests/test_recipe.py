"""Copy as Python / command: the rebuilt call gives the same labels."""

from __future__ import annotations

import numpy as np
import pytest

from napari_inceptseg import segment
from napari_inceptseg.cli.parser import build_parser
from napari_inceptseg.cli.parser import params_from_args as _params_from_args
from napari_inceptseg.dock.recipe import as_command, as_python


def test_python_recipe_replays_the_run(small_rgb):
    first = segment(small_rgb, preset="default", n_channels=16, max_iter=4, seed=None, device="cpu")
    meta = {"image": "x", **first.metadata()}
    code = as_python(meta, image="image")
    assert "seed=" in code and "n_channels=16" in code
    scope = {"image": small_rgb}
    exec(code, scope)  # noqa: S102 - the test runs the code a user would paste
    np.testing.assert_array_equal(scope["labels"], first.labels)


def test_command_recipe_parses_to_the_same_settings(small_rgb):
    run = segment(
        small_rgb,
        preset="paper-vanilla",
        n_channels=16,
        max_iter=3,
        regions=True,
        seed=5,
        device="cpu",
    )
    line = as_command(run.metadata(), image="photo one.png", out="results")
    assert line.startswith(
        "napari-inceptseg segment 'photo one.png' -o results --preset paper-vanilla"
    )
    args = build_parser().parse_args(__import__("shlex").split(line)[1:])
    assert _params_from_args(args) == run.params.replace(seed=5)


def test_metadata_without_settings_is_a_clear_error():
    with pytest.raises(ValueError, match="no napari-inceptseg run settings"):
        as_python({"image": "x"})


@pytest.mark.parametrize(
    "params",
    [
        {"regions": "--save-model=/tmp/x", "merge_threshold": "--overwrite"},
        {"device": "--save-model=/tmp/x"},
        {"arch": "vanilla --overwrite"},
        {"n_channels": "16 --overwrite"},
        {"seed": "--overwrite"},
        "--overwrite",
    ],
)
def test_metadata_values_that_are_not_settings_are_refused(params):
    """A layer's metadata may come from anybody's file: nothing in it becomes an option."""
    meta = {"image": "x", "params": params}
    for rebuild in (as_command, as_python):
        with pytest.raises(ValueError, match="not valid|not a mapping"):
            rebuild(meta)
