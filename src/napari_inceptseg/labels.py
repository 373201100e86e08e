"""Label maps (numpy, scipy and scikit-image; no torch): renumbering, connected
components and scribble ids.

**Scribbles** (user strokes that guide the clustering) have the image's spatial
shape; 0 is unlabelled and ids 1..S are strokes. Scribble id ``s`` trains network
channel ``s - 1`` (Kim et al. 2020), so the same id always comes out as the same
cluster and different ids as different clusters; :func:`make_label_map` then gives
that channel the id ``s`` back, so the output's colours match the strokes.

The default method's regions (superpixel vote, merging, grouping) are in
:mod:`napari_inceptseg.regions`; objects (from an image, or from clusters) in
:mod:`napari_inceptseg.objects`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def consecutive_labels(raw: np.ndarray) -> np.ndarray:
    """Renumber cluster ids to 1..K (in order of their channel index), as int32."""
    flat = raw.ravel()
    present = np.bincount(flat)
    lut = np.zeros(present.size, dtype=np.int32)
    nz = present > 0
    lut[nz] = np.arange(1, int(nz.sum()) + 1, dtype=np.int32)
    return lut[raw]


def dense_ids(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(ids, index)`` with ``ids[index] == x`` and ids sorted, unique."""
    if x.dtype == bool:  # a mask: ids 0 and 1 (a boolean array would index as a mask)
        x = x.view(np.uint8)
    if x.dtype.kind in "ui" and x.size:
        lo, hi = int(x.min()), int(x.max())
        if lo >= 0 and hi < max(1 << 20, 4 * x.size):
            counts = np.bincount(x, minlength=hi + 1)
            ids = np.flatnonzero(counts)
            lut = np.zeros(hi + 1, dtype=np.intp)
            lut[ids] = np.arange(ids.size)
            return ids, lut[x]
    ids, index = np.unique(x, return_inverse=True)
    return ids, index.ravel()


def connected_regions(pred, connectivity: int | None = None) -> np.ndarray:
    """Every connected region of ``pred`` (any ids, 2D or 3D) as its own id 1..R.
    ``connectivity`` as in scikit-image's ``label``; by default full connectivity
    (8 neighbours in 2D, 26 in 3D), as the region scores use.
    """
    from skimage.measure import label

    pred = np.asarray(pred)
    _, index = dense_ids(pred.ravel())
    return label(
        index.reshape(pred.shape) + 1, background=0, connectivity=connectivity or pred.ndim
    )


def prepare_scribbles(
    scribbles, spatial_shape: Sequence[int], n_channels: int
) -> tuple[np.ndarray | None, tuple[int, ...]]:
    """Check a scribble map and return ``(channels, ids)``: an int64 array of the
    network channel per pixel (-1 where unlabelled), or None when nothing is
    scribbled, and the scribble ids used. Raises ``ValueError`` saying what to fix.
    """
    if scribbles is None:
        return None, ()
    arr = np.asarray(scribbles)
    if arr.dtype == object or arr.dtype.kind not in "biuf":
        raise ValueError(f"scribbles must be an integer label image, got dtype {arr.dtype}")
    if tuple(arr.shape) != tuple(spatial_shape):
        raise ValueError(
            f"the scribbles have shape {tuple(arr.shape)} but the image's spatial shape is "
            f"{tuple(spatial_shape)}: paint them on a Labels layer of the image's size"
        )
    if arr.dtype.kind == "f" and (not np.isfinite(arr).all() or (arr != np.round(arr)).any()):
        raise ValueError("scribbles must hold whole-number label ids (0 = unlabelled)")
    if arr.size and arr.min() < 0:
        raise ValueError(f"scribble ids must be >= 0 (0 = unlabelled), found {int(arr.min())}")
    top = int(arr.max()) if arr.size else 0
    if top > n_channels:
        raise ValueError(
            f"scribble id {top} is larger than the number of channels ({n_channels}): use "
            f"ids 1..{n_channels}, or raise n_channels to at least {top}"
        )
    if top == 0:
        return None, ()
    ids = tuple(int(i) for i in np.unique(arr) if i > 0)
    return arr.astype(np.int64) - 1, ids


def make_label_map(
    present: Sequence[int], n_channels: int, scribble_ids: Sequence[int] = ()
) -> np.ndarray:
    """The output label of every network channel, as an int32 array of length
    ``n_channels``: channel ``s - 1`` of each scribble id ``s`` gets ``s``; the
    other channels ``present`` in the result get the next ids in channel order,
    and the remaining channels (absent from the training result, but possible on
    other images) the ids after those. Without scribbles the present channels
    are numbered 1..K, which is :func:`consecutive_labels`.
    """
    lut = np.zeros(n_channels, dtype=np.int32)
    for s in scribble_ids:
        lut[s - 1] = s
    nxt = max(scribble_ids, default=0) + 1
    present_set = set(int(c) for c in present)
    for group in (sorted(present_set), range(n_channels)):
        for c in group:
            if lut[c] == 0:
                lut[c] = nxt
                nxt += 1
    return lut


def channels_present(raw: np.ndarray, n_channels: int) -> np.ndarray:
    """The response channels that are some pixel's argmax."""
    return np.flatnonzero(np.bincount(raw.ravel(), minlength=n_channels))
