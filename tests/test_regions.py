"""From clusters to regions: each step of the default method's post-processing."""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

from napari_inceptseg import run_to_end
from napari_inceptseg.regions import method as R
from napari_inceptseg.regions import pixels as P
from napari_inceptseg.regions.graph import Borders, RegionStats
from napari_inceptseg.regions.merges import RegionGraph, merged_roots, sized_ward


def _strip(*values, width=4):
    """A 2 x (width * n) label image of vertical stripes with these ids."""
    return np.repeat(np.repeat(np.array([values]), width, 1), 2, 0)


def _merged(labels, mode, threshold, feats=None, edges=None, n_keep=0):
    """``labels`` (ids 1..R) after the finishing step's greedy merge of their numbers."""
    feats = np.zeros((1, *labels.shape)) if feats is None else feats
    stats = RegionStats.of_labels(labels, feats, response_edges=edges)
    return merged_roots(stats, mode, threshold, n_keep)[labels - 1] + 1


def test_merge_adjacent_most_alike_first_until_the_threshold():
    labels = _strip(1, 2, 3)
    feats = np.zeros((2,) + labels.shape)
    feats[:, labels == 2] = 0.5  # 1 and 2 differ by 0.5 (RMS over 2 channels)
    feats[:, labels == 3] = 4.0
    out = _merged(labels, "mean", 1.0, feats)
    assert len(np.unique(out)) == 2 and (out[labels == 1] == out[labels == 2][0]).all()
    assert len(np.unique(_merged(labels, "mean", 0.4, feats))) == 3
    assert len(np.unique(_merged(labels, "mean", 0.0, feats, n_keep=1))) == 1


def test_merge_uses_the_merged_mean():
    # means 0, 0.6, 1.0: 2-3 (0.4 apart) merge first; {2, 3} then has mean 0.8, which is
    # 0.8 from 1, so 1 stays apart although 1-2 alone (0.6) was under the threshold
    labels = _strip(1, 2, 3)
    feats = np.zeros((1,) + labels.shape)
    feats[0, labels == 2] = 0.6
    feats[0, labels == 3] = 1.0
    out = _merged(labels, "mean", 0.65, feats)
    assert (out[labels == 2] == out[labels == 3][0]).all() and out[0, 0] != out[0, -1]


def test_only_touching_regions_merge():
    labels = _strip(1, 2, 3)
    feats = np.zeros((1,) + labels.shape)
    feats[0, labels == 2] = 9.0  # 1 and 3 are alike but never touch
    assert len(np.unique(_merged(labels, "mean", 1.0, feats))) == 3


def test_weak_borders_merge_first():
    labels = _strip(1, 2, 3)
    edges = np.zeros(labels.shape)
    edges[:, 7:9] = 1.0  # a strong edge between 2 and 3
    out = _merged(labels, "border", 0.5, edges=edges)
    assert len(np.unique(out)) == 2 and out[0, 0] == out[0, 5] != out[0, 10]


def test_small_pieces_join_the_nearest_large_region():
    labels = np.ones((10, 10), int)
    labels[:, 5:] = 2
    labels[2, 2] = 3  # one stray pixel inside region 1
    labels[7, 8] = 4  # and one inside region 2
    out = P.absorb_small(labels, 4)
    assert out[2, 2] == 1 and out[7, 8] == 2 and set(np.unique(out)) == {1, 2}


def test_superpixel_vote_removes_noise_inside_flat_regions():
    rng = np.random.default_rng(0)
    image = np.zeros((3, 40, 60), np.float32)
    image[:, :, 30:] = 1.0
    truth = np.where(np.arange(60)[None, :] < 30, 1, 2).repeat(40, 0)
    noisy = np.where(rng.random(truth.shape) < 0.1, 3, truth)  # 10% wrong pixels
    voted = P.superpixel_vote(noisy, image)
    assert (voted == truth).mean() > 0.99


