"""A region hierarchy: nested partitions from the finest regions up to one region, cut
at a level between 0 and 1 (numpy and higra; no torch).

The finest regions are the default method's regions before any grouping
(:func:`~.method.finest_regions`). Adjacent regions then merge
in a binary partition tree (higra), cheapest pair first. The cost of merging regions
``i`` and ``j`` is

    mean((r_i - r_j)^2) * (n_i n_j / (n_i + n_j) / N) ** SIZE_POWER * (1 + BORDER_WEIGHT * g_ij)

with ``r`` the regions' mean network responses (in standard deviations of the
response), ``n`` their pixel counts out of the image's ``N``, and ``g_ij`` the mean
colour gradient along their shared border (:func:`~.graph.channel_edges`): regions that the
network sees alike, that are small, or that meet across a weak edge merge first. With
``SIZE_POWER = 1`` this is Ward's cost; the square root keeps small, distinct objects
(a nucleus next to a large background) apart for longer. Costs are in the same units on
every image, so a level means the same everywhere: the cost is mapped to a level in
(0, 1] on a log scale between :data:`COST_RANGE`'s ends.

A cut at ``level`` merges every region pair whose merge level is at most ``level``:
``cut(0)`` gives the finest regions, ``cut(1)`` one region, and every cut is a union of
regions of any lower cut. :meth:`RegionHierarchy.ucm` gives the ultrametric contour
map: every border pixel carries the level at which its border disappears.

References
----------
P. Arbeláez, M. Maire, C. Fowlkes and J. Malik, "Contour detection and hierarchical
image segmentation", IEEE TPAMI 33(5), 2011 (the ultrametric contour map and the
region benchmark).
B. Perret, G. Chierchia, J. Cousty, S. J. F. Guimarães, Y. Kenmochi and L. Najman,
"Higra: Hierarchical Graph Analysis", SoftwareX 10, 2019.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

#: how the merge cost grows with the regions' sizes (1: Ward's cost; 0: sizes ignored)
SIZE_POWER = 0.5
#: how much a strong colour edge along the border raises the cost of a merge
BORDER_WEIGHT = 16.0
#: merge costs mapped to levels: COST_RANGE[0] and below -> the lowest level, up to
#: COST_RANGE[1] -> 1, log-linear in between
COST_RANGE = (1e-3, 1e1)
#: the smallest level a merge gets: ``cut(0)`` never merges
_MIN_LEVEL = 1e-6


def cost_to_level(cost) -> np.ndarray:
    """Merge costs to levels in (0, 1] (log scale over :data:`COST_RANGE`)."""
    lo, hi = (math.log10(v) for v in COST_RANGE)
    with np.errstate(divide="ignore"):
        level = (np.log10(np.maximum(np.asarray(cost, dtype=np.float64), 0)) - lo) / (hi - lo)
    return np.clip(level, _MIN_LEVEL, 1.0)


def check_level(level) -> float:
    """``level`` as a float in [0, 1], or a ValueError that says so."""
    if isinstance(level, bool) or not isinstance(level, (int, float, np.integer, np.floating)):
        raise ValueError(
            f"level must be a number from 0 (finest regions) to 1 (one region), got {level!r}"
        )
    if not 0.0 <= float(level) <= 1.0:
        raise ValueError(f"level must be from 0 (finest regions) to 1 (one region), got {level!r}")
    return float(level)


@dataclass(frozen=True)
class RegionHierarchy:
    """Nested partitions of an image (2D or 3D) from its finest regions to one region.

    Attributes
    ----------
    base : ndarray of int32
        The finest regions, numbered 1..R, of the image's spatial shape.
    parents : ndarray of int64
        The binary partition tree: node ``i < R`` is region ``i + 1`` of ``base``, the
        ``R - 1`` nodes after them are merges, each the parent of two nodes.
    node_levels : ndarray of float64
        The level at which each node forms (0 for the finest regions), never lower
        than its children's.

    Examples
    --------
    >>> import numpy as np
    >>> from napari_inceptseg.regions.method import build_hierarchy
    >>> base = np.repeat([[1, 2, 3]], 4, axis=0).repeat(4, axis=1)  # three bands
    >>> response = np.stack([(base == 3) * 4.0, (base == 2) * 0.1])  # band 3 stands out
    >>> h = build_hierarchy(base, response, np.zeros((1, 4, 12)))
    >>> [h.n_regions(level) for level in (0.0, 0.5, 1.0)]
    [3, 2, 1]
    """

    base: np.ndarray
    parents: np.ndarray
    node_levels: np.ndarray
    _tree: list = field(default_factory=list, repr=False, compare=False)

    @property
    def n_base(self) -> int:
        """R, the number of finest regions."""
        return int(self.parents.size + 1) // 2

    @property
    def merge_levels(self) -> np.ndarray:
        """The level of every merge, in the order the tree made them."""
        return self.node_levels[self.n_base :]

    def n_regions(self, level: float) -> int:
        """How many regions :meth:`cut` gives at ``level``."""
        level = check_level(level)
        return (
            self.n_base - int(np.count_nonzero(self.merge_levels <= level))
            if level > 0
            else self.n_base
        )

    def region_ids(self, level: float) -> np.ndarray:
        """The region (1..K) of each finest region at ``level``, as an int32 array of R."""
        return tree_cut(self.parents, self.node_levels, level)

    def cut(self, level: float) -> np.ndarray:
        """The partition at ``level`` (0: the finest regions, 1: one region) as an
        int32 label image numbered 1..K.
        """
        lut = np.concatenate([[0], self.region_ids(level)]).astype(np.int32)
        return lut[self.base]

    def ucm(self) -> np.ndarray:
        """The ultrametric contour map: a float32 image of the base's shape where every
        pixel on a border between regions carries the level at which that border
        disappears (0 inside regions), for display as an Image layer.
        """
        out = np.zeros(self.base.shape, dtype=np.float32)
        if self.n_base < 2:
            return out
        tree = self._higra_tree()
        for axis in range(self.base.ndim):
            lo = [slice(None)] * self.base.ndim
            hi = list(lo)
            lo[axis], hi[axis] = slice(None, -1), slice(1, None)
            x, y = self.base[tuple(lo)], self.base[tuple(hi)]
            cut = x != y
            if not cut.any():
                continue
            meet = tree.lowest_common_ancestor(
                x[cut].astype(np.int64) - 1, y[cut].astype(np.int64) - 1
            )
            strength = self.node_levels[meet].astype(np.float32)
            for side in (lo, hi):
                view = out[tuple(side)]
                view[cut] = np.maximum(view[cut], strength)
        return out

    def with_base(self, base: np.ndarray) -> RegionHierarchy:
        """The same tree over another image of the same regions (e.g. scaled up)."""
        return RegionHierarchy(np.asarray(base, dtype=np.int32), self.parents, self.node_levels)

    def _higra_tree(self):
        if not self._tree:
            import higra as hg

            self._tree.append(hg.Tree(self.parents))
        return self._tree[0]


def tree_cut(parents: np.ndarray, node_levels: np.ndarray, level: float) -> np.ndarray:
    """The region (1..K) of each finest region of a binary partition tree (``parents``,
    ``node_levels``: :class:`RegionHierarchy`) cut at ``level``, as an int32 array of R.
    """
    level = check_level(level)
    n = (parents.size + 1) // 2
    up = np.arange(parents.size)
    if level > 0:
        merged = node_levels <= level
        take = merged[parents]
        up = np.where(take, parents, up)
        while True:  # pointer jumping to the highest merged ancestor
            nxt = up[up]
            if np.array_equal(nxt, up):
                break
            up = nxt
    _, ids = np.unique(up[:n], return_inverse=True)
    return (ids.ravel() + 1).astype(np.int32)


def single_region(base: np.ndarray) -> RegionHierarchy:
    """The hierarchy of an image that is one region (``base`` all 1)."""
    return RegionHierarchy(
        np.asarray(base, dtype=np.int32), np.zeros(1, dtype=np.int64), np.zeros(1)
    )


def hierarchy_tree(stats) -> tuple[np.ndarray, np.ndarray]:
    """``(parents, node_levels)`` of the hierarchy of a region graph
    (:class:`~.graph.RegionStats`: regions ``0..n-1`` with their mean responses and pixel
    counts, adjacent pairs ``(a, b)`` whose border has ``length`` pixel pairs and a colour
    gradient summing to ``img`` along it).
    """
    n = len(stats.size)
    parents, costs = _merge_tree(stats)
    return parents, np.concatenate([np.zeros(n), cost_to_level(costs[n:])])


class _MergeCost:
    """The cost of merging two clusters (module docs), updated as higra merges them."""

    def __init__(self, means, size, length, contrast, total: float):
        n = len(size)
        self.means = np.zeros((2 * n - 1, means.shape[1]))
        self.means[:n] = means
        self.size = np.zeros(2 * n - 1)
        self.size[:n] = size
        self.total = total
        self.length, self.contrast = list(length), list(contrast)  # per edge, merged edges appended

    def cost(self, i: int, j: int, edge: int) -> float:
        d = self.means[i] - self.means[j]
        si, sj = self.size[i], self.size[j]
        scale = (si * sj / (si + sj) / self.total) ** SIZE_POWER
        return (
            float(np.mean(d * d))
            * scale
            * (1.0 + BORDER_WEIGHT * self.contrast[edge] / self.length[edge])
        )

    def __call__(
        self, graph, fusion_edge_index, new_region, merged_region1, merged_region2, new_neighbours
    ):
        s1, s2 = self.size[merged_region1], self.size[merged_region2]
        self.size[new_region] = s1 + s2
        self.means[new_region] = (
            self.means[merged_region1] * s1 + self.means[merged_region2] * s2
        ) / (s1 + s2)
        for nb in new_neighbours:
            edges = [nb.first_edge_index()] + (
                [nb.second_edge_index()] if nb.num_edges() > 1 else []
            )
            new = nb.new_edge_index()
            while len(self.length) <= new:
                self.length.append(0.0)
                self.contrast.append(0.0)
            self.length[new] = sum(self.length[e] for e in edges)
            self.contrast[new] = sum(self.contrast[e] for e in edges)
            nb.set_new_edge_weight(self.cost(new_region, nb.neighbour_vertex(), new))


def _merge_tree(stats) -> tuple[np.ndarray, np.ndarray]:
    """``(parents, costs)`` of the binary partition tree over the regions of ``stats``
    (ids from 0); costs never decrease towards the root.
    """
    import higra as hg

    a, b = np.asarray(stats.a), np.asarray(stats.b)
    graph = hg.UndirectedGraph(len(stats.size))
    graph.add_edges(a, b)
    total = float(np.sum(stats.size))
    cost = _MergeCost(stats.means, stats.size, stats.length, stats.img, total)
    first = np.array(
        [cost.cost(i, j, e) for e, (i, j) in enumerate(zip(a.tolist(), b.tolist(), strict=False))]
    )
    tree, costs = hg.binary_partition_tree(graph, cost, first)
    costs = hg.tree_monotonic_regression(tree, costs, "max")
    return np.asarray(tree.parents(), dtype=np.int64), np.asarray(costs, dtype=np.float64)


@dataclass(frozen=True)
class StackHierarchy:
    """The hierarchies of a stack's planes, cut together: every plane at the same level,
    each plane's regions numbered on from the plane before (as the stack's labels are).

    ``index[k]`` selects plane ``k`` (one hierarchy each) in labels of ``shape``.
    """

    shape: tuple[int, ...]
    index: list[tuple]
    planes: list[RegionHierarchy | None]

    @property
    def n_base(self) -> int:
        """The finest regions of all planes together."""
        return sum(h.n_base for h in self.planes if h is not None)

    def n_regions(self, level: float) -> int:
        """The number of regions of the cut at ``level``."""
        return sum(h.n_regions(level) for h in self.planes if h is not None)

    def cut(self, level: float) -> np.ndarray:
        """The labels of the cut at ``level`` (0: finest, 1: one region)."""
        out = np.zeros(self.shape, dtype=np.int32)
        offset = 0
        for sel, h in zip(self.index, self.planes, strict=False):
            if h is None:
                continue
            labels = h.cut(level)
            out[sel] = labels + offset
            offset += int(labels.max())
        return out

    def ucm(self) -> np.ndarray:
        """The ultrametric contour map: each border's level of disappearance."""
        out = np.zeros(self.shape, dtype=np.float32)
        for sel, h in zip(self.index, self.planes, strict=False):
            if h is not None:
                out[sel] = h.ucm()
        return out


def stack_hierarchy(
    shape: Sequence[int], index: Sequence[tuple], planes: Sequence[RegionHierarchy | None]
) -> StackHierarchy | None:
    """A :class:`StackHierarchy`, or None when no plane has one."""
    if all(h is None for h in planes):
        return None
    return StackHierarchy(tuple(shape), list(index), list(planes))
