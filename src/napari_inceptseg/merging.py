"""The default method's finishing step, on a region graph (numpy and higra; no torch):
every path that makes regions ends here, whether its graph was measured on a label
image (:meth:`RegionStats.of_labels`: a whole image, a plane of a stack, the analysis
copy of a large one) or gathered block by block on a Dask cluster
(:mod:`napari_inceptseg.distributed.stitch`).

1. :func:`merge_finest`: adjacent regions merge, weakest border first, while the
   network's response changes little across their border (:data:`EDGE_THRESHOLD`),
   then, most alike first, while their mean responses differ by less than
   ``merge_threshold``: these are the finest regions;
2. :func:`cut_regions`: their hierarchy (:func:`~napari_inceptseg.hierarchy.hierarchy_tree`)
   is cut at ``level`` and, with ``n_clusters``, the regions of that cut are grouped
   (touching or not) into that many labels (:func:`group_regions`).

The papers' presets, whose clusters are not made into regions, are grouped to
``n_clusters`` by the same :func:`group_regions`.
"""

from __future__ import annotations

import numpy as np

from .hierarchy import RegionHierarchy, channel_edges, hierarchy_tree, single_region, tree_cut
from .labels import region_adjacency, region_sums
from .region_graph import RegionGraph

#: step 1: merge while the border's mean response gradient (root mean square over
#: channels of the Sobel magnitude) is below this
EDGE_THRESHOLD = 0.22
#: above this many regions, touching ones are merged first before the grouping (which
#: keeps a region-by-region distance matrix: 3000 regions take 72 MB)
MAX_ALIKE_LABELS = 3000


