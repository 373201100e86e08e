"""Runs that would not fit in memory are refused up front, with a size that fits."""

from __future__ import annotations

import re

import numpy as np
import pytest

from napari_inceptseg import SegmentationError, segment
from napari_inceptseg import _memory
from napari_inceptseg._params import SegmentParams


def test_estimate_grows_with_pixels_and_is_larger_for_inception():
    v = SegmentParams(arch="vanilla")
    i = SegmentParams(arch="inception")
    assert _memory.estimate_bytes(200, 200, 3, v) < _memory.estimate_bytes(400, 400, 3, v)
    assert _memory.estimate_bytes(400, 400, 3, v) < _memory.estimate_bytes(400, 400, 3, i)
    # the measured peaks this model was fitted to (benchmarks/speed.py, docs/benchmarks.md)
    assert 3.2e9 < _memory.estimate_bytes(1024, 1024, 3, v) < 4.4e9
    assert 15e9 < _memory.estimate_bytes(1024, 1024, 3, i) < 20e9


def test_available_memory_is_known_on_linux():
    have = _memory.available_bytes("cpu")
    assert have is None or have > 0


@pytest.mark.parametrize("arch", ["vanilla", "inception"])
def test_too_large_is_refused_before_allocating(monkeypatch, arch):
    monkeypatch.setenv("NAPARI_INCEPTSEG_LEAN", "0")
    params = SegmentParams(arch=arch)
    budget = _memory.estimate_bytes(96, 96, 3, params) * _memory.MARGIN  # room for 96 x 96
    monkeypatch.setattr(_memory, "available_bytes", lambda device="cpu": budget)
    image = np.random.default_rng(0).integers(0, 255, (192, 192, 3), dtype=np.uint8)
    with pytest.raises(SegmentationError) as info:
        segment(image, arch=arch, max_iter=1, device="cpu")
    msg = str(info.value)
    assert "192 x 192" in msg and "available" in msg
    h, w = map(int, re.search(r"about (\d+) x (\d+)", msg).groups())
    assert 80 <= h <= 96 and 80 <= w <= 96
    # the suggested size does fit
    small = image[:h, :w]
    assert segment(small, arch=arch, max_iter=1, device="cpu", seed=0).labels.shape == (h, w)


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
