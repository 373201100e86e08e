"""From every block's regions to the image's (numpy and scipy; no torch): global ids,
regions joined across block faces, and the default method's merges and hierarchy cut
decided on whole-image region statistics, never per block.

1. Each block's regions get global ids (the blocks before it hold the lower ones).
2. Two pixels facing each other across a block face with the same cluster join their
   regions (scipy's connected components), so an object crossing block borders keeps
   one id; facing pixels of different clusters are a border between regions.
3. The regions' sizes, response sums and borders are summed over blocks
   (:class:`~napari_inceptseg.merging.RegionStats`), and, plane by plane, small regions
   join the neighbour they share most border with; then the finishing step that every
   path shares (:mod:`napari_inceptseg.merging`): weak borders and alike neighbours
   merge, the hierarchy is cut at ``level`` and grouped to ``n_clusters`` if asked.

The result is one table from global ids to the final labels, numbered 1..K plane after
plane.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..merging import RegionStats
from .blocks import Block


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
) -> tuple[RegionStats, np.ndarray, np.ndarray]:
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
    graph = RegionStats(size, sums, *cols)
    merged, new = graph.coarsen(region)
    return merged, new, offsets


def final_labels(
    graph: RegionStats, planes: np.ndarray, params: dict, plane_pixels: int
) -> np.ndarray:
    """The final label (1..K over the whole image, plane after plane) of every region of
    ``graph``; ``planes[r]`` is region ``r``'s plane number.
    """
    out = np.zeros(len(graph.size), dtype=np.int64)
    offset = 0
    for p in np.unique(planes):
        mine = np.flatnonzero(planes == p)
        labels = plane_labels(graph.subset(mine), params, plane_pixels)
        out[mine] = labels + offset
        offset += int(labels.max())
    return out


def plane_labels(graph: RegionStats, params: dict, plane_pixels: int) -> np.ndarray:
    """One plane's labels, a label 1..K per region: small regions absorbed (as the
    in-memory path gives their pixels to the nearest larger region), then the finishing
    step that every path shares (:mod:`napari_inceptseg.merging`).
    """
    from ..merging import cut_regions, merge_finest
    from ..params import SegmentParams
    from ..regions import MIN_REGION_FRACTION, MIN_REGION_PIXELS

    p = SegmentParams(
        **{k: v for k, v in params.items() if k in SegmentParams.__dataclass_fields__}
    )
    small = max(MIN_REGION_PIXELS, int(MIN_REGION_FRACTION * plane_pixels))
    graph, ids = graph.coarsen(_absorbed(graph, small))
    graph, finest = merge_finest(graph, p.merge_threshold)
    _, _, cut = cut_regions(graph, level=p.level, n_clusters=p.n_clusters)
    return np.asarray(cut)[finest[ids]]


def _absorbed(graph: RegionStats, min_size: int) -> np.ndarray:
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