class RegionStats:
    """Regions ``0..n-1``: their sizes, sums of the network's response, and borders
    (pairs ``a < b``, length in face-neighbour pixel pairs, and the response's and the
    colour's gradient summed along them).
    """

    def __init__(self, size, sums, a, b, length, resp, img):
        self.size, self.sums = np.asarray(size, np.float64), np.asarray(sums, np.float64)
        self.a, self.b = np.asarray(a, np.int64), np.asarray(b, np.int64)
        self.length, self.resp, self.img = (np.asarray(v, np.float64) for v in (length, resp, img))

    @classmethod
    def of_labels(cls, labels, response, response_edges=None, image_edges=None, borders=True):
        """The numbers of the regions of ``labels`` (ids 1..R, all present): region
        ``r - 1`` is id ``r``; ``response`` is ``(C, *spatial)``; the two edge maps (of
        the spatial shape; zeros when not given) are summed along the borders, which are
        left out with ``borders=False``.
        """
        n = int(labels.max())
        size = np.bincount(labels.ravel(), minlength=n + 1)[1:]
        sums = region_sums(labels, response, n + 1)[1:]
        if not borders:
            empty = np.zeros(0)
            return cls(size, sums, empty, empty, empty, empty, empty)
        a, b, length, resp, img = region_adjacency(labels, response_edges, image_edges)
        return cls(size, sums, a - 1, b - 1, length, resp, img)

    def coarsen(self, roots: np.ndarray) -> tuple[RegionStats, np.ndarray]:
        """The numbers after merging each region into ``roots[region]``, and the new id
        (0..m-1, in the order of the roots) of every old region.
        """
        _, new = np.unique(roots, return_inverse=True)
        new = new.ravel()
        m = int(new.max()) + 1
        size = np.bincount(new, self.size, minlength=m)
        sums = np.zeros((m, self.sums.shape[1]))
        np.add.at(sums, new, self.sums)
        a, b = new[self.a], new[self.b]
        keep = a != b
        lo, hi = np.minimum(a, b)[keep], np.maximum(a, b)[keep]
        pair, inv = np.unique(lo * m + hi, return_inverse=True)
        sum_on = [
            np.bincount(inv, v[keep], minlength=pair.size)
            for v in (self.length, self.resp, self.img)
        ]
        return RegionStats(size, sums, pair // m, pair % m, *sum_on), new

    def subset(self, mine: np.ndarray) -> RegionStats:
        """The numbers of the regions ``mine`` (numbered 0.. in that order) and of the
        borders between them.
        """
        local = np.full(len(self.size), -1)
        local[mine] = np.arange(mine.size)
        keep = (local[self.a] >= 0) & (local[self.b] >= 0)
        return RegionStats(
            self.size[mine],
            self.sums[mine],
            local[self.a[keep]],
            local[self.b[keep]],
            self.length[keep],
            self.resp[keep],
            self.img[keep],
        )

    @property
    def means(self) -> np.ndarray:
        """Mean response of every region, one row per region."""
        return self.sums / np.maximum(self.size, 1)[:, None]

    def merged(self, mode: str, threshold: float, n_keep: int = 0) -> np.ndarray:
        """The region each region ends in after :class:`RegionGraph`'s greedy merge:
        ``"border"`` by the response's gradient along the border, ``"mean"`` by the
        mean responses.
        """
        graph = RegionGraph(
            mode,
            self.size,
            self.a,
            self.b,
            self.length,
            self.resp,
            sums=self.sums if mode == "mean" else None,
        )
        graph.merge(threshold, n_keep)
        return graph.roots()


def merge_finest(stats: RegionStats, merge_threshold: float) -> tuple[RegionStats, np.ndarray]:
    """Step 1 (module docs): the finest regions' numbers, and each region's finest
    region (0..F-1, in the order of the regions).
    """
    stats, ids = stats.coarsen(stats.merged("border", EDGE_THRESHOLD))
    if merge_threshold > 0:
        stats, new = stats.coarsen(stats.merged("mean", merge_threshold))
        ids = new[ids]
    return stats, ids


def cut_regions(stats: RegionStats, *, level: float, n_clusters: int = 0):
    """Step 2 (module docs) on the finest regions' numbers: ``(parents, node_levels,
    labels)``, the hierarchy's tree (None for fewer than two regions, or none touching)
    and each region's label 1..K at ``level``, grouped to ``n_clusters`` if asked.
    """
    parents = levels = None
    if len(stats.size) > 1 and stats.a.size:
        parents, levels = hierarchy_tree(
            stats.a, stats.b, stats.length, stats.img, stats.means, stats.size
        )
        cut = tree_cut(parents, levels, level)
    else:
        cut = np.ones(len(stats.size), dtype=np.int32)
    if n_clusters and cut.max() > n_clusters:
        grouped, new = stats.coarsen(cut)
        cut = group_regions(grouped, n_clusters)[new].astype(np.int32)
    return parents, levels, cut


def as_hierarchy(base: np.ndarray, parents, node_levels) -> RegionHierarchy:
    """The :class:`~napari_inceptseg.hierarchy.RegionHierarchy` over the label image
    ``base`` (ids 1..R) of a tree from :func:`cut_regions` (one region when there is none).
    """
    if parents is None:
        return single_region(base)
    return RegionHierarchy(np.asarray(base, dtype=np.int32), parents, node_levels)


def build_hierarchy(base: np.ndarray, response: np.ndarray, image: np.ndarray) -> RegionHierarchy:
    """The hierarchy over the regions of a label image.

    Parameters
    ----------
    base : ndarray of int
        Regions numbered 1..R, each connected, of the spatial shape.
    response : ndarray
        The network's response, ``(C, *spatial)``.
    image : ndarray
        Its input, ``(C', *spatial)``, about 0..1: the colour edges along the borders.

    Returns
    -------
    RegionHierarchy
        R - 1 merges (:mod:`napari_inceptseg.hierarchy`), each in a few microseconds.

    Examples
    --------
    >>> import numpy as np
    >>> base = np.repeat([[1, 2]], 4, axis=0).repeat(4, axis=1)
    >>> build_hierarchy(base, np.stack([(base == 2) * 1.0]), np.zeros((1, 4, 8))).n_base
    2
    """
    stats = RegionStats.of_labels(base, response, image_edges=channel_edges(image))
    parents, levels, _ = cut_regions(stats, level=0.0)
    return as_hierarchy(base, parents, levels)


def group_regions(stats: RegionStats, n_keep: int) -> np.ndarray:
    """Each region's group 1..K (K at most ``n_keep``): Ward's clustering of the mean
    responses with each region weighted by its pixels (:func:`sized_ward`), so the
    groups are those of the image's pixels (a large background counts as much as its
    area), touching or not: a group may be several separate pieces (nuclei and
    background: two groups, many nuclei). Above :data:`MAX_ALIKE_LABELS` regions, the
    most alike touching ones merge first.
    """
    new = np.arange(len(stats.size))
    if len(stats.size) > MAX_ALIKE_LABELS:
        stats, new = stats.coarsen(stats.merged("mean", np.inf, MAX_ALIKE_LABELS))
    if len(stats.size) <= n_keep:
        return new + 1
    return sized_ward(stats.means, stats.size, n_keep)[new] + 1


def sized_ward(means: np.ndarray, sizes: np.ndarray, n_keep: int) -> np.ndarray:
    """Ward's agglomerative clustering of points that each stand for ``sizes`` equal
    points at ``means`` (``(N, C)``), down to ``n_keep`` groups; returns each point's
    group 0..n_keep-1. Written here because scipy's ``linkage`` gives every point the
    same weight. Lance-Williams updates with a nearest-neighbour cache: Ward's
    distance is reducible, so only rows whose nearest neighbour merged are searched.
    """
    n = len(means)
    size = np.asarray(sizes, dtype=np.float64).copy()
    m = np.asarray(means, dtype=np.float64)
    sq = (m * m).sum(1)
    dist = np.maximum(sq[:, None] + sq[None] - 2 * m @ m.T, 0)  # squared distances
    dist *= 2 * size[:, None] * size[None] / (size[:, None] + size[None])
    np.fill_diagonal(dist, np.inf)
    nearest = dist.argmin(1)
    every = np.arange(n)
    root = every.copy()
    for _ in range(n - n_keep):
        i = int(np.argmin(dist[every, nearest]))
        j = int(nearest[i])
        row = ((size[i] + size) * dist[i] + (size[j] + size) * dist[j] - size * dist[i, j]) / (
            size[i] + size[j] + size
        )
        dist[i], dist[:, i] = row, row
        dist[j], dist[:, j] = np.inf, np.inf
        dist[i, i] = np.inf
        size[i] += size[j]
        root[root == j] = i
        stale = np.flatnonzero((nearest == i) | (nearest == j))
        nearest[stale] = dist[stale].argmin(1)
        nearest[i] = dist[i].argmin()
        closer = row < dist[every, nearest]
        nearest[closer] = i
    return np.unique(root, return_inverse=True)[1].ravel()
