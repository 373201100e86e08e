"""The merges on a region graph (numpy; no torch): :class:`RegionGraph`, adjacent
regions merged greedily from a heap, lowest weight first, and the rules built on it:
small regions and rims joined to a neighbour, weak borders and alike neighbours merged
(the finest regions), and the size-weighted grouping to ``n_clusters``. Written here
rather than with ``skimage.graph``, whose RAG is built pixel by pixel in Python
callbacks.
"""

from __future__ import annotations

import heapq

import numpy as np

from .graph import RegionStats

#: merge while the border's mean response gradient (root mean square over channels of
#: the Sobel magnitude) is below this
EDGE_THRESHOLD = 0.22
#: above this many regions, touching ones are merged first before the grouping (which
#: keeps a region-by-region distance matrix: 3000 regions take 72 MB)
MAX_ALIKE_LABELS = 3000
#: regions narrower than this (pixels: twice their size over their border with other
#: regions) are rims along an edge, not objects; they join the neighbour they share the
#: most border with
MIN_REGION_WIDTH = 2.0


class RegionGraph:
    """Adjacent regions, merged greedily (lowest weight first) with a heap.

    ``mode='border'``: weight = mean ``contrast`` (one value per border of ``stats``)
    along the shared border; ``mode='mean'``: weight = root mean square difference of the
    regions' mean responses.
    """

    def __init__(self, mode: str, stats: RegionStats, contrast):
        self.mode = mode
        self.parent = np.arange(stats.size.size)
        self.size = stats.size.copy()
        self.alive = int((self.size > 0).sum())
        self.sums = stats.sums.copy() if mode == "mean" else None
        self.nbrs: dict[int, dict[int, list]] = {}
        for i, j, ln, ct in zip(
            stats.a.tolist(),
            stats.b.tolist(),
            stats.length.tolist(),
            np.asarray(contrast).tolist(),
            strict=False,
        ):
            self.nbrs.setdefault(i, {})[j] = [ln, ct]
            self.nbrs.setdefault(j, {})[i] = [ln, ct]
        self.heap = [(self._weight(i, j), i, j) for i, js in self.nbrs.items() for j in js if i < j]
        heapq.heapify(self.heap)

    def _weight(self, i: int, j: int) -> float:
        if self.mode == "border":
            length, contrast = self.nbrs[i][j]
            return contrast / length
        d = self.sums[i] / self.size[i] - self.sums[j] / self.size[j]
        return float(np.sqrt(np.mean(d * d)))

    def _merge(self, keep: int, gone: int) -> None:
        self.parent[gone] = keep
        self.size[keep] += self.size[gone]
        if self.sums is not None:
            self.sums[keep] += self.sums[gone]
        moved = self.nbrs.pop(gone)
        for k, (ln, ct) in moved.items():
            del self.nbrs[k][gone]
            if k == keep:
                continue
            both = self.nbrs[keep].setdefault(k, [0.0, 0.0])
            both[0] += ln
            both[1] += ct
            self.nbrs[k][keep] = both
        # a mean weight changes on every border of keep; a border weight only where
        # gone's borders joined keep's (the others' heap entries stay valid)
        changed = self.nbrs[keep] if self.mode == "mean" else [k for k in moved if k != keep]
        for k in changed:
            heapq.heappush(self.heap, (self._weight(keep, k), min(keep, k), max(keep, k)))
        self.alive -= 1

    def join_longest_border(self, r: int) -> None:
        """Merge region ``r`` (if it is still a region of its own and has neighbours)
        into the neighbour it shares the most border with.
        """
        if self.parent[r] == r and self.nbrs.get(r):
            best = max(self.nbrs[r], key=lambda k: self.nbrs[r][k][0])
            self._merge(best, r)

    def _compact(self) -> None:
        """The heap rebuilt from the live borders (one entry each, at its current
        weight), so that stale entries do not pile up around a region with thousands
        of neighbours; the merge order is unchanged.
        """
        self.heap = [(self._weight(i, j), i, j) for i, js in self.nbrs.items() for j in js if i < j]
        heapq.heapify(self.heap)
        self._heap_limit = 2 * len(self.heap) + 4096

    def merge(self, threshold: float, n_keep: int = 0) -> None:
        """Merge adjacent pairs, lowest weight first, while the weight is below
        ``threshold`` -- or, with ``n_keep > 0``, until ``n_keep`` regions remain.
        """
        self._heap_limit = 2 * len(self.heap) + 4096
        while self.heap and (self.alive > n_keep if n_keep else True):
            if len(self.heap) > self._heap_limit:
                self._compact()
            w, i, j = heapq.heappop(self.heap)
            if not n_keep and w >= threshold:
                break
            if i not in self.nbrs or j not in self.nbrs[i] or w != self._weight(i, j):
                continue  # a stale entry: a region it names has merged since
            self._merge(i, j) if self.size[i] >= self.size[j] else self._merge(j, i)

    def roots(self) -> np.ndarray:
        """The id every id has merged into."""
        root = self.parent.copy()
        while True:  # path compression until every id points at its root
            nxt = root[root]
            if np.array_equal(nxt, root):
                break
            root = nxt
        return root


def merged_roots(stats: RegionStats, mode: str, threshold: float, n_keep: int = 0) -> np.ndarray:
    """The region each region ends in after :class:`RegionGraph`'s greedy merge:
    ``"border"`` by the response's gradient along the border, ``"mean"`` by the mean
    responses.
    """
    graph = RegionGraph(mode, stats, stats.resp)
    graph.merge(threshold, n_keep)
    return graph.roots()


def thin_roots(stats: RegionStats) -> np.ndarray:
    """The region each region ends in when every region narrower than
    :data:`MIN_REGION_WIDTH` joins, narrowest first, the neighbour it shares the most
    border with.
    """
    width = 2 * stats.size / np.maximum(stats.border, 1)
    graph = RegionGraph("border", stats, stats.length)
    for r in np.argsort(width, kind="stable"):
        if width[r] >= MIN_REGION_WIDTH:
            break
        graph.join_longest_border(int(r))
    return graph.roots()


def merge_finest(stats: RegionStats, merge_threshold: float) -> tuple[RegionStats, np.ndarray]:
    """The finest regions: adjacent regions merge, weakest border first, while the
    network's response changes little across their border (:data:`EDGE_THRESHOLD`),
    then, most alike first, while their mean responses differ by less than
    ``merge_threshold``. Returns their numbers, and each region's finest region
    (0..F-1, in the order of the regions).
    """
    stats, ids = stats.coarsen(merged_roots(stats, "border", EDGE_THRESHOLD))
    if merge_threshold > 0:
        stats, new = stats.coarsen(merged_roots(stats, "mean", merge_threshold))
        ids = new[ids]
    return stats, ids


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
        stats, new = stats.coarsen(merged_roots(stats, "mean", np.inf, MAX_ALIKE_LABELS))
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
