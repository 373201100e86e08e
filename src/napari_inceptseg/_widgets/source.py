"""What a dock run reads from a napari image layer, and where its output goes: the
layer's data, a pyramid level, or the slice on screen (no torch, no Qt)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..image import PlaneLayout, plane_layout
from ..params import SegmentParams
from .layers import current_plane, output_geometry, source_level


@dataclass
class RunSource:
    data: Any  # the layer's data, a pyramid level, or a lazy view of one slice
    layout: PlaneLayout  # of ``data``
    planes: list[tuple[int, ...]]
    geometry: dict  # scale / translate / affine / ... of the output layer
    channel_axis: int | None  # for the engine (None for RGB layers)
    labels_sel: tuple | None = None  # this slice within labels of the whole layer

    def spacing(self) -> tuple[float, ...]:
        """The voxel size along each spatial axis (3D runs weight continuity by it)."""
        ca = self.channel_axis
        return tuple(
            float(self.geometry["scale"][a - (ca is not None and a > ca)])
            for a in self.layout.yx_axes
        )


def layer_layout(layer, channel_axis: int | None, dims: int, shape=None) -> PlaneLayout:
    """The plane layout of ``layer``'s data (level 0 of a pyramid), or of ``shape``."""
    if shape is None:
        shape = layer.data[0].shape if layer.multiscale else layer.data.shape
    return plane_layout(tuple(shape), channel_axis, rgb=layer.rgb, dims=dims)


def plan_line(layer, layout: PlaneLayout, params: SegmentParams, device: str) -> str:
    """Which memory path the run takes and why (raises MemoryError if none fits)."""
    from ..engine.machine.plan import plan_image

    return plan_image(
        layout.spatial_shape, layout.in_channels(layer.rgb), params, device
    ).describe()


def run_source(
    viewer,
    layer,
    channel_axis,
    params: SegmentParams,
    *,
    device: str,
    all_slices: bool,
    level: int | None = None,
) -> RunSource:
    """A multiscale layer's ``level`` (None: the largest that fits the memory plan);
    with ``all_slices`` False, the slice on screen alone (a lazy view, so dask and zarr
    data are read plane by plane), placed at its position."""
    dims = params.spatial_dims

    def fits(shape) -> None:
        plan_line(layer, layer_layout(layer, channel_axis, dims, shape), params, device)

    if not layer.multiscale:
        level = None
    elif level is None:
        level = source_level(layer, fits)
    elif not 0 <= level < len(layer.data):
        raise ValueError(f"the pyramid has levels 0 to {len(layer.data) - 1}, not {level}")
    data = layer.data[level] if level is not None else layer.data
    layout = layer_layout(layer, channel_axis, dims, data.shape)
    engine_axis = None if layer.rgb else layout.channel_axis
    geometry = output_geometry(layer, engine_axis, level)
    if not layout.leading_axes or all_slices:
        planes = (
            [tuple(i) for i in np.ndindex(*layout.leading_shape)] if layout.leading_axes else [()]
        )
        return RunSource(data, layout, planes, geometry, engine_axis)
    index = current_plane(viewer, layer, layout, level)
    sel = [slice(None)] * len(layout.shape)
    for axis, i in zip(layout.leading_axes, index, strict=False):
        sel[axis] = slice(i, i + 1)
    labels_sel = tuple(s for a, s in enumerate(sel) if layer.rgb or a != layout.channel_axis)
    for out_axis, s in enumerate(labels_sel):
        if s.start is not None:
            geometry["translate"][out_axis] += s.start * geometry["scale"][out_axis]
    data = data[tuple(sel)]
    layout = layer_layout(layer, channel_axis, dims, data.shape)
    return RunSource(data, layout, [(0,) * len(index)], geometry, engine_axis, labels_sel)


def scribbles_for(scribble_layer, layer, channel_axis, params: SegmentParams, labels_sel):
    """The scribbles layer's data for a run: checked against the image's size, and cut
    to the slice a "current slice" run segments."""
    if scribble_layer is None:
        return None
    if layer.multiscale:
        raise ValueError("scribbles need a single-scale image layer: this one is a pyramid")
    full = layer_layout(layer, channel_axis, params.spatial_dims)
    if tuple(scribble_layer.data.shape) != full.labels_shape:
        raise ValueError(
            f"the scribbles layer '{scribble_layer.name}' has shape "
            f"{tuple(scribble_layer.data.shape)}, "
            f"the image needs {full.labels_shape}: add a Labels layer of the image's size "
            "(Layers > New Labels layer with the image selected) and paint on it"
        )
    return scribble_layer.data if labels_sel is None else scribble_layer.data[labels_sel]
