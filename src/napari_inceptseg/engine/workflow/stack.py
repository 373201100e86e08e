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
from collections.abc import Generator, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import numpy as np

from ...image import PlaneLayout, plane_layout
from ...labels import make_label_map
from ...params import SegmentParams
from ...presets import resolve_params
from ...regions.hierarchy import stack_hierarchy
from .progress import Progress, relay, run_to_end
from .result import SegmentationResult
from .saved import TrainedModel, load_model
from .segment import segment_iter


@dataclass(frozen=True)
class StackProgress:
    """One iteration of one plane: ``plane`` counts from 0 up to ``n_planes - 1``."""

    plane: int
    n_planes: int
    index: tuple[int, ...]
    progress: Progress


@dataclass
class StackResult:
    """Labels of every plane of a stack, with their ids consistent along it."""

    labels: np.ndarray  # full non-channel shape, ids 1..K consistent over planes
    planes: list[tuple[int, ...]]
    results: list[SegmentationResult] = field(repr=False)
    seconds: float = 0.0
    #: every plane's region hierarchy, cut together (a
    #: :class:`~napari_inceptseg.regions.hierarchy.StackHierarchy`); None for clusters
    hierarchy: Any = field(default=None, repr=False)

    @property
    def level(self) -> float | None:
        """The level the labels are cut at (None without a hierarchy)."""
        return self.results[0].level if self.hierarchy is not None and self.results else None

    @property
    def n_iter(self) -> int:
        """Training iterations over all planes."""
        return sum(r.n_iter for r in self.results)

    @property
    def n_labels(self) -> int:
        """The number of labels in the whole stack."""
        return int(self.labels.max())

    def metadata(self) -> dict[str, Any]:
        """The settings and numbers of the run, for a layer's metadata."""
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
        if len(p) != len(layout.leading_axes) or any(
            not 0 <= i < n for i, n in zip(p, layout.leading_shape, strict=False)
        ):
            raise ValueError(
                f"plane index {p} does not fit the leading axes of shape {layout.leading_shape}"
            )
    return planes


