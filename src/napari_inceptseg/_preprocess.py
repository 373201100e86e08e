"""Input checking and normalisation (numpy only, no torch).

Every image the engine accepts goes through :func:`prepare_image`, which either
returns a float32 ``(C, H, W)`` array ready for the network or raises a
``ValueError`` that says what to do.
"""

from __future__ import annotations

import math
from typing import Optional

import numpy as np

MIN_SIZE = 8
MAX_CHANNELS = 64
#: Percentiles used to normalise non-uint8 images, per channel.
NORM_PERCENTILES = (1.0, 99.8)


def _as_array(image) -> np.ndarray:
    try:
        arr = np.asarray(image)
    except Exception as exc:  # pragma: no cover - exotic array-likes
        raise ValueError(f"could not read the image as an array: {exc}") from exc
    if arr.dtype == object or arr.dtype.kind not in "biuf":
        raise ValueError(
            f"unsupported image dtype {arr.dtype}: give a numeric array "
            "(bool, integer or float)"
        )
    return arr


_AXES = {2: "two (Y, X)", 3: "three (Z, Y, X)"}


def spatial_layout(shape, channel_axis: Optional[int] = None, dims: int = 2):
    """Return ``(spatial_shape, channel_axis, drop_alpha)`` for an image shape.

    Without ``channel_axis``, a 2D array is grayscale and a 3D array whose last
    axis has length 3 or 4 is RGB / RGBA (alpha is dropped). Anything else needs
    an explicit ``channel_axis``. With ``dims=3`` the same holds for volumes
    (Z, Y, X) with one more axis.
    """
    shape = tuple(shape)
    ndim = len(shape)
    if channel_axis is None:
        if ndim == dims:
            return shape, None, False
        if ndim == dims + 1 and shape[-1] in (3, 4):
            return shape[:dims], dims, shape[-1] == 4
        if ndim < dims:
            raise ValueError(
                f"the image has shape {shape}: it needs {_AXES[dims].replace(' (', ' spatial dimensions (')}"
                ", optionally with a channel axis"
            )
        raise ValueError(
            f"cannot tell the channels of an image of shape {shape}: pass "
            "channel_axis=<axis> for multichannel data (e.g. channel_axis=0 for "
            + ("(C, Y, X)); for Z-stacks or time series segment one 2D plane at a time"
               if dims == 2 else "(C, Z, Y, X))")
        )
    if isinstance(channel_axis, bool) or not isinstance(channel_axis, (int, np.integer)):
        raise ValueError(f"channel_axis must be an integer axis or None, got {channel_axis!r}")
    if not -ndim <= channel_axis < ndim:
        raise ValueError(
            f"channel_axis={channel_axis} is out of range for an image of shape "
            f"{shape} ({ndim} axes)"
        )
    ax = int(channel_axis) % ndim
    spatial = tuple(s for i, s in enumerate(shape) if i != ax)
    if len(spatial) != dims:
        raise ValueError(
            f"with channel_axis={channel_axis}, the image of shape {shape} has "
            f"{len(spatial)} spatial dimension(s); it needs exactly {_AXES[dims]}"
        )
    if shape[ax] > MAX_CHANNELS:
        raise ValueError(
            f"channel_axis={channel_axis} has {shape[ax]} entries, more than the "
            f"{MAX_CHANNELS} channels supported: is it a spatial axis? Pass the axis "
            "that holds the channels"
        )
    if shape[ax] < 1:
        raise ValueError(f"channel_axis={channel_axis} is empty in shape {shape}")
    return spatial, ax, False


def channel_ranges(data: np.ndarray) -> np.ndarray:
    """The ``(C, 2)`` intensity range [lo, hi] that :func:`normalize_channels` maps
    to [0, 1] per channel: 0..255 for uint8, 0..1 for bool, else the 1st and
    99.8th percentiles (min/max for sparse channels)."""
    if data.dtype == np.uint8:
        return np.tile([0.0, 255.0], (data.shape[0], 1))
    if data.dtype == bool:
        return np.tile([0.0, 1.0], (data.shape[0], 1))
    out = np.zeros((data.shape[0], 2))
    for c in range(data.shape[0]):
        ch = data[c].astype(np.float64, copy=False)
        # values near the float64 limits: measure a quarter of them, so no difference overflows
        shrink = 1.0 if np.isfinite(float(ch.max()) - float(ch.min())) else _SHRINK
        lo, hi = np.percentile(ch * shrink if shrink != 1.0 else ch, NORM_PERCENTILES) / shrink
        if hi <= lo:
            lo, hi = float(ch.min()), float(ch.max())
        out[c] = lo, hi
    return out


#: the factor that keeps differences of float64 values finite (see channel_ranges)
_SHRINK = 0.25


