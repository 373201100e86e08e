"""From every block's regions to the image's (numpy and scipy; no torch): global ids,
regions joined across block faces, and the default method's merges and hierarchy cut
decided on whole-image region statistics, never per block.

1. Each block's regions get global ids (the blocks before it hold the lower ones).
2. Two pixels facing each other across a block face with the same cluster join their
   regions (scipy's connected components), so an object crossing block borders keeps
   one id; facing pixels of different clusters are a border between regions.
3. The regions' sizes, response sums and borders are summed over blocks, and the
   merges of the default method run on that graph, plane by plane: small regions join
   the neighbour they share most border with, then weak borders and alike neighbours
   merge (:mod:`napari_inceptseg.regions`), then the hierarchy
   (:func:`napari_inceptseg.hierarchy.hierarchy_tree`) is cut at ``level``.

The result is one table from global ids to the final labels, numbered 1..K plane after
plane.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .blocks import Block


class Graph:
    """Regions ``0..n-1`` of one plane: sizes, response sums, and borders (pairs, length,
    summed response gradient and colour gradient along them).
    """

    def __init__(self, size, sums, a, b, length, resp, img):
        self.size, self.sums = np.asarray(size, np.float64), np.asarray(sums, np.float64)
        self.a, self.b = np.asarray(a, np.int64), np.asarray(b, np.int64)
        self.length, self.resp, self.img = (np.asarray(v, np.float64) for v in (length, resp, img))

    def coarsen(self, roots: np.ndarray) -> tuple[Graph, np.ndarray]:
        """The graph of the regions after merging each region into ``roots[region]``,
        and the new id (0..m-1) of every old region.
        """
        _, new = np.unique(roots, return_inverse=True)
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
        return Graph(size, sums, pair // m, pair % m, *sum_on), new

    @property
    def means(self) -> np.ndarray:
        """Mean response (or colour) of every region, one row per region."""
        return self.sums / np.maximum(self.size, 1)[:, None]


def face_pairs(blocks: Sequence[Block], stats: Sequence[dict], offsets: np.ndarray):
    """Across every face between two blocks: ``(joins, borders)``, pairs of global ids
    that join (same cluster) and border arrays ``(a, b, length, resp, img)`` (another).
    """
    where = {(blk.plane, blk.y[0], blk.x[0]): blk.index for blk in blocks}
    joins, borders = [], []
    for blk, st in zip(blocks, stats, strict=False):
        for side, other_side, key in (
            ("right", "left", (blk.plane, blk.y[0], blk.x[1])),
            ("bottom", "top", (blk.plane, blk.y[1], blk.x[0])),
        ):
            nb = where.get(key)
            if nb is None:
                continue
            other = stats[nb]
            ga = offsets[blk.index] + st[f"{side}_ids"]
            gb = offsets[nb] + other[f"{other_side}_ids"]
            same = st[f"{side}_clusters"] == other[f"{other_side}_clusters"]
            joins.append(np.stack([ga[same], gb[same]]))
            resp = 0.5 * (st[f"{side}_resp"] + other[f"{other_side}_resp"])
            img = 0.5 * (st[f"{side}_img"] + other[f"{other_side}_img"])
            diff = ~same
            borders.append((ga[diff], gb[diff], np.ones(int(diff.sum())), resp[diff], img[diff]))
    return joins, borders


def global_graph(
    blocks: Sequence[Block], stats: Sequence[dict]
) -> tuple[Graph, np.ndarray, np.ndarray]:
    """``(graph, region of every global id, offsets)``: blocks' regions joined across faces."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    counts = np.array([int(st["n"]) for st in stats])
    offsets = np.concatenate([[0], np.cumsum(counts)[:-1]])
    n = int(counts.sum())
    joins, borders = face_pairs(blocks, stats, offsets)
    pairs = np.concatenate(joins, axis=1) if joins else np.zeros((2, 0), np.int64)
    links = coo_matrix((np.ones(pairs.shape[1]), (pairs[0], pairs[1])), shape=(n, n))
    _, region = connected_components(links, directed=False)
    inner = [
        (
            offsets[k] + st["a"],
            offsets[k] + st["b"],
            st["length"],
            st["resp_contrast"],
            st["img_contrast"],
        )
        for k, st in enumerate(stats)
    ]
    cols = [np.concatenate([part[i] for part in inner + borders]) for i in range(5)]
    sums = np.concatenate([st["sums"] for st in stats])
    size = np.concatenate([st["size"] for st in stats])
    graph = Graph(size, sums, *cols)
    merged, new = graph.coarsen(region)
    return merged, new, offsets


