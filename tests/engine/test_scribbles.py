"""Scribble guidance: strokes become clusters that keep the user's ids."""

from __future__ import annotations

import numpy as np
import pytest

from napari_inceptseg import score, segment
from napari_inceptseg.image import axis_weights
from napari_inceptseg.labels import make_label_map, prepare_scribbles
from sample_images import one_stroke_per_region, three_close_regions


@pytest.fixture(scope="module")
def guided():
    image, gt = three_close_regions()
    scr = one_stroke_per_region(gt, ids=(2, 5, 7))
    res = segment(
        image, arch="vanilla", n_channels=32, max_iter=80, seed=0, device="cpu", scribbles=scr
    )
    return image, gt, scr, res


def test_scribbled_regions_carry_the_users_ids_and_are_right(guided):
    _, gt, _, res = guided
    for region, sid in zip((1, 2, 3), (2, 5, 7), strict=False):
        assert np.bincount(res.labels[gt == region]).argmax() == sid
    assert score(res.labels, gt)["accuracy"] >= 0.85  # one-to-one (Hungarian)
    assert res.scribble_ids == (2, 5, 7)
    assert res.metadata()["scribble_ids"] == [2, 5, 7]


def test_warm_start_after_more_strokes_is_fast(guided):
    image, gt, scr, res = guided
    more = scr.copy()
    more[50:54, 10:20] = 2
    # refining from the trained network: 10 steps keep the quality that a fresh
    # network needs many more steps for
    again = segment(
        image,
        arch="vanilla",
        n_channels=32,
        max_iter=10,
        seed=0,
        device="cpu",
        scribbles=more,
        init_model=res.trained_model(),
    )
    cold = segment(
        image, arch="vanilla", n_channels=32, max_iter=10, seed=0, device="cpu", scribbles=more
    )
    assert score(again.labels, gt)["accuracy"] >= 0.85
    assert score(again.labels, gt)["accuracy"] > score(cold.labels, gt)["accuracy"]
    assert np.bincount(again.labels[gt == 1]).argmax() == 2


def test_bad_scribbles_are_clear_errors(small_rgb):
    with pytest.raises(ValueError, match="larger than the number of channels"):
        segment(
            small_rgb,
            n_channels=4,
            max_iter=1,
            device="cpu",
            scribbles=np.full(small_rgb.shape[:2], 9),
        )
    with pytest.raises(ValueError, match="shape"):
        segment(small_rgb, max_iter=1, device="cpu", scribbles=np.zeros((5, 5), int))
    with pytest.raises(ValueError, match=">= 0"):
        prepare_scribbles(np.full((4, 4), -1), (4, 4), 10)
    with pytest.raises(ValueError, match="whole-number"):
        prepare_scribbles(np.full((4, 4), 0.5), (4, 4), 10)
    assert prepare_scribbles(np.zeros((4, 4)), (4, 4), 10) == (None, ())  # nothing painted


def test_label_map_keeps_scribble_ids_and_numbers_the_rest():
    lut = make_label_map(present=[0, 3, 4], n_channels=6, scribble_ids=[4])
    # channel 3 is scribble id 4; the other present channels follow it; then the absent ones
    assert lut.tolist() == [5, 7, 8, 4, 6, 9]
    plain = make_label_map(present=[2, 5], n_channels=6)
    assert plain[2] == 1 and plain[5] == 2 and len(set(plain)) == 6


def test_axis_weights_follow_the_spacing():
    assert axis_weights(None, 3) == (1.0, 1.0, 1.0)
    assert axis_weights((4.0, 1.0, 1.0), 3) == (0.25, 1.0, 1.0)
    with pytest.raises(ValueError, match="spacing"):
        axis_weights((1.0, 0.0), 2)
