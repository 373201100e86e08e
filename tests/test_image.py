"""Every input kind either works or fails with a clear ValueError."""

from __future__ import annotations

import numpy as np
import pytest

from napari_inceptseg import SegmentParams, prepare_image, score, segment
from napari_inceptseg.image import apply_ranges, channel_ranges, prepare

FAST = dict(arch="vanilla", n_channels=16, max_iter=3, min_labels=1, seed=0, device="cpu")


def _two_regions(shape=(20, 24)):
    gt = np.ones(shape, dtype=np.int32)
    gt[:, shape[1] // 2 :] = 2
    return gt


# --- accepted inputs --------------------------------------------------------------------


@pytest.mark.parametrize(
    "dtype",
    [np.uint8, np.uint16, np.int8, np.int16, np.int32, np.int64, np.float32, np.float64, bool],
)
def test_grayscale_dtypes(dtype):
    gt = _two_regions()
    img = (gt - 1).astype(dtype) if dtype is bool else (gt * 10).astype(dtype)
    data = prepare_image(img)
    assert data.shape == (1, 20, 24) and data.dtype == np.float32
    res = segment(img, **FAST)
    assert res.labels.shape == gt.shape


def test_uint8_scaled_by_255_like_the_reference():
    img = np.arange(64 * 3, dtype=np.uint8).reshape(8, 8, 3)
    np.testing.assert_allclose(prepare_image(img), np.moveaxis(img, -1, 0) / 255.0, rtol=1e-6)


def test_other_dtypes_are_normalised_per_channel_by_percentiles():
    rng = np.random.default_rng(0)
    img = np.stack([rng.normal(1000, 50, (32, 32)), rng.normal(-3, 0.01, (32, 32))]).astype(
        np.float64
    )
    data = prepare_image(img, channel_axis=0)
    for c in range(2):
        lo, hi = np.percentile(data[c], [1, 99.8])
        assert lo == pytest.approx(0, abs=1e-6) and hi == pytest.approx(1, abs=1e-6)


def test_signed_integers_are_normalised():
    img = np.array([[-30000] * 8 + [30000] * 8] * 16, dtype=np.int16)
    data = prepare_image(img)
    assert data.min() == pytest.approx(0) and data.max() == pytest.approx(1)


def test_rgba_drops_alpha():
    rng = np.random.default_rng(2)
    rgb = rng.integers(0, 255, (16, 20, 3), dtype=np.uint8)
    rgba = np.concatenate([rgb, rng.integers(0, 255, (16, 20, 1), dtype=np.uint8)], -1)
    assert np.array_equal(prepare_image(rgba), prepare_image(rgb))
    assert np.array_equal(segment(rgba, **FAST).labels, segment(rgb, **FAST).labels)


@pytest.mark.parametrize("n_ch", [2, 5, 16])
@pytest.mark.parametrize("axis", [0, -1, 2])
def test_multichannel_with_channel_axis(n_ch, axis):
    img = np.random.default_rng(n_ch).random((n_ch, 12, 14)).astype(np.float32)
    img = np.moveaxis(img, 0, axis)
    data = prepare_image(img, channel_axis=axis)
    assert data.shape == (n_ch, 12, 14)
    assert segment(img, channel_axis=axis, **FAST).labels.shape == (12, 14)


def test_16bit_microscopy_segments_as_well_as_8bit():
    """A dim two-channel 16-bit image (values far below 65535) still separates its
    regions, because normalisation uses percentiles rather than the dtype range."""
    rng = np.random.default_rng(3)
    gt = np.ones((48, 48), dtype=np.int32)
    yy, xx = np.mgrid[:48, :48]
    gt[(yy - 16) ** 2 + (xx - 16) ** 2 < 100] = 2
    gt[(yy - 33) ** 2 + (xx - 32) ** 2 < 120] = 3
    ch0 = np.choose(gt - 1, [100, 400, 120]) + rng.normal(0, 15, gt.shape)
    ch1 = np.choose(gt - 1, [90, 110, 380]) + rng.normal(0, 15, gt.shape)
    img16 = np.stack([ch0, ch1]).clip(0).astype(np.uint16)
    res = segment(img16, channel_axis=0, preset="paper-vanilla", max_iter=60, seed=0, device="cpu")
    assert score(res.labels, gt, matching="majority")["accuracy"] >= 0.95
    # the default method: the same scene in 8 bits (full range) and in dim 16 bits score alike
    img8 = (np.stack([ch0, ch1]).clip(0) / 500 * 255).clip(0, 255).astype(np.uint8)
    acc = {
        bits: score(
            segment(img, channel_axis=0, seed=0, device="cpu").labels, gt, matching="majority"
        )["accuracy"]
        for bits, img in (("8", img8), ("16", img16))
    }
    assert acc["16"] >= 0.93 and abs(acc["16"] - acc["8"]) <= 0.02, acc


def test_constant_image_gives_one_label():
    for img in (
        np.full((16, 16), 7, np.uint16),
        np.zeros((10, 12, 3), np.uint8),
        np.full((9, 9), 0.5),
    ):
        res = segment(img, **FAST)
        assert res.labels.shape == img.shape[:2]
        assert np.all(res.labels == 1) and res.n_iter == 0


def test_normalize_constant_channel_is_zero():
    data = np.full((2, 5, 5), 3.0)
    out = apply_ranges(data, channel_ranges(data))
    assert np.all(out == 0)


# --- rejected inputs ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "image, kwargs, match",
    [
        (np.array([[np.nan] * 10] * 10), {}, "NaN or infinite"),
        (np.array([[np.inf] * 10] * 10, dtype=np.float32), {}, "NaN or infinite"),
        (np.zeros(100), {}, "two spatial dimensions"),
        (np.zeros(()), {}, "two spatial dimensions"),
        (np.zeros((7, 100)), {}, "at least 8 x 8"),
        (np.zeros((100, 5, 3)), {}, "at least 8 x 8"),
        (np.zeros((5, 64, 64)), {}, "channel_axis"),
        (np.zeros((4, 5, 64, 64)), {}, "channel_axis"),
        (np.zeros((64, 64, 3)), {"channel_axis": 3}, "out of range"),
        (np.zeros((64, 64, 3)), {"channel_axis": -4}, "out of range"),
        (np.zeros((64, 64)), {"channel_axis": 0}, "1 spatial dimension"),
        (np.zeros((4, 3, 64, 64)), {"channel_axis": 1}, "3 spatial dimension"),
        (np.zeros((100, 120, 3)), {"channel_axis": 0}, "is it a spatial axis"),
        (np.zeros((16, 16), dtype=complex), {}, "unsupported image dtype"),
        (np.array([["a"] * 16] * 16), {}, "unsupported image dtype"),
        (np.zeros((16, 16, 3)), {"channel_axis": 1.5}, "channel_axis must be an integer"),
        (np.ma.masked_less(np.arange(256.0).reshape(16, 16), 10), {}, "masked array"),
    ],
)
def test_bad_input_is_a_clear_value_error(image, kwargs, match):
    with pytest.raises(ValueError, match=match):
        segment(image, **kwargs, **FAST)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"arch": "unet"}, "unknown architecture"),
        ({"n_channels": 1}, "n_channels must be >= 2"),
        ({"max_iter": 0}, "max_iter must be >= 1"),
        ({"n_conv": 0}, "n_conv must be >= 1"),
        ({"lr": 0}, "lr must be > 0"),
        ({"w_con": -1}, "w_con must be >= 0"),
        ({"max_iter": 2.5}, "whole number"),
        ({"init": "he"}, "unknown init"),
        ({"seed": 1.5}, "seed must be a whole number"),
        ({"seed": -1}, "seed must be a whole number from 0"),
        ({"seed": 2**63}, "seed must be a whole number from 0"),
        ({"seed": "abc"}, "seed must be a whole number"),
        ({"lr": float("nan")}, "lr must be a finite number"),
        ({"lr": float("inf")}, "lr must be a finite number"),
        ({"w_con": float("nan")}, "w_con must be a finite number"),
        ({"w_sim": float("nan")}, "w_sim must be a finite number"),
    ],
)
def test_bad_parameters_are_clear_errors(kwargs, match):
    args = {**FAST, **kwargs}
    with pytest.raises(ValueError, match=match):
        segment(np.zeros((16, 16), np.uint8), **args)