def final_labels(graph: Graph, planes: np.ndarray, params: dict, plane_pixels: int) -> np.ndarray:
    """The final label (1..K over the whole image, plane after plane) of every region of
    ``graph``; ``planes[r]`` is region ``r``'s plane number.
    """
    out = np.zeros(len(graph.size), dtype=np.int64)
    offset = 0
    for p in np.unique(planes):
        mine = np.flatnonzero(planes == p)
        local = np.full(len(graph.size), -1)
        local[mine] = np.arange(mine.size)
        keep = (local[graph.a] >= 0) & (local[graph.b] >= 0)
        sub = Graph(
            graph.size[mine],
            graph.sums[mine],
            local[graph.a[keep]],
            local[graph.b[keep]],
            graph.length[keep],
            graph.resp[keep],
            graph.img[keep],
        )
        labels = plane_labels(sub, params, plane_pixels)
        out[mine] = labels + offset
        offset += int(labels.max())
    return out


def plane_labels(graph: Graph, params: dict, plane_pixels: int) -> np.ndarray:
    """The default method's merges and cut on one plane's region graph: a label 1..K per region."""
    from ..hierarchy import RegionHierarchy, hierarchy_tree
    from ..params import SegmentParams
    from ..regions import EDGE_THRESHOLD, MIN_REGION_FRACTION, MIN_REGION_PIXELS, sized_ward

    p = SegmentParams(
        **{k: v for k, v in params.items() if k in SegmentParams.__dataclass_fields__}
    )
    ids = np.arange(len(graph.size))
    small = max(MIN_REGION_PIXELS, int(MIN_REGION_FRACTION * plane_pixels))
    steps = [
        lambda g: _absorbed(g, small),
        lambda g: _merged(g, "border", EDGE_THRESHOLD, g.resp),
        lambda g: (
            _merged(g, "mean", p.merge_threshold, g.resp)
            if p.merge_threshold > 0
            else np.arange(len(g.size))
        ),
    ]
    for step in steps:
        graph, new = graph.coarsen(step(graph))
        ids = new[ids]
    if len(graph.size) > 1 and graph.a.size:
        parents, levels = hierarchy_tree(
            graph.a, graph.b, graph.length, graph.img, graph.means, graph.size
        )
        cut = RegionHierarchy(np.zeros(1, np.int32), parents, levels).region_ids(p.level)
    else:
        cut = np.ones(len(graph.size), dtype=np.int32)
    if p.n_clusters and cut.max() > p.n_clusters:
        grouped, new = graph.coarsen(cut)
        cut = sized_ward(grouped.means, grouped.size, p.n_clusters)[new] + 1
    return np.asarray(cut)[ids]


def _merged(graph: Graph, mode: str, threshold: float, contrast) -> np.ndarray:
    from ..region_graph import RegionGraph

    rg = RegionGraph(
        mode,
        graph.size,
        graph.a,
        graph.b,
        graph.length,
        contrast,
        sums=graph.sums if mode == "mean" else None,
    )
    rg.merge(threshold)
    return rg.roots()


def _absorbed(graph: Graph, min_size: int) -> np.ndarray:
    """Regions smaller than ``min_size`` join the neighbour they share most border with
    (the smallest first), as the in-memory path gives their pixels to the nearest larger region.
    """
    from ..region_graph import RegionGraph

    rg = RegionGraph("border", graph.size, graph.a, graph.b, graph.length, graph.length)
    for r in np.argsort(graph.size, kind="stable"):
        if rg.size[r] < min_size:
            rg.join_longest_border(int(r))
    return rg.roots()


def block_luts(
    blocks: Sequence[Block],
    stats: Sequence[dict],
    region: np.ndarray,
    final: np.ndarray,
    offsets: np.ndarray,
) -> list[np.ndarray]:
    """Each block's table from its local ids (1..n; 0 unused) to the final labels."""
    out = []
    for blk, st in zip(blocks, stats, strict=False):
        g = offsets[blk.index] + np.arange(int(st["n"]))
        out.append(np.concatenate([[0], final[region[g]]]).astype(np.int32))
    return out
