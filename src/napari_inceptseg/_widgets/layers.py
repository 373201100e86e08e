"""Helpers between napari layers and the engine's plane layout (no torch)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np


def layer_choices(layers, kind) -> list:
    """``(name, layer)`` for every layer of type ``kind``: a layer picker's choices."""
    return [(layer.name, layer) for layer in layers if isinstance(layer, kind)]


def level_scale(layer, level: int | None = None) -> np.ndarray:
    """The layer's scale, for pyramid ``level`` of a multiscale layer (level 0's times
    that level's downsampling factors)."""
    scale = np.asarray(layer.scale, dtype=float)
    if level:
        scale = scale * np.asarray(layer.downsample_factors[level], dtype=float)[-scale.size :]
    return scale


def output_geometry(layer, channel_axis: int | None, level: int | None = None) -> dict[str, Any]:
    """scale / translate / affine / units / axis labels of ``layer`` (at pyramid
    ``level``) without its channel axis. For RGB layers napari's geometry already
    excludes the colour axis."""
    keep = [i for i in range(layer.ndim) if getattr(layer, "rgb", False) or i != channel_axis]
    geo: dict[str, Any] = {
        "scale": level_scale(layer, level)[keep],
        "translate": np.asarray(layer.translate, dtype=float)[keep],
    }
    aff = np.asarray(layer.affine.affine_matrix)
    rows = keep + [layer.ndim]
    geo["affine"] = aff[np.ix_(rows, rows)]
    for attr in ("units", "axis_labels"):
        value = getattr(layer, attr, None)
        if value is not None:
            geo[attr] = tuple(value[i] for i in keep)
    return geo


def current_plane(viewer, layer, layout, level: int | None = None) -> tuple[int, ...]:
    """The leading index of ``layer`` (of its pyramid ``level``) that the viewer shows."""
    if not layout.leading_axes:
        return ()
    world = np.asarray(viewer.dims.point)
    data_point = np.asarray(layer.world_to_data(world[-layer.ndim :]), dtype=float)
    if level:
        data_point = (
            data_point
            / np.asarray(layer.downsample_factors[level], dtype=float)[-data_point.size :]
        )
    out = []
    for axis, size in zip(layout.leading_axes, layout.leading_shape, strict=False):
        out.append(int(np.clip(np.round(data_point[axis]), 0, size - 1)))
    return tuple(out)


def source_level(layer, fits: Callable[[tuple[int, ...]], None]) -> int:
    """The largest pyramid level of a multiscale layer whose shape ``fits`` (which
    raises ``MemoryError`` when it does not)."""
    last: MemoryError | None = None
    for level, data in enumerate(layer.data):
        try:
            fits(tuple(data.shape))
            return level
        except MemoryError as exc:
            last = exc
    raise ValueError(
        f"not even the smallest level of this pyramid ({tuple(layer.data[-1].shape)}) fits "
        f"in memory ({last}): add a smaller level, or crop the image"
    )


def measure(labels, image, planes: bool) -> dict:
    """Objects' measurements for a Labels layer's ``features``: with the intensity of the
    Image layer ``image`` where it holds the labels' shape (plus colour channels), else
    without; plane by plane for a stack segmented in 2D.
    """
    from ..objects.features import object_features

    labels = np.asarray(labels)
    data = None if image is None or image.multiscale else np.asarray(image.data)
    fits = data is not None and data.shape[: labels.ndim] == labels.shape
    return object_features(labels, data if fits else None, planes=planes)
