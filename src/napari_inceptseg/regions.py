"""From the network's clusters to regions, the default method's post-processing
(numpy, scipy and scikit-image; no torch; docs/method.md, "The default method"):

1. every superpixel (Felzenszwalb-Huttenlocher, :data:`SUPERPIXEL_SCALE`, plane by
   plane in a volume) takes the cluster most of its pixels have, so borders follow
   the image's edges;
2. each connected piece of a cluster becomes a region, and regions smaller than
   :data:`MIN_REGION_FRACTION` of the image (and than :data:`MIN_REGION_PIXELS`)
   take the id of the nearest larger region; rims narrower than
   :data:`MIN_REGION_WIDTH` join the neighbour they share the most border with;
3. adjacent regions are merged, weakest border first, while the network's response
   changes little across their border (:data:`~napari_inceptseg.merging.EDGE_THRESHOLD`);
4. adjacent regions are merged, most alike first, while their mean responses differ
   by less than ``merge_threshold``: these are the finest regions;
5. a :class:`~napari_inceptseg.hierarchy.RegionHierarchy` merges them further, up to
   one region, and is cut at ``level`` (:mod:`napari_inceptseg.hierarchy`);
6. with ``n_clusters``, the regions of that cut are grouped (touching or not) into that
   many labels by Ward's clustering of their mean responses, each weighted by its
   pixels.

Steps 1-2 work on pixels, here; steps 3-6 on the regions' numbers, in
:mod:`napari_inceptseg.merging`, the finishing step that the Dask path shares.
Responses are in units of their own standard deviation (the networks end in
BatchNorm), so both thresholds mean the same on every image. The merging is written
here rather than with ``skimage.graph`` because its RAG is built pixel by pixel in
Python callbacks (seconds per megapixel); here adjacency comes from array shifts.
Everything works on 2D images and 3D volumes alike; the greedy merges use
:class:`~napari_inceptseg.region_graph.RegionGraph`.
"""

from __future__ import annotations

import warnings

import numpy as np

from .hierarchy import channel_edges
from .labels import (
    connected_regions,
    consecutive_labels,
    dense_ids,
    region_adjacency,
    region_sums,
)
from .merging import (
    MAX_ALIKE_LABELS,
    RegionStats,
    as_hierarchy,
    cut_regions,
    group_regions,
    merge_finest,
)
from .region_graph import RegionGraph

#: step 1: Felzenszwalb's scale (larger: larger superpixels; about 550 on a 481 x 321
#: photo) and smallest superpixel (pixels)
SUPERPIXEL_SCALE = 100
SUPERPIXEL_MIN_SIZE = 25
#: Gaussian smoothing (pixels) before the superpixels, so that noise does not fray them
SUPERPIXEL_SIGMA = 0.5
#: small planes get a smallest superpixel of at most 1/MIN_SUPERPIXELS of their pixels,
#: so that superpixels stay small next to the objects in them
MIN_SUPERPIXELS = 250
#: regions smaller than this fraction of the image, or than MIN_REGION_PIXELS,
#: join a neighbour (step 2)
MIN_REGION_FRACTION = 0.0002
MIN_REGION_PIXELS = 9
#: step 2: regions narrower than this (pixels: twice their size over their border with
#: other regions) are rims along an edge, not objects; they join the neighbour they
#: share the most border with
MIN_REGION_WIDTH = 2.0
#: larger images are analysed on a copy of at most this many pixels per plane,
#: whose regions are then scaled up to the image (nearest neighbour)
ANALYSIS_PIXELS = 4_000_000