def segment_stack_iter(
    image,
    *,
    channel_axis: int | None = None,
    rgb: bool = False,
    planes: Sequence[tuple[int, ...]] | None = None,
    warm_start: bool = True,
    params: SegmentParams | None = None,
    preview_every: int = 0,
    scribbles=None,
    spacing=None,
    init_model=None,
    preset: str | None = None,
    **kwargs: Any,
) -> Generator[StackProgress, None, StackResult]:
    """Segment the planes of an nD image, yielding progress.

    Parameters
    ----------
    image : array_like
        As for :func:`segment_stack`.
    channel_axis : int, optional
        The axis that holds the channels.
    rgb : bool
        Whether the last axis holds RGB(A) colour.
    planes : sequence of tuple of int, optional
        The leading indices to segment (default: all; ``[()]`` for a 2D image).
        Planes not segmented stay 0.
    warm_start : bool
        Start every plane from the network trained on the previous one, so with
        ``regions=False`` the same kind of region keeps its cluster id; regions (the
        default method) get ids of their own, numbered on from the plane before.
    params : SegmentParams, optional
        The settings; or keywords on top of ``preset``.
    preview_every : int
        As for :func:`segment_iter`.
    scribbles : array_like of int, optional
        The labels' shape; planes without strokes are segmented unguided.
    spacing : sequence of float, optional
        Per spatial axis.
    init_model : TrainedModel, optional
        Warm-starts the first plane.
    preset : str, optional
        The preset the keyword settings apply to.
    **kwargs
        :class:`SegmentParams` fields.

    Yields
    ------
    StackProgress
        One record per iteration of each plane.

    Returns
    -------
    StackResult

    Raises
    ------
    ValueError
        A bad image, plane list, scribbles or setting, before any work.

    Examples
    --------
    >>> import numpy as np
    >>> from napari_inceptseg import run_to_end
    >>> from napari_inceptseg.engine.workflow.stack import segment_stack_iter
    >>> stack = np.zeros((2, 40, 40), np.uint8)
    >>> stack[:, 10:30, 10:30] = 200
    >>> out = run_to_end(segment_stack_iter(stack, planes=[(1,)], seed=0))
    >>> int(out.labels[0].max()), int(out.labels[1].max()) > 0
    (0, True)
    """
    params = resolve_params(params, kwargs, preset)
    if init_model is not None:
        params = init_model.structure_of(params)
    layout = plane_layout(np.shape(image), channel_axis, rgb, params.spatial_dims)
    planes = _check_planes(layout, planes)
    _check_scribbles(layout, scribbles)

    t0 = time.perf_counter()
    raw = np.zeros(layout.labels_shape, dtype=np.int32)  # channel id + 1 per pixel, 0 = not done
    results: list[SegmentationResult] = []
    state = None
    scribble_ids: set = set()
    for k, idx in enumerate(planes):
        plane = layout.plane(image, idx)
        scr = None if scribbles is None else np.asarray(scribbles[layout.labels_index(idx)])
        gen = segment_iter(
            plane,
            channel_axis=layout.plane_channel_axis(rgb),
            params=params,
            preview_every=preview_every,
            init_state=state if warm_start else None,
            scribbles=scr,
            spacing=spacing,
            init_model=init_model if k == 0 else None,
        )
        res = yield from relay(gen, wrap=partial(StackProgress, k, len(planes), idx))
        results.append(res)
        scribble_ids.update(res.scribble_ids)
        if res.channel_ids is not None:  # (objects have no network channels)
            raw[layout.labels_index(idx)] = res.channel_ids + 1
        if warm_start and res.model is not None:
            state = {n: t.detach().clone() for n, t in res.model.state_dict().items()}
    labels = _stack_labels(
        layout, planes, results, raw, n_channels=params.n_channels, scribble_ids=scribble_ids
    )
    return StackResult(
        labels=labels,
        planes=planes,
        results=results,
        seconds=time.perf_counter() - t0,
        hierarchy=_stack_hierarchy(layout, planes, results),
    )


def _check_scribbles(layout: PlaneLayout, scribbles) -> None:
    """A ValueError that says what to do when the scribbles are not of the labels' shape."""
    if scribbles is not None and tuple(np.shape(scribbles)) != layout.labels_shape:
        raise ValueError(
            f"the scribbles have shape {tuple(np.shape(scribbles))} but the image's labels "
            "have shape "
            f"{layout.labels_shape}: paint them on a Labels layer of the image's size"
        )


def _stack_labels(
    layout: PlaneLayout, planes, results, raw, *, n_channels: int, scribble_ids
) -> np.ndarray:
    """The whole stack's labels: regions numbered on plane after plane (the default
    method), or one numbering of the clusters for the whole stack (scribble ids kept,
    the rest 1..K over the planes done; ``raw`` is channel id + 1, 0 = not done).
    """
    if results and all(r.regions or r.params.objects for r in results):
        return _stack_regions(layout, planes, results)
    present = np.flatnonzero(np.bincount(raw.ravel(), minlength=n_channels + 1)[1:])
    lut = np.concatenate([[0], make_label_map(present, n_channels, sorted(scribble_ids))])
    return lut[raw]


def _stack_hierarchy(layout: PlaneLayout, planes, results):
    """The planes' hierarchies cut together, when every plane has one."""
    if not results or any(r.hierarchy is None for r in results):
        return None
    return stack_hierarchy(
        layout.labels_shape,
        [layout.labels_index(i) for i in planes],
        [r.hierarchy for r in results],
    )


def _stack_regions(layout: PlaneLayout, planes, results) -> np.ndarray:
    """Each plane's regions (or objects), numbered after those of the planes before it:
    they are made per plane, so the same id never names unrelated ones. The objects'
    background stays 0.
    """
    out = np.zeros(layout.labels_shape, dtype=np.int32)
    offset = 0
    for idx, res in zip(planes, results, strict=False):
        out[layout.labels_index(idx)] = np.where(res.labels > 0, res.labels + offset, 0)
        offset += int(res.labels.max())
    return out


