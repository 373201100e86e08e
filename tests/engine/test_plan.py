"""Runs that would not fit in memory are refused up front, with a size that fits."""

from __future__ import annotations

import numpy as np
import pytest

from napari_inceptseg import SegmentationError, segment
from napari_inceptseg.engine.machine import plan as planning
from napari_inceptseg.params import SegmentParams
from napari_inceptseg.presets import preset_params


def test_estimate_grows_with_pixels_and_is_larger_for_inception():
    v = preset_params("paper-vanilla")  # the settings the model was fitted at (100 channels)
    i = preset_params("paper-inception")
    assert planning.estimate_bytes(200, 200, 3, v) < planning.estimate_bytes(400, 400, 3, v)
    assert planning.estimate_bytes(400, 400, 3, v) < planning.estimate_bytes(400, 400, 3, i)
    # the measured peaks this model was fitted to (benchmarks/speed.py, docs/benchmarks.md)
    assert 3.2e9 < planning.estimate_bytes(1024, 1024, 3, v) < 4.4e9
    assert 15e9 < planning.estimate_bytes(1024, 1024, 3, i) < 20e9


def test_available_memory_is_known_on_linux():
    have = planning.available_bytes("cpu")
    assert have is None or have > 0


@pytest.mark.parametrize("arch", ["vanilla", "inception"])
def test_too_large_is_tiled_to_fit(monkeypatch, arch):
    monkeypatch.setenv("NAPARI_INCEPTSEG_LEAN", "0")
    params = SegmentParams(arch=arch)
    # room for a 96 x 96 step beside the 192 x 192 image's copies, in the part of the free memory
    # a run plans for
    budget = (
        planning.estimate_bytes(96, 96, 3, params) + planning.input_bytes((192, 192), 3)
    ) * planning.MARGIN
    budget *= (
        1 + 1e-6
    ) / planning.SAFETY_FRACTION  # (a hair more, so rounding cannot make it 95 x 97)
    monkeypatch.setattr(planning, "available_bytes", lambda device="cpu": budget)
    plan = planning.plan_run((192, 192), 3, params, "cpu")
    assert plan.tiled and 80 <= plan.tile[0] <= 96 and plan.tile[0] == plan.tile[1]
    assert "192" not in str(plan.tile) and "available" in plan.describe()
    image = np.random.default_rng(0).integers(0, 255, (192, 192, 3), dtype=np.uint8)
    res = segment(image, arch=arch, max_iter=2, device="cpu", seed=0)
    assert res.labels.shape == (192, 192) and res.plan.startswith("tiles of")


@pytest.mark.parametrize("arch", ["vanilla", "inception"])
def test_refused_before_allocating_when_no_tile_fits(monkeypatch, arch):
    params = SegmentParams(arch=arch)
    # less than the smallest tile
    budget = planning.estimate_bytes(16, 16, 3, params) * planning.MARGIN
    monkeypatch.setattr(planning, "available_bytes", lambda device="cpu": budget)
    image = np.random.default_rng(0).integers(0, 255, (192, 192, 3), dtype=np.uint8)
    with pytest.raises(SegmentationError) as info:
        segment(image, arch=arch, max_iter=1, device="cpu")
    msg = str(info.value)
    assert "192 x 192" in msg and "available" in msg and "tile" in msg


def test_memory_budget_parameter_tiles_a_volume():
    """The issue's 64 x 256 x 256 volume in 8 GB: tiled to fit (the run is in benchmarks)."""
    for arch in ("vanilla", "inception"):
        params = SegmentParams(arch=arch, dims="3d", memory_gb=8)
        plan = planning.plan_run((64, 256, 256), 1, params, "cpu")
        assert plan.tiled and plan.budget_bytes <= 8e9
        tile_need = (
            planning.BASE_BYTES + np.prod(plan.tile) * planning.bytes_per_pixel(params, 1)
        ) * planning.MARGIN
        assert tile_need <= 8e9


def test_explicit_tile_size_is_checked():
    with pytest.raises(ValueError, match="tile_size"):
        planning.plan_run((100, 100), 3, SegmentParams(tile_size=10), "cpu")
    plan = planning.plan_run((100, 300), 3, SegmentParams(arch="vanilla", tile_size=64), "cpu")
    assert plan.tile == (64, 64)


def test_cli_reports_it_in_one_line(monkeypatch, tmp_path, capsys):
    import imageio.v3 as iio

    from napari_inceptseg.cli.main import main

    monkeypatch.setattr(planning, "available_bytes", lambda device="cpu": 1e6)
    path = tmp_path / "img.png"
    iio.imwrite(path, np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8))
    code = main(["segment", str(path), "-o", str(tmp_path / "out"), "--max-iter", "1"])
    err = capsys.readouterr().err
    assert code != 0
    assert "needs about" in err and "Traceback" not in err