def superpixels(image: np.ndarray) -> np.ndarray:
    """Felzenszwalb-Huttenlocher superpixels of ``image`` (``(C, *spatial)``, values
    about 0..1), plane by plane for a volume, with ids unique over the whole array.

    Their borders follow the image's edges at any size (SLIC's near-regular grid showed
    through on flat backgrounds: docs/method.md, "The default method").
    """
    from skimage.segmentation import felzenszwalb

    channels = np.moveaxis(image, 0, -1).clip(0, 1)
    planes = channels.reshape(-1, *channels.shape[-3:])
    min_size = min(SUPERPIXEL_MIN_SIZE, max(1, planes[0, ..., 0].size // MIN_SUPERPIXELS))
    out = np.empty(planes.shape[:-1], np.int64)
    offset = 0
    for k, plane in enumerate(planes):
        with warnings.catch_warnings():  # any number of channels is meant (not only RGB)
            warnings.simplefilter("ignore", UserWarning)
            out[k] = (
                felzenszwalb(
                    plane,
                    scale=SUPERPIXEL_SCALE,
                    sigma=SUPERPIXEL_SIGMA,
                    min_size=min_size,
                    channel_axis=-1,
                )
                + offset
            )
        offset = int(out[k].max()) + 1
    return out.reshape(channels.shape[:-1])


def superpixel_vote(clusters: np.ndarray, image: np.ndarray) -> np.ndarray:
    """``clusters`` with every superpixel of ``image`` (:func:`superpixels`) set to the
    cluster most of its pixels have.
    """
    sp = superpixels(image)
    keys, ids = np.unique(clusters, return_inverse=True)
    n_ids = keys.size
    votes = np.bincount(sp.ravel() * n_ids + ids.ravel(), minlength=(int(sp.max()) + 1) * n_ids)
    winner = votes.reshape(-1, n_ids).argmax(1)
    return keys[winner[sp]]


def absorb_small(regions: np.ndarray, min_size: int) -> np.ndarray:
    """Pixels of regions smaller than ``min_size`` take the id of the nearest pixel
    of a larger region (unchanged when no region is that large).
    """
    from scipy import ndimage as ndi

    sizes = np.bincount(regions.ravel())
    small = sizes[regions] < min_size
    if not small.any() or small.all():
        return regions
    nearest = ndi.distance_transform_edt(small, return_distances=False, return_indices=True)
    return regions[tuple(nearest)]


def absorb_thin(regions: np.ndarray) -> np.ndarray:
    """``regions`` with every region narrower than :data:`MIN_REGION_WIDTH` joined to
    the neighbour it shares the most border with.
    """
    a, b, length, _ = region_adjacency(regions)
    return thin_roots(np.bincount(regions.ravel()), a, b, length)[regions]


def absorb_thin_pixels(regions: np.ndarray, image: np.ndarray) -> np.ndarray:
    """``regions`` with every pixel of a region narrower than :data:`MIN_REGION_WIDTH`
    given to the wider region next to it whose mean colour in ``image`` (``(C,
    *spatial)``) is closest to the pixel's own: a rim that straddles an edge goes to
    both sides, each pixel to its own (the cluster path's blocks; pixels with no wider
    region within a few pixels keep their id).
    """
    a, b, length, _ = region_adjacency(regions)
    size = np.bincount(regions.ravel()).astype(np.float64)
    border = np.bincount(a, length, minlength=size.size) + np.bincount(
        b, length, minlength=size.size
    )
    thin = 2 * size < MIN_REGION_WIDTH * np.maximum(border, 1)
    flat = regions.ravel().copy()
    todo = np.flatnonzero(thin[flat])
    if todo.size in (0, flat.size):
        return regions
    pixels = image.reshape(image.shape[0], -1)
    means = (region_sums(regions, image, size.size) / np.maximum(size, 1)[:, None]).T
    for _ in range(4):  # each pass reaches one pixel further into a rim
        best, dist = _closest_wide_neighbour(flat, todo, regions.shape, thin, pixels, means)
        found = np.isfinite(dist)
        flat[todo[found]] = best[found]
        todo = todo[~found]
        if todo.size == 0:
            break
    return flat.reshape(regions.shape)


def _closest_wide_neighbour(flat, todo, shape, thin, pixels, means):
    """For the pixels ``todo`` (flat indices): the face neighbour's id, among ids not
    ``thin``, whose mean colour is closest to the pixel's, and that distance (inf: none).
    """
    best = np.zeros(todo.size, dtype=flat.dtype)
    dist = np.full(todo.size, np.inf)
    colour = pixels[:, todo]
    for axis, n in enumerate(shape):
        step = int(np.prod(shape[axis + 1 :], dtype=np.int64))
        coord = (todo // step) % n
        for sign in (-1, 1):
            ok = (coord + sign >= 0) & (coord + sign < n)
            ids = flat[np.where(ok, todo + sign * step, todo)]
            ok &= ~thin[ids]
            d = ((colour - means[:, ids]) ** 2).sum(0)
            better = ok & (d < dist)
            best[better], dist[better] = ids[better], d[better]
    return best, dist


def thin_roots(size: np.ndarray, a, b, length) -> np.ndarray:
    """For a region graph (``size`` per id; borders ``a``-``b`` of ``length`` pixel
    pairs), the id each region ends in when every region narrower than
    :data:`MIN_REGION_WIDTH` joins, narrowest first, the neighbour it shares the most
    border with.
    """
    size = np.asarray(size, dtype=np.float64)
    border = np.bincount(a, length, minlength=size.size) + np.bincount(
        b, length, minlength=size.size
    )
    width = 2 * size / np.maximum(border, 1)
    graph = RegionGraph("border", size, a, b, length, length)
    for r in np.argsort(width, kind="stable"):
        if width[r] >= MIN_REGION_WIDTH:
            break
        graph.join_longest_border(int(r))
    return graph.roots()


def region_pieces(clusters: np.ndarray, image: np.ndarray) -> np.ndarray:
    """Steps 1-2 (module docs): ``clusters`` (argmax ids, ``spatial``) and the network's
    input ``image`` (``(C, *spatial)``, about 0..1) in; connected regions, small ones and
    rims absorbed, numbered 1..R, out.
    """
    labels = superpixel_vote(clusters, image)
    labels = connected_regions(labels, connectivity=1)  # face-connected pieces
    labels = absorb_small(labels, max(MIN_REGION_PIXELS, int(MIN_REGION_FRACTION * labels.size)))
    return consecutive_labels(absorb_thin(labels))


def finest_regions(
    clusters: np.ndarray, response: np.ndarray, image: np.ndarray, *, merge_threshold: float
) -> tuple[np.ndarray, RegionStats]:
    """Steps 1-4 (module docs): ``clusters`` (argmax ids, ``spatial``), the network's
    ``response`` (``(C, *spatial)``) and its input ``image`` (``(C, *spatial)``, about
    0..1) in; the finest regions, numbered 1..R, and their numbers out.
    """
    pieces = region_pieces(clusters, image)
    stats = RegionStats.of_labels(pieces, response, channel_edges(response), channel_edges(image))
    stats, ids = merge_finest(stats, merge_threshold)
    lut = np.concatenate([[0], ids + 1]).astype(np.int32)
    return lut[pieces], stats


def region_stages(
    clusters: np.ndarray,
    response: np.ndarray,
    image: np.ndarray,
    *,
    merge_threshold: float,
    level: float,
    n_clusters: int = 0,
):
    """The default method's post-processing (module docs): the finest regions, their
    :class:`~napari_inceptseg.hierarchy.RegionHierarchy`, and its cut at ``level``
    (step 5), or with ``n_clusters`` that many labels grouped from it (step 6). A
    generator that yields the name of each stage (``"regions"``, then ``"hierarchy"``)
    before it starts, so that a caller can report it and stop there; returns ``(labels
    numbered 1..K, hierarchy)``.
    """
    yield "regions"
    base, stats = finest_regions(clusters, response, image, merge_threshold=merge_threshold)
    yield "hierarchy"
    parents, levels, cut = cut_regions(stats, level=level, n_clusters=n_clusters)
    hierarchy = as_hierarchy(base, parents, levels)
    return np.concatenate([[0], cut]).astype(np.int32)[base], hierarchy


def limit_clusters(
    labels: np.ndarray, features: np.ndarray, n_clusters: int
) -> tuple[np.ndarray, bool]:
    """At most ``n_clusters`` labels, numbered 1..K when grouped: labels grouped by their
    mean ``features`` (``(C, *spatial)``) and pixel counts, touching or not
    (:func:`~napari_inceptseg.merging.group_regions`). Returns ``(labels, changed)``.
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