def test_superpixel_vote_follows_the_images_edges_not_a_grid():
    """Clusters that are pure noise on a flat background (a network that has not
    settled there) must not come out as a grid of blocks: every border of the vote
    lies on an edge of the image, and a disc keeps its round outline."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:120, :160]
    disc = (yy - 60) ** 2 + (xx - 80) ** 2 < 35**2
    image = np.stack([np.where(disc, 0.8, 0.2)] * 3).astype(np.float32)
    clusters = np.where(disc, 5, rng.integers(0, 2, disc.shape))  # noise outside the disc
    voted = P.superpixel_vote(clusters, image)
    outline = disc ^ ndi.binary_erosion(disc)
    borders = np.zeros(disc.shape, bool)
    borders[:, 1:] |= voted[:, 1:] != voted[:, :-1]
    borders[1:, :] |= voted[1:, :] != voted[:-1, :]
    # no border further from the disc's outline than the smoothing before the vote reaches
    assert ndi.distance_transform_edt(~outline)[borders].max() <= 4
    assert (voted[disc] == 5).mean() > 0.99


def test_region_stages_give_connected_ids_one_to_r():
    rng = np.random.default_rng(1)
    clusters = np.zeros((40, 60), int)
    clusters[:, 30:] = 1
    clusters[5:10, 5:10] = 1  # a piece of cluster 1 inside cluster 0
    response = rng.normal(0, 0.01, (4, 40, 60))
    response[0, clusters == 0] += 2
    response[1, clusters == 1] += 2
    image = np.stack([clusters.astype(np.float32)] * 3)
    out, hierarchy = run_to_end(
        R.region_stages(clusters, response, image, merge_threshold=0.65, level=0.0)
    )
    assert sorted(np.unique(out)) == [1, 2, 3]  # the island is its own region
    assert hierarchy.n_base == 3 and (hierarchy.cut(1.0) == 1).all()
    limited, _ = run_to_end(
        R.region_stages(clusters, response, image, merge_threshold=0.65, level=0.0, n_clusters=2)
    )
    assert len(np.unique(limited)) == 2


def test_limit_clusters_leaves_few_labels_alone():
    labels = _strip(1, 2, 3)
    feats = np.zeros((1,) + labels.shape)
    same, changed = R.limit_clusters(labels, feats, 5)
    assert same is labels and not changed
    fewer, changed = R.limit_clusters(labels, feats, 2)
    assert changed and len(np.unique(fewer)) == 2 and fewer.min() == 1


def test_grouping_weighs_labels_by_their_pixels():
    # a large background (0), four dim (1) and four bright (2) small nuclei: grouped by
    # their pixels, two groups are background and nuclei; with every label weighing
    # the same, the dim nuclei would go with the background (the bright ones apart)
    yy, xx = np.mgrid[0:100, 0:100]
    labels = np.ones((100, 100), np.int64)
    feats = np.zeros((1, 100, 100))
    centres = [(15 + 23 * (i % 4), 25 + 50 * (i // 4)) for i in range(8)]
    for i, (cy, cx) in enumerate(centres):
        disc = (yy - cy) ** 2 + (xx - cx) ** 2 <= 5**2
        labels[disc] = i + 2
        feats[0][disc] = 1.0 if i < 4 else 2.0
    grouped, _ = R.limit_clusters(labels, feats, 2)
    assert len(np.unique(grouped)) == 2
    assert len(np.unique(grouped[labels > 1])) == 1  # every nucleus in one group
    assert grouped[0, 0] != grouped[labels == 2][0]


def test_sized_ward_with_equal_sizes_is_scipys_ward():
    from scipy.cluster.hierarchy import fcluster, linkage

    points = np.random.default_rng(1).normal(size=(60, 3))
    ours = sized_ward(points, np.ones(60), 4)
    theirs = fcluster(linkage(points, "ward"), 4, "maxclust")
    pairs = np.unique(np.stack([ours, theirs], 1), axis=0)
    assert len(pairs) == 4  # the same partition, whatever the numbering


def test_merging_into_a_region_with_thousands_of_neighbours_keeps_the_heap_small():
    """A background touching thousands of small regions (a whole-slide image's noise)
    re-weighs every border at each merge; stale heap entries must not pile up (they
    took a 6144 x 6144 image's merges to 3.6 GB)."""
    n = 1000
    rng = np.random.default_rng(0)
    size = np.r_[10_000.0, np.full(n, 20.0)]
    features = np.r_[[np.zeros(4)], rng.normal(0, 0.05, (n, 4))]  # every leaf alike the hub
    leaves = np.arange(1, n + 1)
    borders = Borders(np.zeros(n, int), leaves, np.ones(n), np.ones(n), np.ones(n))
    rg = RegionGraph("mean", RegionStats(size, features * size[:, None], borders), np.ones(n))
    rg.merge(0.65)
    assert rg.alive == 1 and (rg.roots() == rg.roots()[0]).all()
    assert len(rg.heap) <= 2 * n + 4096


def test_rims_along_an_edge_join_a_neighbour_and_narrow_objects_stay():
    """A one-pixel ring around a disc (a blurred edge's own cluster) joins the side it
    shares the most border with; a line three pixels wide is an object and stays."""
    yy, xx = np.mgrid[:80, :120]
    r = np.hypot(yy - 40, xx - 40)
    labels = np.where(r < 15, 2, 1)
    labels[(r >= 15) & (r < 16)] = 3  # the rim
    labels[10:70, 100:103] = 4  # a 3-pixel line
    out = P.absorb_thin(labels)
    assert set(np.unique(out)) == {1, 2, 4}
    assert (out[labels == 4] == 4).all() and (out[labels == 2] == 2).all()


def test_grouping_thousands_of_regions_merges_touching_alike_ones_first():
    """Above MAX_ALIKE_LABELS regions (a large image's fine cut), the grouping first
    merges the most alike touching regions, so its distance matrix stays small, and
    still finds the image's two kinds of region."""
    from napari_inceptseg.regions.merges import MAX_ALIKE_LABELS

    side = 3 * 64  # 64 x 64 = 4096 regions of 3 x 3 pixels
    labels = (np.arange(side)[:, None] // 3) * 64 + np.arange(side)[None] // 3 + 1
    assert labels.max() > MAX_ALIKE_LABELS
    rng = np.random.default_rng(0)
    feats = rng.normal(0, 0.05, (2, side, side))
    disc = (np.mgrid[:side, :side] - side / 2) ** 2
    inside = disc.sum(0) < (side / 4) ** 2
    feats[:, inside] += 3.0
    grouped, _ = R.limit_clusters(labels, feats, 2)
    assert set(np.unique(grouped)) == {1, 2}
    kind = grouped[side // 2, side // 2]
    agree = (grouped == kind) == inside
    assert agree.mean() > 0.98  # only 3 x 3 blocks that straddle the disc's edge differ
