"""Helpers between napari layers and the engine's plane layout (no torch)."""

from __future__ import annotations

from typing import Any, Dict, Optional, Tuple

import numpy as np


def output_geometry(layer, channel_axis: Optional[int]) -> Dict[str, Any]:
    """scale / translate / affine / units / axis labels of ``layer`` without its channel axis.

    For RGB layers napari's geometry already excludes the colour axis.
    """
    keep = [i for i in range(layer.ndim) if getattr(layer, "rgb", False) or i != channel_axis]
    geo: Dict[str, Any] = {
        "scale": np.asarray(layer.scale)[keep],
        "translate": np.asarray(layer.translate)[keep],
    }
    aff = np.asarray(layer.affine.affine_matrix)
    rows = keep + [layer.ndim]
    geo["affine"] = aff[np.ix_(rows, rows)]
    for attr in ("units", "axis_labels"):
        value = getattr(layer, attr, None)
        if value is not None:
            geo[attr] = tuple(value[i] for i in keep)
    return geo


def current_plane(viewer, layer, layout) -> Tuple[int, ...]:
    """The leading index of ``layer`` that the viewer currently shows."""
    if not layout.leading_axes:
        return ()
    world = np.asarray(viewer.dims.point)
    data_point = np.asarray(layer.world_to_data(world[-layer.ndim:]))
    out = []
    for axis, size in zip(layout.leading_axes, layout.leading_shape):
        out.append(int(np.clip(np.round(data_point[axis]), 0, size - 1)))
    return tuple(out)
