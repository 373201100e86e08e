"""The region hierarchy: nested cuts from the finest regions to one, its contour map, and
what it finds on images whose regions are known."""

from __future__ import annotations

import numpy as np
import pytest

from napari_inceptseg import score, segment
from napari_inceptseg.regions.hierarchy import cost_to_level
from napari_inceptseg.regions.method import build_hierarchy
from napari_inceptseg.sample_data import synthetic_regions

LEVELS = np.linspace(0, 1, 21)


def _bands(widths, values):
    """Vertical bands (regions 1..n) and a one-channel response with a value per band."""
    base = np.repeat(np.arange(1, len(widths) + 1), widths)[None, :].repeat(8, 0)
    response = np.asarray(values, dtype=float)[base - 1][None]
    return base, response


def test_cuts_go_from_the_finest_regions_to_one_and_follow_the_costs():
    # four bands; 1|2 differ by 0.1, 3|4 by 0.2, 2|3 by 4: 1+2 merge first, then 3+4, then all
    base, response = _bands([10, 10, 10, 10], [0.0, 0.1, 4.1, 4.3])
    h = build_hierarchy(base, response, np.zeros((1, *base.shape)))
    assert h.n_base == 4 and h.n_regions(0.0) == 4 and h.n_regions(1.0) == 1
    np.testing.assert_array_equal(h.cut(0.0), base)
    assert (h.cut(1.0) == 1).all()
    levels = h.merge_levels
    assert np.all(np.diff(levels) >= 0) and levels[-1] == pytest.approx(levels.max())
    # the cheapest merge is 1+2: 0.1^2 x (10 x 8 / 2 / 320)^0.5 = 0.005
    assert levels[0] == pytest.approx(cost_to_level(0.1**2 * (40 / 320) ** 0.5))
    two = h.cut(levels[1])
    assert (
        len(np.unique(two)) == 2
        and len(np.unique(two[:, :20])) == 1
        and len(np.unique(two[:, 20:])) == 1
    )


def test_a_strong_edge_along_a_border_delays_its_merge():
    base, response = _bands([10, 10, 10], [0.0, 1.0, 2.0])  # 1|2 and 2|3 equally alike
    image = np.zeros((1, *base.shape))
    image[0, :, 20:] = 1.0  # but a colour edge runs along 2|3
    h = build_hierarchy(base, response, image)
    first = h.cut(h.merge_levels[0])
    assert first[0, 0] == first[0, 10] != first[0, 25]


def test_every_cut_is_a_union_of_the_regions_of_any_lower_cut():
    image, _ = synthetic_regions((64, 80), n_regions=4, seed=3)
    res = segment(image, seed=0, device="cpu")
    h = res.hierarchy
    cuts = [h.cut(v) for v in LEVELS]
    counts = [h.n_regions(v) for v in LEVELS]
    assert counts == [len(np.unique(c)) for c in cuts] and counts == sorted(counts, reverse=True)
    for fine, coarse in zip(cuts, cuts[1:], strict=False):
        pairs = np.unique(np.stack([fine.ravel(), coarse.ravel()]), axis=1)
        # each fine region lies in one coarse region
        assert len(np.unique(pairs[0])) == pairs.shape[1]
    np.testing.assert_array_equal(res.labels, h.cut(res.level))


def _borders(labels):
    """Pixels with a face neighbour of another label."""
    out = np.zeros(labels.shape, bool)
    for axis in range(labels.ndim):
        lo, hi = [slice(None)] * labels.ndim, [slice(None)] * labels.ndim
        lo[axis], hi[axis] = slice(None, -1), slice(1, None)
        cut = labels[tuple(lo)] != labels[tuple(hi)]
        out[tuple(lo)] |= cut
        out[tuple(hi)] |= cut
    return out


def test_the_contour_map_holds_the_level_where_each_border_disappears():
    """Thresholding the map at a level gives exactly the borders of that level's cut."""
    image, _ = synthetic_regions((48, 64), n_regions=4, seed=1)
    h = segment(image, seed=0, device="cpu").hierarchy
    ucm = h.ucm()
    assert ucm.shape == h.base.shape and ucm.dtype == np.float32 and 0 < ucm.max() <= 1
    for level in [0.0, *np.unique(h.merge_levels)]:
        np.testing.assert_array_equal(ucm > np.float32(level), _borders(h.cut(level)))


def test_the_hierarchy_holds_the_true_regions_of_the_synthetic_sample(synthetic):
    """Some level of the default's hierarchy matches the ground truth's regions almost
    exactly, with about as many regions."""
    image, gt = synthetic
    h = segment(image, seed=0, device="cpu").hierarchy
    best = max(LEVELS, key=lambda v: score(h.cut(v), gt)["covering"])
    assert score(h.cut(best), gt)["covering"] > 0.9
    assert abs(h.n_regions(best) - len(np.unique(gt))) <= 3


def test_stacks_and_volumes_have_hierarchies():
    from napari_inceptseg.engine.workflow.stack import segment_stack

    planes = np.stack([synthetic_regions((40, 48), n_regions=3, seed=k)[0] for k in range(3)])
    stack = segment_stack(planes, rgb=True, seed=0, device="cpu")
    np.testing.assert_array_equal(stack.hierarchy.cut(stack.level), stack.labels)
    assert (
        stack.hierarchy.n_regions(stack.level)
        == stack.labels.max()
        <= stack.hierarchy.n_regions(0.0)
    )
    one_each = stack.hierarchy.cut(1.0)
    assert [len(np.unique(p)) for p in one_each] == [1, 1, 1] and len(np.unique(one_each)) == 3
    volume = segment(planes, dims="3d", seed=0, device="cpu")
    assert (
        volume.hierarchy.base.shape == planes.shape[:3]
        and volume.hierarchy.ucm().shape == planes.shape[:3]
    )
    np.testing.assert_array_equal(volume.hierarchy.cut(volume.level), volume.labels)


def test_bad_levels_are_refused_by_name():
    h = segment(synthetic_regions((32, 40), n_regions=2, seed=0)[0], seed=0, device="cpu").hierarchy
    for bad in (-0.1, 1.5, float("nan"), "0.5", None):
        with pytest.raises(ValueError, match="level must be"):
            h.cut(bad)


def test_n_clusters_keeps_its_own_grouping():
    image, _ = synthetic_regions((48, 64), n_regions=4, seed=2)
    res = segment(image, n_clusters=2, seed=0, device="cpu")
    assert res.labels.max() <= 2 and res.hierarchy.n_regions(0.0) >= res.labels.max()
