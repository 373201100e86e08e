"""Adjacent regions merged greedily, lowest weight first, from a heap: the merges of
the finishing step (:mod:`napari_inceptseg.merging`) and the absorption of small regions
and rims (:mod:`napari_inceptseg.regions`, :mod:`napari_inceptseg.distributed.stitch`).
Written here rather than with ``skimage.graph``, whose RAG is built pixel by pixel in
Python callbacks; adjacency comes from array shifts (:func:`~.labels.region_adjacency`).
"""

from __future__ import annotations

import heapq

import numpy as np


class RegionGraph:
    """Adjacent regions, merged greedily (lowest weight first) with a heap.

    ``mode='border'``: weight = mean edge strength along the shared border;
    ``mode='mean'``: weight = root mean square difference of the regions' mean features.
    """

    def __init__(
        self, mode: str, size: np.ndarray, a, b, length, contrast, sums: np.ndarray | None = None
    ):
        self.mode = mode
        self.parent = np.arange(size.size)
        self.size = np.asarray(size, dtype=np.float64).copy()
        self.alive = int((self.size > 0).sum())
        self.sums = None if sums is None else np.asarray(sums, dtype=np.float64).copy()
        self.nbrs: dict[int, dict[int, list]] = {}
        for i, j, ln, ct in zip(
            np.asarray(a).tolist(),
            np.asarray(b).tolist(),
            np.asarray(length).tolist(),
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