def test_values_near_the_float64_limits_are_normalised_without_overflow():
    rng = np.random.default_rng(0)
    image = rng.uniform(0.5, 1.0, (24, 30)) * 1.7e308
    image[:, 15:] *= -1  # two halves: huge positive, huge negative
    data, ranges = prepare(image)
    assert np.isfinite(data).all() and np.isfinite(ranges).all()
    assert data[0, :, :15].min() > data[0, :, 15:].max()  # the halves stay apart


@pytest.mark.parametrize("min_labels, n_channels", [(60, 48), (4, 4)])
def test_min_labels_not_below_the_channels_is_refused(min_labels, n_channels):
    """The stop rule (at most min_labels clusters) would hold before the first step."""
    with pytest.raises(ValueError, match=r"min_labels \(\d+\) must be below n_channels"):
        SegmentParams(min_labels=min_labels, n_channels=n_channels)
    assert SegmentParams(min_labels=3, n_channels=4).min_labels == 3


def test_integral_numbers_of_any_type_are_taken_and_others_named():
    p = SegmentParams(max_iter=15.0, n_channels=np.int64(16), lr=np.float32(0.5), seed=np.uint32(7))
    assert (p.max_iter, p.n_channels, p.seed) == (15, 16, 7)
    assert all(type(v) is int for v in (p.max_iter, p.n_channels, p.seed)) and type(p.lr) is float
    for seed in (3.0, np.float32(3), np.float64(3), np.int8(3)):  # any whole number
        assert SegmentParams(seed=seed).seed == 3 and type(SegmentParams(seed=seed).seed) is int
    assert segment(np.zeros((16, 16), np.uint8), **{**FAST, "max_iter": 2.0}).n_iter <= 2
    for bad, match in (
        ({"max_iter": 2.5}, "max_iter must be a whole number"),
        ({"n_channels": "16"}, "n_channels must be a whole number"),
        ({"n_channels": True}, "n_channels must be a whole number"),
        ({"lr": "0.1"}, "lr must be a number"),
        ({"n_channels": 1e308}, "n_channels must be <= 1000"),
        ({"max_iter": 10**12}, "max_iter must be <= 1000000"),
        ({"memory_gb": 1e300}, "memory_gb must be <= 100000"),
        ({"lr": 1e30}, "lr must be <= 10"),
        ({"device": "--overwrite"}, "unknown device"),
        ({"device": "cuda:x"}, "unknown device"),
    ):
        with pytest.raises(ValueError, match=match):
            SegmentParams(**bad)


def test_a_network_too_large_for_the_memory_is_refused_before_anything_is_allocated():
    from napari_inceptseg import SegmentationError

    image = np.random.default_rng(0).integers(0, 255, (32, 32, 3), dtype=np.uint8)
    with pytest.raises(
        SegmentationError, match=r"n_channels=1000 .* million weights.*use fewer channels"
    ):
        segment(image, n_channels=1000, n_conv=10, memory_gb=0.5, seed=0, device="cpu")
