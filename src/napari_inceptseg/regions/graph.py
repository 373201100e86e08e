"""The region graph measured on a label image (numpy and scikit-image; no torch):
adjacency from array shifts, per-region sums, the edge maps summed along borders, and
:class:`RegionStats`, the numbers every later step of the regions reads.

Written here rather than with ``skimage.graph``, whose RAG is built pixel by pixel in
Python callbacks (seconds per megapixel).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np


def channel_edges(image: np.ndarray) -> np.ndarray:
    """Root mean square over channels of the Sobel gradient magnitude of ``image``
    (``(C, *spatial)``): how fast the colour (or the network's response) changes at
    each pixel.
    """
    from skimage.filters import sobel

    acc = np.zeros(image.shape[1:], dtype=np.float64)
    for channel in image:
        acc += sobel(channel.astype(np.float64)) ** 2
    return np.sqrt(acc / image.shape[0])


def region_adjacency(labels: np.ndarray, *edges: np.ndarray | None):
    """``(a, b, length, contrast, ...)``: every pair of adjacent ids (a < b), the number
    of face-neighbour pixel pairs between them, and for each map of ``edges`` the sum of
    its values over those pairs (the mean of the two pixels; zeros for a map that is
    None, and one contrast of zeros when none is given). The pairs are found once for
    all the maps.
    """
    maps = list(edges) or [None]
    a_all, b_all = [], []
    w_all: list[list[np.ndarray]] = [[] for _ in maps]
    for axis in range(labels.ndim):
        lo = [slice(None)] * labels.ndim
        hi = [slice(None)] * labels.ndim
        lo[axis], hi[axis] = slice(None, -1), slice(1, None)
        x, y = labels[tuple(lo)], labels[tuple(hi)]
        cut = x != y
        a_all.append(np.minimum(x[cut], y[cut]))
        b_all.append(np.maximum(x[cut], y[cut]))
        for w, e in zip(w_all, maps, strict=True):
            if e is not None:
                w.append(0.5 * (e[tuple(lo)][cut] + e[tuple(hi)][cut]))
    a = np.concatenate(a_all).astype(np.int64)
    b = np.concatenate(b_all).astype(np.int64)
    if a.size == 0:
        return (a, b, np.zeros(0), *[np.zeros(0) for _ in maps])
    n = int(labels.max()) + 1
    pair, inverse = np.unique(a * n + b, return_inverse=True)
    length = np.bincount(inverse).astype(np.float64)
    contrasts = [
        np.bincount(inverse, np.concatenate(w)) if e is not None else np.zeros_like(length)
        for w, e in zip(w_all, maps, strict=True)
    ]
    return (pair // n, pair % n, length, *contrasts)


def region_sums(labels: np.ndarray, features: np.ndarray, n: int) -> np.ndarray:
    """``(n, C)``: the sum of each channel of ``features`` (``(C, *spatial)``) over each id."""
    flat = labels.ravel()
    return np.stack([np.bincount(flat, f.ravel(), minlength=n) for f in features], 1)


class Borders(NamedTuple):
    """The borders of a region graph: pairs of regions ``a < b``, each border's length in
    face-neighbour pixel pairs, and the response's (``resp``) and the colour's (``img``)
    gradient summed along it.
    """

    a: np.ndarray
    b: np.ndarray
    length: np.ndarray
    resp: np.ndarray
    img: np.ndarray


class RegionStats:
    """Regions ``0..n-1``: their sizes, sums of the network's response, and
    :class:`Borders`.
    """

    def __init__(self, size, sums, borders: Borders):
        self.size, self.sums = np.asarray(size, np.float64), np.asarray(sums, np.float64)
        self.a, self.b = np.asarray(borders.a, np.int64), np.asarray(borders.b, np.int64)
        self.length, self.resp, self.img = (
            np.asarray(v, np.float64) for v in (borders.length, borders.resp, borders.img)
        )

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
            return cls(size, sums, Borders(*[np.zeros(0)] * 5))
        a, b, length, resp, img = region_adjacency(labels, response_edges, image_edges)
        return cls(size, sums, Borders(a - 1, b - 1, length, resp, img))

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
        return RegionStats(size, sums, Borders(pair // m, pair % m, *sum_on)), new

    @property
    def means(self) -> np.ndarray:
        """Mean response of every region, one row per region."""
        return self.sums / np.maximum(self.size, 1)[:, None]

    @property
    def border(self) -> np.ndarray:
        """Every region's border with the others, in face-neighbour pixel pairs."""
        n = self.size.size
        return np.bincount(self.a, self.length, minlength=n) + np.bincount(
            self.b, self.length, minlength=n
        )