def apply_ranges(data: np.ndarray, ranges: np.ndarray) -> np.ndarray:
    """Map each channel's [lo, hi] of ``ranges`` to [0, 1] (float32); a channel
    with hi <= lo becomes 0."""
    ranges = np.asarray(ranges, dtype=np.float64)
    if ranges.shape != (data.shape[0], 2):
        raise ValueError(
            f"the image has {data.shape[0]} channel(s) but the normalisation is for {ranges.shape[0]}"
        )
    if data.dtype == np.uint8 and (ranges == [0.0, 255.0]).all():
        return data.astype(np.float32) / np.float32(255.0)
    if data.dtype == bool and (ranges == [0.0, 1.0]).all():
        return data.astype(np.float32)
    out = np.empty(data.shape, dtype=np.float32)
    for c, (lo, hi) in enumerate(ranges):
        if hi <= lo:
            out[c] = 0.0
        else:
            x = data[c].astype(np.float64, copy=False)
            if math.isfinite(float(hi) - float(lo)):
                out[c] = ((x - lo) / (hi - lo)).astype(np.float32)
            else:  # a range near the float64 limits: the same map on a quarter of every value
                k = _SHRINK
                out[c] = ((x * k - lo * k) / (hi * k - lo * k)).astype(np.float32)
    return out


def normalize_channels(data: np.ndarray) -> np.ndarray:
    """Normalise a ``(C, H, W)`` array to float32.

    uint8 is divided by 255 (as the reference implementation does). Every other
    dtype is scaled per channel so that the 1st and 99.8th percentiles map to 0
    and 1 (falling back to min/max for sparse channels; constant channels become 0).
    """
    return apply_ranges(data, channel_ranges(data))


def prepare_image(image, channel_axis: Optional[int] = None) -> np.ndarray:
    """Validate an image and return a float32 ``(C, H, W)`` network input.

    Raises ``ValueError`` with a message that says what to do for: non-numeric
    dtypes, NaN/inf, fewer or more than two spatial dimensions, images smaller
    than 8 x 8, and a wrong ``channel_axis``.
    """
    return prepare(image, channel_axis)[0]


def prepare(image, channel_axis: Optional[int] = None, dims: int = 2, ranges=None):
    """:func:`prepare_image` for 2D images or (``dims=3``) volumes, returning
    ``(data, ranges)``: the float32 ``(C, *spatial)`` input and the per-channel
    intensity ranges used (given ``ranges``, e.g. a saved network's, are applied
    instead of measuring this image's)."""
    arr = _as_array(image)
    spatial, ax, drop_alpha = spatial_layout(arr.shape, channel_axis, dims)
    h, w = spatial[-2:]
    if h < MIN_SIZE or w < MIN_SIZE:
        raise ValueError(
            f"the image is {h} x {w} pixels; it must be at least {MIN_SIZE} x {MIN_SIZE} "
            "(upsample it first if it really is this small)"
        )
    if dims == 3 and spatial[0] < 2:
        raise ValueError(f"the volume has {spatial[0]} slice(s) along Z: 3D mode needs at least 2")
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        n_bad = int(arr.size - np.isfinite(arr).sum())
        raise ValueError(
            f"the image contains {n_bad} NaN or infinite value(s): replace them "
            "first, e.g. with numpy.nan_to_num(image)"
        )
    if ax is None:
        data = arr[np.newaxis]
    else:
        data = np.moveaxis(arr, ax, 0)
        if drop_alpha:
            data = data[:3]
    if ranges is None:
        ranges = channel_ranges(data)
    return np.ascontiguousarray(apply_ranges(data, ranges)), np.asarray(ranges, dtype=np.float64)


def is_rgb(shape, channel_axis: Optional[int] = None, dims: int = 2) -> bool:
    """True when an image of this shape is read as RGB(A): no ``channel_axis`` given
    and a last axis of 3 or 4 (see :func:`spatial_layout`)."""
    return channel_axis is None and len(shape) == dims + 1 and shape[-1] in (3, 4)


def to_colour_space(data: np.ndarray, space: str, rgb: bool) -> np.ndarray:
    """The network's input from normalised ``(C, *spatial)`` data: RGB images in
    CIELAB when ``space == 'lab'`` (L / 100, a / 100 + 0.5, b / 100 + 0.5, so about
    0..1 like the other inputs); anything else unchanged."""
    if space != "lab" or not rgb:
        return data
    from skimage.color import rgb2lab

    lab = rgb2lab(np.moveaxis(np.clip(data, 0.0, 1.0), 0, -1), channel_axis=-1)
    out = np.moveaxis(lab, -1, 0).astype(np.float32)
    out /= np.float32(100.0)
    out[1:] += np.float32(0.5)
    return np.ascontiguousarray(out)


def is_constant(data: np.ndarray) -> bool:
    """True when every channel of a ``(C, H, W)`` array holds a single value."""
    flat = data.reshape(data.shape[0], -1)
    return bool((flat == flat[:, :1]).all())