def segment_stack(image, **kwargs) -> StackResult:
    """Segment every plane of an nD image (Z-stack, time series, ...).

    :func:`segment_stack_iter` run to the end.

    Parameters
    ----------
    image : array_like
        The image; its last two non-channel axes are Y and X (Z, Y, X with
        ``dims='3d'``), every other non-channel axis is a "leading" axis.
    **kwargs
        ``channel_axis``, ``rgb``, ``planes``, ``warm_start``, ``params``,
        ``preview_every``, ``scribbles``, ``spacing``, ``init_model``, ``preset`` and
        :class:`SegmentParams` fields, as for :func:`segment_stack_iter`.

    Returns
    -------
    StackResult
        ``.labels`` of the image's full non-channel shape, ``.results`` per plane.

    Raises
    ------
    ValueError
        A bad image, plane list or setting, before any work.

    Examples
    --------
    >>> import numpy as np
    >>> from napari_inceptseg import segment_stack
    >>> stack = np.zeros((3, 40, 40), np.uint8)
    >>> stack[:, 10:30, 10:30] = 200
    >>> out = segment_stack(stack, seed=0)
    >>> out.labels.shape, len(out.results)
    ((3, 40, 40), 3)
    """
    return run_to_end(segment_stack_iter(image, **kwargs))


@dataclass(frozen=True)
class ApplyProgress:
    """One plane done by :func:`apply_stack_iter`."""

    plane: int
    n_planes: int
    index: tuple[int, ...]
    labels: np.ndarray


def apply_stack_iter(
    model,
    image,
    *,
    channel_axis: int | None = None,
    rgb: bool = False,
    planes: Sequence[tuple[int, ...]] | None = None,
    device: str = "auto",
    tile_size: int = 0,
) -> Generator[ApplyProgress, None, np.ndarray]:
    """Label every plane (or volume, for a 3D network) of an nD image with a trained
    network and no training, yielding one :class:`ApplyProgress` per plane and
    returning labels of the full non-channel shape (0 where not applied). Every
    plane uses the same channel -> id mapping, so ids agree across the stack.
    """
    if not isinstance(model, TrainedModel):
        model = load_model(model)
    layout = plane_layout(np.shape(image), channel_axis, rgb, model.params.spatial_dims)
    planes = _check_planes(layout, planes)
    out = np.zeros(layout.labels_shape, dtype=np.int32)
    for k, idx in enumerate(planes):
        plane = layout.plane(image, idx)
        labels = model.apply(
            plane, channel_axis=layout.plane_channel_axis(rgb), device=device, tile_size=tile_size
        )
        out[layout.labels_index(idx)] = labels
        yield ApplyProgress(k, len(planes), idx, labels)
    return out


def apply_stack(model, image, **kwargs) -> np.ndarray:
    """Label every plane of an nD image with a trained network, without training.

    :func:`apply_stack_iter` run to the end: every plane gets the same ids for the
    same kind of region.

    Parameters
    ----------
    model : TrainedModel
        The network.
    image : array_like
        The image; planes as for :func:`segment_stack`.
    **kwargs
        ``channel_axis``, ``rgb``, ``planes``, ``device``, ``tile_size``.

    Returns
    -------
    numpy.ndarray
        Labels of the image's full non-channel shape (0 where not applied).

    Raises
    ------
    ValueError
        The image does not fit the network.

    Examples
    --------
    >>> import numpy as np
    >>> from napari_inceptseg import apply_stack, segment
    >>> stack = np.zeros((3, 40, 40), np.uint8)
    >>> stack[:, :, 20:] = 200
    >>> model = segment(stack[0], preset="paper-vanilla", max_iter=5, seed=0).trained_model()
    >>> apply_stack(model, stack).shape
    (3, 40, 40)
    """
    return run_to_end(apply_stack_iter(model, image, **kwargs))
