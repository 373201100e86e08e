"""Images and their axes (numpy only, no torch): the one home of the channel axis.

- :func:`spatial_layout` reads one plane (or volume): its spatial shape, its channel
  axis (RGB/RGBA from a last axis of 3 or 4, else ``channel_axis``);
- :class:`PlaneLayout` / :func:`plane_layout` read an nD image (a stack, a time
  series, a napari layer) as planes, and give each plane to the engine channels last;
- :func:`prepare_image` / :func:`prepare` normalise every image the engine accepts
  into a float32 ``(C, *spatial)`` array, or raise a ``ValueError`` that says what to do;
- :func:`axis_weights` turns pixel spacing into the continuity loss's axis weights.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

MIN_SIZE = 8
MAX_CHANNELS = 64
#: Percentiles used to normalise non-uint8 images, per channel.
NORM_PERCENTILES = (1.0, 99.8)


def _as_array(image) -> np.ndarray:
    if np.ma.isMaskedArray(image) and np.ma.getmaskarray(image).any():
        raise ValueError(
            "the image is a masked array, and its mask would be ignored: fill the masked "
            "pixels first (numpy.ma.filled(image, value)), or pass image.data to use them"
        )
    try:
        arr = np.asarray(image)
    except Exception as exc:  # pragma: no cover - exotic array-likes
        raise ValueError(f"could not read the image as an array: {exc}") from exc
    if arr.dtype == object or arr.dtype.kind not in "biuf":
        raise ValueError(
            f"unsupported image dtype {arr.dtype}: give a numeric array (bool, integer or float)"
        )
    return arr


_AXES = {2: "two (Y, X)", 3: "three (Z, Y, X)"}


def spatial_layout(shape, channel_axis: int | None = None, dims: int = 2):
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
                f"the image has shape {shape}: it needs "
                f"{_AXES[dims].replace(' (', ' spatial dimensions (')}"
                ", optionally with a channel axis"
            )
        la = " (a last axis of 2 may be grey + alpha: give image[..., 0])" if shape[-1] == 2 else ""
        raise ValueError(
            f"cannot tell the channels of an image of shape {shape}: pass "
            "channel_axis=<axis> for multichannel data (e.g. channel_axis=0 for "
            + (
                "(C, Y, X)); for Z-stacks or time series segment one 2D plane at a time"
                if dims == 2
                else "(C, Z, Y, X))"
            )
            + la
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
    """The ``(C, 2)`` intensity range [lo, hi] that :func:`apply_ranges` maps
    to [0, 1] per channel: 0..255 for uint8, 0..1 for bool, else the 1st and
    99.8th percentiles (min/max for sparse channels).
    """
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
    with hi <= lo becomes 0.
    """
    ranges = np.asarray(ranges, dtype=np.float64)
    if ranges.shape != (data.shape[0], 2):
        raise ValueError(
            f"the image has {data.shape[0]} channel(s) but the normalisation is for "
            f"{ranges.shape[0]}"
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


def prepare_image(image, channel_axis: int | None = None) -> np.ndarray:
    """Check an image and return the network's float32 ``(C, Y, X)`` input.

    Parameters
    ----------
    image : array_like
        A 2D grayscale, RGB/RGBA or multichannel image.
    channel_axis : int, optional
        The axis that holds the channels of a multichannel image.

    Returns
    -------
    numpy.ndarray
        float32 ``(C, Y, X)``, each channel's robust range mapped to about [0, 1].

    Raises
    ------
    ValueError
        For non-numeric dtypes, NaN or inf, fewer or more than two spatial
        dimensions, images smaller than 8 x 8 and a wrong ``channel_axis``; the
        message says what to do.

    Examples
    --------
    >>> import numpy as np
    >>> from napari_inceptseg import prepare_image
    >>> prepare_image(np.zeros((3, 32, 40)), channel_axis=0).shape
    (3, 32, 40)
    """
    return prepare(image, channel_axis)[0]


def prepare(image, channel_axis: int | None = None, dims: int = 2, ranges=None):
    """:func:`prepare_image` for 2D images or (``dims=3``) volumes, returning
    ``(data, ranges)``: the float32 ``(C, *spatial)`` input and the per-channel
    intensity ranges used (given ``ranges``, e.g. a saved network's, are applied
    instead of measuring this image's).
    """
    arr = _as_array(image)
    _, ax, drop_alpha = check_layout(arr.shape, channel_axis, dims)
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


def check_layout(shape, channel_axis: int | None = None, dims: int = 2):
    """:func:`spatial_layout`, and a ValueError when the image is too small to segment
    (a check of the shape alone, before any pixel is read).
    """
    spatial, ax, drop_alpha = spatial_layout(shape, channel_axis, dims)
    h, w = spatial[-2:]
    if h < MIN_SIZE or w < MIN_SIZE:
        raise ValueError(
            f"the image is {h} x {w} pixels; it must be at least {MIN_SIZE} x {MIN_SIZE} "
            "(upsample it first if it really is this small)"
        )
    if dims == 3 and spatial[0] < 2:
        raise ValueError(f"the volume has {spatial[0]} slice(s) along Z: 3D mode needs at least 2")
    return spatial, ax, drop_alpha


def is_rgb(shape, channel_axis: int | None = None, dims: int = 2) -> bool:
    """True when an image of this shape is read as RGB(A): no ``channel_axis`` given
    and a last axis of 3 or 4 (see :func:`spatial_layout`).
    """
    return channel_axis is None and len(shape) == dims + 1 and shape[-1] in (3, 4)


def to_colour_space(data: np.ndarray, space: str, rgb: bool) -> np.ndarray:
    """The network's input from normalised ``(C, *spatial)`` data: RGB images in
    CIELAB when ``space == 'lab'`` (L / 100, a / 100 + 0.5, b / 100 + 0.5, so about
    0..1 like the other inputs); anything else unchanged.
    """
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


@dataclass(frozen=True)
class PlaneLayout:
    """Where the channels, leading axes and Y/X axes of an image are."""

    shape: tuple[int, ...]
    channel_axis: int | None  # non-negative, or None
    leading_axes: tuple[int, ...]
    yx_axes: tuple[int, int]

    @property
    def leading_shape(self) -> tuple[int, ...]:
        """The shape of the axes in front of the spatial ones (Z, T, ...)."""
        return tuple(self.shape[a] for a in self.leading_axes)

    @property
    def labels_shape(self) -> tuple[int, ...]:
        """Shape of the labels: every axis but the channel axis."""
        return tuple(s for i, s in enumerate(self.shape) if i != self.channel_axis)

    @property
    def n_planes(self) -> int:
        """The number of planes (slices) segmented one by one."""
        return int(np.prod(self.leading_shape, dtype=np.int64))

    def labels_index(self, index: tuple[int, ...]) -> tuple[Any, ...]:
        """Index into a labels array (the non-channel shape) that selects one plane."""
        sel: list[Any] = [slice(None)] * len(self.labels_shape)
        for a, i in zip(self.leading_axes, index, strict=False):
            pos = a - 1 if self.channel_axis is not None and a > self.channel_axis else a
            sel[pos] = i
        return tuple(sel)

    @property
    def spatial_shape(self) -> tuple[int, ...]:
        """The shape of the segmented axes."""
        return tuple(self.shape[a] for a in self.yx_axes)

    def in_channels(self, rgb: bool = False) -> int:
        """The network's input channels: 3 for RGB(A) colour (alpha is dropped), else
        the channel axis's length, or 1 without one.
        """
        if rgb:
            return 3
        return self.shape[self.channel_axis] if self.channel_axis is not None else 1

    def plane_channel_axis(self, rgb: bool = False) -> int | None:
        """The channel axis of :meth:`plane`'s result for the engine: -1 for channels,
        None for RGB(A) colour (which the engine reads from the last axis itself).
        """
        if self.channel_axis is None or (rgb and self.shape[self.channel_axis] in (3, 4)):
            return None
        return -1

    def plane(self, image, index: tuple[int, ...]) -> np.ndarray:
        """The plane (Y, X[, C]) or volume (Z, Y, X[, C]) at a leading index, channels last."""
        sel: list[Any] = [slice(None)] * len(self.shape)
        for a, i in zip(self.leading_axes, index, strict=False):
            sel[a] = i
        plane = np.asarray(image[tuple(sel)])
        if self.channel_axis is not None:
            # remaining axes keep their order; move the channel axis last
            ch = sum(1 for a in range(self.channel_axis) if a not in self.leading_axes)
            plane = np.moveaxis(plane, ch, -1)
        return plane


def plane_layout(
    shape: Sequence[int], channel_axis: int | None = None, rgb: bool = False, dims: int = 2
) -> PlaneLayout:
    """Describe an image of ``shape``. ``rgb=True`` means the last axis is colour
    (as napari's ``Image.rgb``); otherwise ``channel_axis`` names the channel axis.
    ``dims=3``: the last three non-channel axes are one volume.
    """
    shape = tuple(int(s) for s in shape)
    ndim = len(shape)
    if rgb:
        if channel_axis not in (None, -1, ndim - 1):
            raise ValueError(
                "an RGB image has its colour on the last axis; leave channel_axis unset"
            )
        channel_axis = ndim - 1
    if channel_axis is not None:
        if isinstance(channel_axis, bool) or not -ndim <= int(channel_axis) < ndim:
            raise ValueError(
                f"channel_axis={channel_axis} is out of range for an image of shape {shape}"
            )
        channel_axis = int(channel_axis) % ndim
    others = [a for a in range(ndim) if a != channel_axis]
    if len(others) < dims:
        raise ValueError(
            f"the image of shape {shape} has fewer than {'two' if dims == 2 else 'three'} "
            "spatial dimensions"
            + (f" besides channel_axis={channel_axis}" if channel_axis is not None else "")
            + ("" if dims == 2 else ": 3D mode needs a Z-stack")
        )
    return PlaneLayout(shape, channel_axis, tuple(others[:-dims]), tuple(others[-dims:]))


def axis_weights(spacing, dims: int) -> tuple[float, ...]:
    """Continuity weight per spatial axis for pixel ``spacing`` (e.g. a layer's
    scale): the finest axis gets 1, an axis with k times coarser spacing 1/k
    (neighbours that far apart are less alike). None means isotropic.
    """
    if spacing is None:
        return (1.0,) * dims
    try:
        sp = np.asarray(spacing, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        raise ValueError(f"spacing must be {dims} positive numbers, got {spacing!r}") from None
    if sp.size != dims or not np.isfinite(sp).all() or (sp <= 0).any():
        raise ValueError(
            f"spacing must be {dims} positive numbers (one per spatial axis), got {spacing!r}"
        )
    return tuple(float(sp.min() / s) for s in sp)
