"""Runs that would not fit in memory are refused up front, with a size that fits."""

from __future__ import annotations

import re

import numpy as np
import pytest

from napari_inceptseg import SegmentationError, segment
from napari_inceptseg import _memory
from napari_inceptseg._params import SegmentParams, preset_params


def test_estimate_grows_with_pixels_and_is_larger_for_inception():
    v = preset_params("paper-vanilla")  # the settings the model was fitted at (100 channels)
    i = preset_params("paper-inception")
    assert _memory.estimate_bytes(200, 200, 3, v) < _memory.estimate_bytes(400, 400, 3, v)
    assert _memory.estimate_bytes(400, 400, 3, v) < _memory.estimate_bytes(400, 400, 3, i)
    # the measured peaks this model was fitted to (benchmarks/speed.py, docs/benchmarks.md)
    assert 3.2e9 < _memory.estimate_bytes(1024, 1024, 3, v) < 4.4e9
    assert 15e9 < _memory.estimate_bytes(1024, 1024, 3, i) < 20e9


def test_available_memory_is_known_on_linux():
    have = _memory.available_bytes("cpu")
    assert have is None or have > 0


@pytest.mark.parametrize("arch", ["vanilla", "inception"])
def test_too_large_is_tiled_to_fit(monkeypatch, arch):
    monkeypatch.setenv("NAPARI_INCEPTSEG_LEAN", "0")
    params = SegmentParams(arch=arch)
    budget = _memory.estimate_bytes(96, 96, 3, params) * _memory.MARGIN  # room for 96 x 96
    monkeypatch.setattr(_memory, "available_bytes", lambda device="cpu": budget)
    plan = _memory.plan_run((192, 192), 3, params, "cpu")
    assert plan.tiled and 80 <= plan.tile[0] <= 96 and plan.tile[0] == plan.tile[1]
    assert "192" not in str(plan.tile) and "available" in plan.describe()
    image = np.random.default_rng(0).integers(0, 255, (192, 192, 3), dtype=np.uint8)
    res = segment(image, arch=arch, max_iter=2, device="cpu", seed=0)
    assert res.labels.shape == (192, 192) and res.plan.startswith("tiles of")


@pytest.mark.parametrize("arch", ["vanilla", "inception"])
def test_refused_before_allocating_when_no_tile_fits(monkeypatch, arch):
    params = SegmentParams(arch=arch)
    budget = _memory.estimate_bytes(16, 16, 3, params) * _memory.MARGIN  # less than the smallest tile
    monkeypatch.setattr(_memory, "available_bytes", lambda device="cpu": budget)
    image = np.random.default_rng(0).integers(0, 255, (192, 192, 3), dtype=np.uint8)
    with pytest.raises(SegmentationError) as info:
        segment(image, arch=arch, max_iter=1, device="cpu")
    msg = str(info.value)
    assert "192 x 192" in msg and "available" in msg and "tile" in msg


def test_memory_budget_parameter_tiles_a_volume():
    """The issue's 64 x 256 x 256 volume in 8 GB: tiled to fit (the run is in benchmarks)."""
    for arch in ("vanilla", "inception"):
        params = SegmentParams(arch=arch, dims="3d", memory_gb=8)
        plan = _memory.plan_run((64, 256, 256), 1, params, "cpu")
        assert plan.tiled and plan.budget_bytes <= 8e9
        tile_need = (_memory.BASE_BYTES + np.prod(plan.tile) * _memory.bytes_per_pixel(params, 1)) * _memory.MARGIN
        assert tile_need <= 8e9


def test_explicit_tile_size_is_checked():
    with pytest.raises(ValueError, match="tile_size"):
        _memory.plan_run((100, 100), 3, SegmentParams(tile_size=10), "cpu")
    plan = _memory.plan_run((100, 300), 3, SegmentParams(arch="vanilla", tile_size=64), "cpu")
    assert plan.tile == (64, 64)


def test_cli_reports_it_in_one_line(monkeypatch, tmp_path, capsys):
    import imageio.v3 as iio

    from napari_inceptseg._cli import main

    monkeypatch.setattr(_memory, "available_bytes", lambda device="cpu": 1e6)
    path = tmp_path / "img.png"
    iio.imwrite(path, np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8))
    code = main(["segment", str(path), "-o", str(tmp_path / "out"), "--max-iter", "1"])
    err = capsys.readouterr().err
    assert code != 0
    assert "needs about" in err and "Traceback" not in err


def test_lean_vanilla_step_is_chosen_when_memory_is_short(monkeypatch):
    v = SegmentParams(arch="vanilla")
    monkeypatch.setattr(_memory, "available_bytes", lambda device="cpu": 20e9)
    assert not _memory.use_lean(321, 481, 3, v, "cpu")
    assert _memory.use_lean(2048, 2048, 3, v, "cpu")  # the regular step would need ~14 GB
    assert not _memory.use_lean(2048, 2048, 3, v.replace(arch="inception"), "cpu")
    monkeypatch.setattr(_memory, "available_bytes", lambda device="cpu": 1.2e9)
    assert _memory.use_lean(321, 481, 3, v, "cpu")  # more than half of what is free
    monkeypatch.setenv("NAPARI_INCEPTSEG_LEAN", "0")
    assert not _memory.use_lean(2048, 2048, 3, v, "cpu")
    # the lean step needs about three response planes: a 2048 x 2048 image fits in 6 GB
    assert _memory.estimate_bytes(2048, 2048, 3, v, lean=True) < 6e9


def test_lean_vanilla_segments_as_well(monkeypatch, synthetic):
    from napari_inceptseg import score

    monkeypatch.setenv("NAPARI_INCEPTSEG_LEAN", "1")
    image, gt = synthetic
    res = segment(image, arch="vanilla", max_iter=100, seed=0, device="cpu")
    assert score(res.labels, gt, matching="hungarian")["accuracy"] >= 0.85
