"""Scribbles (user strokes that guide the clustering) and the cluster-id mapping
(numpy only, no torch).

A scribble map has the image's spatial shape; 0 is unlabelled and ids 1..S are
strokes. Scribble id ``s`` trains network channel ``s - 1`` (Kim et al. 2020), so
the same id always comes out as the same cluster and different ids as different
clusters; :func:`make_label_map` then gives that channel the id ``s`` back, so
the output's colours match the strokes.
"""

from __future__ import annotations

from typing import Optional, Sequence, Tuple

import numpy as np


def prepare_scribbles(scribbles, spatial_shape: Sequence[int], n_channels: int
                      ) -> Tuple[Optional[np.ndarray], Tuple[int, ...]]:
    """Check a scribble map and return ``(channels, ids)``: an int64 array of the
    network channel per pixel (-1 where unlabelled), or None when nothing is
    scribbled, and the scribble ids used. Raises ``ValueError`` saying what to fix."""
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
    if arr.dtype.kind == "f":
        if not np.isfinite(arr).all() or (arr != np.round(arr)).any():
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


def make_label_map(present: Sequence[int], n_channels: int, scribble_ids: Sequence[int] = ()) -> np.ndarray:
    """The output label of every network channel, as an int32 array of length
    ``n_channels``: channel ``s - 1`` of each scribble id ``s`` gets ``s``; the
    other channels ``present`` in the result get the next ids in channel order,
    and the remaining channels (absent from the training result, but possible on
    other images) the ids after those. Without scribbles the present channels
    are numbered 1..K, which is :func:`consecutive_labels`."""
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
    return np.flatnonzero(np.bincount(raw.ravel(), minlength=n_channels))


def axis_weights(spacing, dims: int) -> Tuple[float, ...]:
    """Continuity weight per spatial axis for pixel ``spacing`` (e.g. a layer's
    scale): the finest axis gets 1, an axis with k times coarser spacing 1/k
    (neighbours that far apart are less alike). None means isotropic."""
    if spacing is None:
        return (1.0,) * dims
    try:
        sp = np.asarray(spacing, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        raise ValueError(f"spacing must be {dims} positive numbers, got {spacing!r}") from None
    if sp.size != dims or not np.isfinite(sp).all() or (sp <= 0).any():
        raise ValueError(f"spacing must be {dims} positive numbers (one per spatial axis), got {spacing!r}")
    return tuple(float(sp.min() / s) for s in sp)
