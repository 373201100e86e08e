"""The default method's regions, from clusters to a cut (numpy, scipy, scikit-image and
higra; no torch): the one home of the steps that a run in memory takes on an image and
a whole-image run on a Dask cluster takes on the blocks' numbers
(:mod:`napari_inceptseg.distributed.planes`):

1. the regions on pixels: the superpixel vote, connected pieces, small regions and rims
   absorbed (:func:`~.pixels.region_pieces`);
2. the region graph's numbers (:class:`~.graph.RegionStats`: sizes, response sums,
   borders with the response's and the colour's edges summed along them);
3. adjacent regions merge, weakest border first, while the network's response changes
   little across their border, then, most alike first, while their mean responses
   differ by less than ``merge_threshold``: the finest regions
   (:func:`~.merges.merge_finest`);
4. their :class:`~.hierarchy.RegionHierarchy` merges them further, up to one region,
   and is cut at ``level`` (:func:`cut_regions`);
5. with ``n_clusters``, the regions of that cut are grouped (touching or not) into that
   many labels by Ward's clustering of their mean responses, each weighted by its
   pixels (:func:`~.merges.group_regions`; the papers' presets, whose clusters are not
   made into regions, are grouped by the same function: :func:`limit_clusters`).

Responses are in units of their own standard deviation (the networks end in
BatchNorm), so the thresholds mean the same on every image. Everything works on 2D
images and 3D volumes alike.
"""

from __future__ import annotations

import numpy as np

from ..labels import dense_ids
from .graph import RegionStats, channel_edges
from .hierarchy import RegionHierarchy, hierarchy_tree, single_region, tree_cut
from .merges import MAX_ALIKE_LABELS, group_regions, merge_finest
from .pixels import region_pieces

#: larger images are analysed on a copy of at most this many pixels per plane,
#: whose regions are then scaled up to the image (nearest neighbour)
ANALYSIS_PIXELS = 4_000_000


def measure_regions(
    clusters: np.ndarray, response: np.ndarray, image: np.ndarray
) -> tuple[np.ndarray, RegionStats]:
    """Steps 1-2 (module docs): ``clusters`` (argmax ids, ``spatial``), the network's
    ``response`` (``(C, *spatial)``) and its input ``image`` (``(C', *spatial)``, about
    0..1) in; the regions (ids 1..R) and their numbers out.
    """
    labels = region_pieces(clusters, image)
    edges = channel_edges(response), channel_edges(image)
    return labels, RegionStats.of_labels(labels, response, *edges)


def finest_regions(
    clusters: np.ndarray, response: np.ndarray, image: np.ndarray, *, merge_threshold: float
) -> tuple[np.ndarray, RegionStats]:
    """Steps 1-3 (module docs): the finest regions, numbered 1..R, and their numbers."""
    labels, stats = measure_regions(clusters, response, image)
    stats, ids = merge_finest(stats, merge_threshold)
    lut = np.concatenate([[0], ids + 1]).astype(np.int32)
    return lut[labels], stats


def region_stages(
    clusters: np.ndarray,
    response: np.ndarray,
    image: np.ndarray,
    *,
    merge_threshold: float,
    level: float,
    n_clusters: int = 0,
):
    """Steps 1-5 (module docs): the finest regions, their
    :class:`~.hierarchy.RegionHierarchy`, and its cut at ``level``, or with
    ``n_clusters`` that many labels grouped from it. A generator that yields the name of
    each stage (``"regions"``, then ``"hierarchy"``) before it starts, so that a caller
    can report it and stop there; returns ``(labels numbered 1..K, hierarchy)``.
    """
    yield "regions"
    base, stats = finest_regions(clusters, response, image, merge_threshold=merge_threshold)
    yield "hierarchy"
    parents, levels, cut = cut_regions(stats, level=level, n_clusters=n_clusters)
    hierarchy = as_hierarchy(base, parents, levels)
    return np.concatenate([[0], cut]).astype(np.int32)[base], hierarchy


def cut_regions(stats: RegionStats, *, level: float, n_clusters: int = 0):
    """Steps 4-5 (module docs) on the finest regions' numbers: ``(parents, node_levels,
    labels)``, the hierarchy's tree (None for fewer than two regions, or none touching)
    and each region's label 1..K at ``level``, grouped to ``n_clusters`` if asked.
    """
    parents = levels = None
    if len(stats.size) > 1 and stats.a.size:
        parents, levels = hierarchy_tree(stats)
        cut = tree_cut(parents, levels, level)
    else:
        cut = np.ones(len(stats.size), dtype=np.int32)
    if n_clusters and cut.max() > n_clusters:
        grouped, new = stats.coarsen(cut)
        cut = group_regions(grouped, n_clusters)[new].astype(np.int32)
    return parents, levels, cut


def as_hierarchy(base: np.ndarray, parents, node_levels) -> RegionHierarchy:
    """The :class:`~napari_inceptseg.regions.hierarchy.RegionHierarchy` over the label image
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
        R - 1 merges (:mod:`napari_inceptseg.regions.hierarchy`), each in a few microseconds.

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


def limit_clusters(
    labels: np.ndarray, features: np.ndarray, n_clusters: int
) -> tuple[np.ndarray, bool]:
    """At most ``n_clusters`` labels, numbered 1..K when grouped: labels grouped by their
    mean ``features`` (``(C, *spatial)``) and pixel counts, touching or not
    (:func:`~.merges.group_regions`). Returns ``(labels, changed)``.
    """
    if n_clusters <= 0:
        return labels, False
    ids, index = dense_ids(labels.ravel())
    if ids.size <= n_clusters:
        return labels, False
    index = index.reshape(labels.shape) + 1
    many = ids.size > MAX_ALIKE_LABELS  # the grouping then merges touching labels first
    stats = RegionStats.of_labels(index, features, borders=many)
    lut = np.concatenate([[0], group_regions(stats, n_clusters)]).astype(np.int32)
    return lut[index], True
