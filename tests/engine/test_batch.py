"""Several images side by side give exactly what running them one by one gives."""

from __future__ import annotations

import numpy as np
import pytest

from napari_inceptseg import segment
from napari_inceptseg.engine.batch import map_side_by_side, segment_batch
from napari_inceptseg.sample_data import synthetic_regions

RUNS = {
    "default": dict(preset="default"),
    "paper-vanilla": dict(preset="paper-vanilla", max_iter=12, n_channels=24),
    "paper-inception": dict(preset="paper-inception", max_iter=4, n_channels=16),
}


@pytest.fixture(scope="module")
def images():
    # different sizes and contents, so that each run stops at its own iteration
    return [synthetic_regions(shape, n_regions=2 + k % 3, seed=k)[0] for k, shape in
            enumerate([(40, 56), (48, 40), (40, 56), (36, 44)])]


@pytest.mark.parametrize("method", list(RUNS))
def test_side_by_side_equals_one_by_one(images, method):
    kw = dict(RUNS[method], device="cpu")
    seeds = [11, 5, 0, 7]
    together = segment_batch(images, batch=3, seeds=seeds, **kw)
    for image, seed, res in zip(images, seeds, together):
        alone = segment(image, seed=seed, **kw)
        np.testing.assert_array_equal(res.labels, alone.labels)
        assert res.n_iter == alone.n_iter and res.stop_reason == alone.stop_reason
        assert res.history == alone.history and res.seed == seed


def test_results_keep_their_order_and_errors_their_index():
    def fn(k):
        if k == 2:
            raise ValueError("bad image 2")
        return k * k

    got = sorted(map_side_by_side(fn, range(5), batch=2, device="cpu"), key=lambda t: t[0])
    assert [(k, r) for k, r, e in got if e is None] == [(0, 0), (1, 1), (3, 9), (4, 16)]
    (err,) = [e for _, _, e in got if e is not None]
    assert str(err) == "bad image 2"
    with pytest.raises(ValueError, match="seeds for"):
        segment_batch([np.zeros((8, 8))] * 2, seeds=[1], device="cpu")
