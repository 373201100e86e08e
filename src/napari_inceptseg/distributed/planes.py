"""A plane's regions on the analysis grid, made by the method's own steps (numpy, scipy,
scikit-image and higra; no torch): the grid holds at most
:data:`~napari_inceptseg.regions.method.ANALYSIS_PIXELS` pixels per plane, as a run in
memory analyses, so one worker holds the plane's clusters and pixels there.

1. :func:`plane_regions` (a worker): the superpixel vote, connected pieces, small
   regions and rims absorbed (:func:`~napari_inceptseg.regions.pixels.region_pieces`,
   as in memory: Felzenszwalb's superpixels are not local, so made block by block they
   differ), the regions written to the scratch, and the region graph's sizes and
   borders returned;
2. the blocks add the response summed over each region (:func:`~.blocks.block_sums`);
3. :func:`plane_labels` (the client): the finishing on those numbers, as in memory
   (:mod:`napari_inceptseg.regions.method`): weak borders and alike neighbours merge,
   the hierarchy is cut at ``level`` and grouped to ``n_clusters`` if asked.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..regions.graph import Borders, RegionStats, channel_edges, region_adjacency
from ..regions.merges import merge_finest
from ..regions.method import cut_regions
from ..regions.pixels import region_pieces
from .blocks import refusing


@refusing
def plane_regions(state: str, plane: tuple[int, ...], index: int) -> dict[str, np.ndarray]:
    """The regions of one plane (ids 1..R), written to the scratch's ``regions``, and
    their sizes and borders (as :class:`~napari_inceptseg.regions.graph.RegionStats`
    counts them: region ``r - 1`` is id ``r``).
    """
    import zarr

    done = Path(state) / "planes" / f"{index}.npz"
    if done.exists():
        return dict(np.load(done))
    clusters = np.asarray(zarr.open_array(f"{state}/clusters", mode="r")[plane])
    data = np.asarray(zarr.open_array(f"{state}/data", mode="r")[plane])
    edges = np.asarray(zarr.open_array(f"{state}/response_edges", mode="r")[plane])
    regions = region_pieces(clusters, data)
    zarr.open_array(f"{state}/regions", mode="r+")[plane] = regions
    a, b, length, resp, img = region_adjacency(regions, edges, channel_edges(data))
    size = np.bincount(regions.ravel())[1:]
    graph = {"size": size, "a": a - 1, "b": b - 1, "length": length, "resp": resp, "img": img}
    done.parent.mkdir(exist_ok=True)
    tmp = done.with_suffix(".tmp.npz")
    np.savez(tmp, **graph)
    tmp.rename(done)
    return graph


def plane_labels(graph: dict, sums: list[np.ndarray], params) -> np.ndarray:
    """The table from a plane's region ids (1..R; 0 unused) to its labels 1..K: the
    method's finishing on the plane's graph and the response sums of its blocks.
    """
    n = len(graph["size"])
    total = np.zeros((n + 1, sums[0].shape[1]))
    for part in sums:
        total[: len(part)] += part
    borders = Borders(*(graph[k] for k in Borders._fields))
    stats = RegionStats(graph["size"], total[1:], borders)
    stats, finest = merge_finest(stats, params.merge_threshold)
    _, _, cut = cut_regions(stats, level=params.level, n_clusters=params.n_clusters)
    return np.concatenate([[0], np.asarray(cut)[finest]]).astype(np.int32)