def test_lean_vanilla_step_is_chosen_when_memory_is_short(monkeypatch):
    v = SegmentParams(arch="vanilla")
    monkeypatch.setattr(planning, "available_bytes", lambda device="cpu": 20e9)
    assert not planning.use_lean(321, 481, 3, v, "cpu")
    assert planning.use_lean(2048, 2048, 3, v, "cpu")  # the regular step would need ~14 GB
    assert not planning.use_lean(2048, 2048, 3, v.replace(arch="inception"), "cpu")
    monkeypatch.setattr(planning, "available_bytes", lambda device="cpu": 1.0e9)
    assert planning.use_lean(321, 481, 3, v, "cpu")  # more than half of what is free (~0.55 GB)
    monkeypatch.setenv("NAPARI_INCEPTSEG_LEAN", "0")
    assert not planning.use_lean(2048, 2048, 3, v, "cpu")
    # the lean step needs about three response planes: a 2048 x 2048 image fits in 6 GB
    assert planning.estimate_bytes(2048, 2048, 3, v, lean=True) < 6e9


def test_lean_vanilla_segments_as_well(monkeypatch, synthetic):
    from napari_inceptseg import score

    monkeypatch.setenv("NAPARI_INCEPTSEG_LEAN", "1")
    image, gt = synthetic
    res = segment(image, arch="vanilla", max_iter=100, seed=0, device="cpu")
    assert score(res.labels, gt, matching="hungarian")["accuracy"] >= 0.85


_PEAK_SCRIPT = r"""
import json, sys
import numpy as np
shape, preset, kw = json.loads(sys.argv[1])
rng = np.random.default_rng(0)
blocks = rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)
image = np.repeat(np.repeat(blocks, -(-shape[0] // 8), 0), -(-shape[1] // 8), 1)
image = image[:shape[0], :shape[1]]
image = np.ascontiguousarray(image)
from napari_inceptseg import segment
from napari_inceptseg.engine.machine.plan import plan_image
from napari_inceptseg.presets import preset_params
params = preset_params(preset, device="cpu", seed=0, **kw)
plan = plan_image(tuple(shape), 3, params, "cpu")
segment(image, preset=preset, device="cpu", seed=0, **kw)
# VmHWM: this process's peak (ru_maxrss would keep the parent's high-water mark across exec)
peak = next(int(l.split()[1]) * 1024 for l in open("/proc/self/status") if l.startswith("VmHWM:"))
out = {"peak": peak, "plan": plan.peak_bytes, "heap": plan.heap, "step": plan.step_bytes}
print(json.dumps(out))
"""


def _measured(shape, preset, heap=True, **kw):
    import json
    import os
    import subprocess
    import sys

    env = {**os.environ, "NAPARI_INCEPTSEG_HEAP": "1" if heap else "0"}
    out = subprocess.run(
        [sys.executable, "-c", _PEAK_SCRIPT, json.dumps([shape, preset, kw])],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize(
    "shape, preset, kw",
    [
        ((700, 1000), "default", {}),  # training on a copy, then the regions pass at full size
        ((384, 384), "paper-vanilla", {"max_iter": 3}),
        ((256, 256), "paper-inception", {"max_iter": 2}),
    ],
)
def test_the_plan_is_within_a_quarter_of_the_measured_peak(shape, preset, kw):
    """The whole run's planned peak against the peak RSS of a fresh process (which also
    holds Python, numpy and the image). Paper presets are measured without the fast
    heap, which a 2-3 step run does not fill (see the next test)."""
    got = _measured(shape, preset, heap=preset == "default", **kw)
    assert 0.75 <= got["plan"] / got["peak"] <= 1.25, got


def test_the_fast_heap_stays_inside_its_allowance():
    """With the CPU's fast heap, fragmentation makes a run grow step by step; the plan
    allows HEAP_ALLOWANCE steps more and the heap is trimmed back at that point."""
    got = _measured((256, 320), "paper-vanilla", max_iter=40, min_labels=1)
    assert got["heap"]
    # the guard acts after a step, so the peak may pass the allowance by part of one step's growth
    assert 0.75 <= got["plan"] / got["peak"] <= 1.25, got
    assert got["peak"] >= 0.75 * (got["plan"] - planning.HEAP_ALLOWANCE * got["step"]), got


def test_a_run_is_planned_once_before_any_work(monkeypatch):
    """The coarse stage and the final pass are in the one plan made before training:
    nothing plans again once the first iteration has run, and the plan's final pass is
    the one the run takes."""
    made, after_start = [], []
    real = planning.plan_run

    def counting(*args, **kwargs):
        (after_start if started else made).append(args[0])
        return real(*args, **kwargs)

    started = False
    monkeypatch.setattr(planning, "plan_run", counting)

    def first_record(progress):
        nonlocal started
        started = True

    image = np.random.default_rng(0).integers(0, 255, (300, 400, 3), dtype=np.uint8)
    kw = dict(seed=0, device="cpu", callback=first_record)
    paper = dict(n_channels=8, max_iter=4, train_pixels=20000, coarse_scale=0.5, coarse_iter=2)
    clusters = segment(image, preset="paper-vanilla", **paper, **kw)
    started = False
    regions = segment(image, **kw)
    assert not after_start and len(made) >= 4  # training, coarse, final pass; regions' copy
    plan = planning.plan_image((300, 400), 3, clusters.params, "cpu")
    assert plan.final_tile == (300, 400) and plan.coarse_tile is None  # one pass, no tiles
    assert clusters.labels.shape == regions.labels.shape == (300, 400)
    regions_plan = planning.plan_image((300, 400), 3, regions.params, "cpu")
    assert regions_plan.analysis_shape == (300, 400) and regions_plan.final_tile is None
