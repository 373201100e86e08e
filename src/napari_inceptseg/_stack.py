"""Segmenting nD images plane by plane (Z-stacks, time series, ...).

The image's last two non-channel axes are Y and X (three, Z Y X, in 3D mode,
where each "plane" is a volume); every other non-channel axis is a "leading"
axis. :func:`segment_stack_iter` segments each selected plane
with :func:`segment_iter`, optionally warm-starting each plane from the network
trained on the previous one so that cluster ids stay consistent, and returns
one label array of the full (non-channel) shape. No Qt, no napari.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Dict, Generator, List, Optional, Sequence, Tuple

import numpy as np

from ._engine import Progress, SegmentationResult, run_to_end, segment_iter
from ._params import SegmentParams, resolve_params


@dataclass(frozen=True)
class PlaneLayout:
    """Where the channels, leading axes and Y/X axes of an image are."""

    shape: Tuple[int, ...]
    channel_axis: Optional[int]  # non-negative, or None
    leading_axes: Tuple[int, ...]
    yx_axes: Tuple[int, int]

    @property
    def leading_shape(self) -> Tuple[int, ...]:
        return tuple(self.shape[a] for a in self.leading_axes)

    @property
    def labels_shape(self) -> Tuple[int, ...]:
        """Shape of the labels: every axis but the channel axis."""
        return tuple(s for i, s in enumerate(self.shape) if i != self.channel_axis)

    @property
    def n_planes(self) -> int:
        return int(np.prod(self.leading_shape, dtype=np.int64))

    def labels_index(self, index: Tuple[int, ...]) -> Tuple[Any, ...]:
        """Index into a labels array (the non-channel shape) that selects one plane."""
        sel: List[Any] = [slice(None)] * len(self.labels_shape)
        for a, i in zip(self.leading_axes, index):
            pos = a - 1 if self.channel_axis is not None and a > self.channel_axis else a
            sel[pos] = i
        return tuple(sel)

    @property
    def spatial_shape(self) -> Tuple[int, ...]:
        return tuple(self.shape[a] for a in self.yx_axes)

    def plane(self, image, index: Tuple[int, ...]) -> np.ndarray:
        """The plane (Y, X[, C]) or volume (Z, Y, X[, C]) at a leading index, channels last."""
        sel: List[Any] = [slice(None)] * len(self.shape)
        for a, i in zip(self.leading_axes, index):
            sel[a] = i
        plane = np.asarray(image[tuple(sel)])
        if self.channel_axis is not None:
            # remaining axes keep their order; move the channel axis last
            ch = sum(1 for a in range(self.channel_axis) if a not in self.leading_axes)
            plane = np.moveaxis(plane, ch, -1)
        return plane


def plane_layout(shape: Sequence[int], channel_axis: Optional[int] = None, rgb: bool = False,
                 dims: int = 2) -> PlaneLayout:
    """Describe an image of ``shape``. ``rgb=True`` means the last axis is colour
    (as napari's ``Image.rgb``); otherwise ``channel_axis`` names the channel axis.
    ``dims=3``: the last three non-channel axes are one volume."""
    shape = tuple(int(s) for s in shape)
    ndim = len(shape)
    if rgb:
        if channel_axis not in (None, -1, ndim - 1):
            raise ValueError("an RGB image has its colour on the last axis; leave channel_axis unset")
        channel_axis = ndim - 1
    if channel_axis is not None:
        if isinstance(channel_axis, bool) or not -ndim <= int(channel_axis) < ndim:
            raise ValueError(f"channel_axis={channel_axis} is out of range for an image of shape {shape}")
        channel_axis = int(channel_axis) % ndim
    others = [a for a in range(ndim) if a != channel_axis]
    if len(others) < dims:
        raise ValueError(
            f"the image of shape {shape} has fewer than {'two' if dims == 2 else 'three'} spatial dimensions"
            + (f" besides channel_axis={channel_axis}" if channel_axis is not None else "")
            + ("" if dims == 2 else ": 3D mode needs a Z-stack")
        )
    return PlaneLayout(shape, channel_axis, tuple(others[:-dims]), tuple(others[-dims:]))


@dataclass(frozen=True)
class StackProgress:
    """One iteration of one plane: ``plane`` counts from 0 up to ``n_planes - 1``."""

    plane: int
    n_planes: int
    index: Tuple[int, ...]
    progress: Progress


@dataclass
class StackResult:
    labels: np.ndarray  # full non-channel shape, ids 1..K consistent over planes
    planes: List[Tuple[int, ...]]
    results: List[SegmentationResult] = field(repr=False)
    seconds: float = 0.0

    @property
    def n_iter(self) -> int:
        return sum(r.n_iter for r in self.results)

    @property
    def n_labels(self) -> int:
        return int(self.labels.max())

    def metadata(self) -> Dict[str, Any]:
        first = self.results[0]
        md = first.metadata()
        md.update(
            n_iter=self.n_iter,
            n_labels=self.n_labels,
            seconds=round(self.seconds, 3),
            final_loss=self.results[-1].final_loss,
            planes=[list(p) for p in self.planes],
            n_iter_per_plane=[r.n_iter for r in self.results],
        )
        return md


def _check_planes(layout: PlaneLayout, planes):
    if planes is None:
        planes = list(np.ndindex(*layout.leading_shape)) if layout.leading_axes else [()]
    planes = [tuple(int(i) for i in p) for p in planes]
    for p in planes:
        if len(p) != len(layout.leading_axes) or any(not 0 <= i < n for i, n in zip(p, layout.leading_shape)):
            raise ValueError(f"plane index {p} does not fit the leading axes of shape {layout.leading_shape}")
    return planes


def _plane_channel_axis(layout: PlaneLayout, rgb: bool, plane) -> Optional[int]:
    return -1 if (layout.channel_axis is not None and not (rgb and plane.shape[-1] in (3, 4))) else None


def segment_stack_iter(
    image,
    *,
    channel_axis: Optional[int] = None,
    rgb: bool = False,
    planes: Optional[Sequence[Tuple[int, ...]]] = None,
    warm_start: bool = True,
    params: Optional[SegmentParams] = None,
    preview_every: int = 0,
    scribbles=None,
    spacing=None,
    init_model=None,
    preset: Optional[str] = None,
    **kwargs: Any,
) -> Generator[StackProgress, None, StackResult]:
    """Segment the planes of an nD image, yielding :class:`StackProgress` records.

    ``planes`` lists leading indices to segment (default: all; ``[()]`` for a 2D
    image). The returned labels have the image's full non-channel shape; planes
    not segmented stay 0. With ``warm_start`` every plane starts from the network
    trained on the previous one, so with ``regions=False`` the same kind of region
    keeps its cluster id; with regions (the default method) each plane's regions get
    ids of their own, numbered on from the plane before.
    With ``params.dims == '3d'`` each "plane" is a Z Y X volume. ``scribbles``
    has the labels' shape (planes without strokes are segmented unguided);
    ``spacing`` is per spatial axis; ``init_model`` warm-starts the first plane.
    Settings come as ``params``, or as keywords on top of ``preset``.
    """
    params = resolve_params(params, kwargs, preset)
    if init_model is not None:
        params = init_model.structure_of(params)
    layout = plane_layout(np.shape(image), channel_axis, rgb, params.spatial_dims)
    planes = _check_planes(layout, planes)
    if scribbles is not None and tuple(np.shape(scribbles)) != layout.labels_shape:
        raise ValueError(
            f"the scribbles have shape {tuple(np.shape(scribbles))} but the image's labels have shape "
            f"{layout.labels_shape}: paint them on a Labels layer of the image's size"
        )

    t0 = time.perf_counter()
    raw = np.zeros(layout.labels_shape, dtype=np.int32)  # channel id + 1 per pixel, 0 = not done
    results: List[SegmentationResult] = []
    state = None
    scribble_ids: set = set()
    for k, idx in enumerate(planes):
        plane = layout.plane(image, idx)
        scr = None if scribbles is None else np.asarray(scribbles[layout.labels_index(idx)])
        gen = segment_iter(plane, channel_axis=_plane_channel_axis(layout, rgb, plane), params=params,
                           preview_every=preview_every, init_state=state if warm_start else None,
                           scribbles=scr, spacing=spacing, init_model=init_model if k == 0 else None)
        while True:
            try:
                p = next(gen)
            except StopIteration as stop:
                res = stop.value
                break
            yield StackProgress(k, len(planes), idx, p)
        results.append(res)
        scribble_ids.update(res.scribble_ids)
        raw[layout.labels_index(idx)] = res.channel_ids + 1
        if warm_start and res.model is not None:
            state = {n: t.detach().clone() for n, t in res.model.state_dict().items()}
    if results and all(r.regions for r in results):
        labels = _stack_regions(layout, planes, results)
    else:  # one numbering for the whole stack: scribble ids kept, the rest 1..K over the planes done
        from ._scribbles import make_label_map

        present = np.flatnonzero(np.bincount(raw.ravel(), minlength=params.n_channels + 1)[1:])
        lut = np.concatenate([[0], make_label_map(present, params.n_channels, sorted(scribble_ids))])
        labels = lut[raw]
    return StackResult(labels=labels, planes=planes, results=results, seconds=time.perf_counter() - t0)


def _stack_regions(layout: PlaneLayout, planes, results) -> np.ndarray:
    """Each plane's regions, numbered after those of the planes before it: regions
    are made per plane, so the same id never names unrelated regions."""
    out = np.zeros(layout.labels_shape, dtype=np.int32)
    offset = 0
    for idx, res in zip(planes, results):
        out[layout.labels_index(idx)] = res.labels + offset
        offset += int(res.labels.max())
    return out


def segment_stack(image, **kwargs) -> StackResult:
    """:func:`segment_stack_iter` run to the end."""
    return run_to_end(segment_stack_iter(image, **kwargs))


@dataclass(frozen=True)
class ApplyProgress:
    """One plane done by :func:`apply_stack_iter`."""

    plane: int
    n_planes: int
    index: Tuple[int, ...]
    labels: np.ndarray


def apply_stack_iter(
    model,
    image,
    *,
    channel_axis: Optional[int] = None,
    rgb: bool = False,
    planes: Optional[Sequence[Tuple[int, ...]]] = None,
    device: str = "auto",
    tile_size: int = 0,
) -> Generator[ApplyProgress, None, np.ndarray]:
    """Label every plane (or volume, for a 3D network) of an nD image with a trained
    network and no training, yielding one :class:`ApplyProgress` per plane and
    returning labels of the full non-channel shape (0 where not applied). Every
    plane uses the same channel -> id mapping, so ids agree across the stack."""
    from ._model_io import TrainedModel, load_model

    if not isinstance(model, TrainedModel):
        model = load_model(model)
    layout = plane_layout(np.shape(image), channel_axis, rgb, model.params.spatial_dims)
    planes = _check_planes(layout, planes)
    out = np.zeros(layout.labels_shape, dtype=np.int32)
    for k, idx in enumerate(planes):
        plane = layout.plane(image, idx)
        labels = model.apply(plane, channel_axis=_plane_channel_axis(layout, rgb, plane),
                             device=device, tile_size=tile_size)
        out[layout.labels_index(idx)] = labels
        yield ApplyProgress(k, len(planes), idx, labels)
    return out


def apply_stack(model, image, **kwargs) -> np.ndarray:
    """:func:`apply_stack_iter` run to the end."""
    return run_to_end(apply_stack_iter(model, image, **kwargs))
