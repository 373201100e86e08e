"""nD images plane by plane: layout, plane selection, warm start and consistent ids."""

from __future__ import annotations

import numpy as np
import pytest

from napari_inceptseg import score
from napari_inceptseg.engine.workflow.progress import run_to_end
from napari_inceptseg.engine.workflow.stack import segment_stack_iter
from napari_inceptseg.image import plane_layout

FAST = dict(arch="vanilla", n_channels=16, max_iter=4, min_labels=1, seed=0, device="cpu")


def test_plane_layout_variants():
    lay = plane_layout((5, 3, 20, 30), channel_axis=1)
    assert lay.leading_axes == (0,) and lay.yx_axes == (2, 3) and lay.labels_shape == (5, 20, 30)
    img = np.arange(5 * 3 * 20 * 30).reshape(5, 3, 20, 30)
    assert np.array_equal(lay.plane(img, (2,)), np.moveaxis(img[2], 0, -1))
    assert lay.labels_index((2,)) == (2, slice(None), slice(None))
    rgb = plane_layout((4, 20, 30, 3), rgb=True)
    assert rgb.leading_axes == (0,) and rgb.labels_shape == (4, 20, 30)
    chan_last = plane_layout((20, 30, 4), channel_axis=2)
    assert chan_last.leading_axes == () and chan_last.yx_axes == (0, 1)
    with pytest.raises(ValueError, match="fewer than two spatial"):
        plane_layout((3, 20), channel_axis=0)
    with pytest.raises(ValueError, match="out of range"):
        plane_layout((3, 20, 20), channel_axis=5)


def test_2d_image_is_one_plane(small_rgb):
    res = run_to_end(segment_stack_iter(small_rgb, rgb=True, **FAST))
    assert res.labels.shape == small_rgb.shape[:2] and res.planes == [()]
    assert res.labels.min() == 1


def test_selected_planes_only_and_progress_records():
    img = np.random.default_rng(0).random((3, 2, 16, 18)).astype(np.float32)
    records = []
    res = run_to_end(segment_stack_iter(img, channel_axis=1, planes=[(1,)], **FAST), records.append)
    assert res.labels.shape == (3, 16, 18)
    assert res.labels[0].max() == 0 and res.labels[2].max() == 0 and res.labels[1].min() >= 1
    assert (
        {r.plane for r in records} == {0} and records[0].n_planes == 1 and records[0].index == (1,)
    )
    with pytest.raises(ValueError, match="does not fit"):
        run_to_end(segment_stack_iter(img, channel_axis=1, planes=[(3,)], **FAST))


def _moving_squares(n=4, shape=(40, 48), seed=0):
    """Frames with a bright square moving right on a dark noisy background."""
    rng = np.random.default_rng(seed)
    gt = np.ones((n, *shape), dtype=np.int32)
    for t in range(n):
        gt[t, 10:28, 6 + 5 * t : 24 + 5 * t] = 2
    img = np.where(gt == 2, 200.0, 50.0) + rng.normal(0, 8, gt.shape)
    return np.clip(img, 0, 255).astype(np.uint8), gt


def test_warm_start_keeps_ids_consistent_along_the_stack():
    """Scoring the whole stack at once needs one id per object in every frame: with
    warm start it scores as well as the frames do one by one, without it much worse."""
    img, gt = _moving_squares()
    kw = dict(
        preset="paper-vanilla", n_channels=16, max_iter=60, min_labels=2, seed=0, device="cpu"
    )
    warm = run_to_end(segment_stack_iter(img, warm_start=True, **kw))
    cold = run_to_end(segment_stack_iter(img, warm_start=False, **kw))
    assert warm.labels.shape == gt.shape

    def stack_and_frames(labels):
        whole = score(labels, gt)["accuracy"]
        frames = np.mean([score(labels[t], gt[t])["accuracy"] for t in range(len(gt))])
        return whole, frames

    whole, frames = stack_and_frames(warm.labels)
    assert whole >= frames - 0.01
    assert whole > stack_and_frames(cold.labels)[0] + 0.1
    assert score(warm.labels, gt, matching="majority")["accuracy"] >= 0.95
