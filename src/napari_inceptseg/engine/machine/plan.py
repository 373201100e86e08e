"""How much memory a run needs, how much there is, and a clear refusal when it
does not fit -- before anything is allocated. Each network's bytes per pixel come
from ``networks.py`` (which imports torch); free memory from ``runtime.py``.

A run's peak is the process (torch's libraries), the image's copies at full
resolution, and the larger of one training step and the final pass. Each term
counts the values per pixel the engine keeps alive (activations saved for the
backward pass, the loss gradient, BatchNorm outputs, max-pool indices), fitted to
peak RSS measured per phase on the CPU with ``benchmarks/memory_plan.py``
(docs/benchmarks.md). Runs plan for ``SAFETY_FRACTION`` of the free memory.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, replace

from ...image import MIN_SIZE
from ...params import SegmentParams
from ...regions.method import ANALYSIS_PIXELS
from .footprint import (
    BASE_BYTES,
    HEAP_ALLOWANCE,
    MARGIN,
    SAFETY_FRACTION,
    WEIGHT_COPIES,
    bytes_per_pixel,
    estimate_bytes,
    gb,
    input_bytes,
    pass_bytes_per_pixel,
    weight_bytes,
)
from .runtime import available_bytes, fast_heap_possible

#: the memory-lean vanilla step is used when the regular one would need more than this
LEAN_ABOVE_BYTES = 4e9


def use_lean(
    h: int,
    w: int,
    in_channels: int,
    params: SegmentParams,
    device: str,
    *,
    have: float | None = None,
) -> bool:
    """Whether a run takes the memory-lean ``vanilla`` step: when the regular step
    would need more than ``LEAN_ABOVE_BYTES`` or more than half of the free memory.
    It is slower per iteration (it recomputes cheap layers and works block by
    block). NAPARI_INCEPTSEG_LEAN=0 / 1 forces it off / on.
    """
    if (
        params.arch != "vanilla"
        or params.precision != "float32"
        or str(device).split(":")[0] not in ("cpu", "cuda")
    ):
        return False
    mode = os.environ.get("NAPARI_INCEPTSEG_LEAN", "auto")
    if mode in ("0", "1"):
        return mode == "1"
    need = estimate_bytes(h, w, in_channels, params)
    if have is None:
        have = available_bytes(device)
    return need > LEAN_ABOVE_BYTES or (have is not None and need > have / 2)


# -- planning a run: the whole image, the memory-lean step, or tiles ---------------------

#: the largest tile the automatic choice takes (pixels in 2D, voxels in 3D): larger
#: tiles make each step slower without helping the clustering much
AUTO_TILE_PIXELS = {2: 1024 * 1024, 3: 64 * 64 * 64}
#: the smallest tile side a run may use (and at least 2 x receptive radius + 8)
MIN_TILE = 24


def receptive_radius(params: SegmentParams) -> int:
    """Pixels of context each output pixel sees on every side (``networks.py``)."""
    from ..modeling.networks import NETWORKS

    return NETWORKS[params.arch].receptive_radius(params.n_conv)


def min_tile_side(params: SegmentParams) -> int:
    """The smallest tile side worth training on: a few receptive fields."""
    return max(MIN_TILE, 2 * receptive_radius(params) + 8)


@dataclass(frozen=True)
class RunPlan:
    """How a run will use memory: ``tile`` is None for the whole image at once."""

    shape: tuple[int, ...]
    lean: bool
    tile: tuple[int, ...] | None
    budget_bytes: float | None
    reason: str
    #: the whole run's estimated peak: process, image copies, and the larger of one
    #: training step (with the fast heap's allowance) and the final pass
    peak_bytes: float = 0.0
    #: one training step's estimate, and whether the CPU's fast heap is used for it
    step_bytes: float = 0.0
    heap: bool = False
    #: the coarse stage's tile (with ``coarse_scale < 1``; None: its whole copy)
    coarse_tile: tuple[int, ...] | None = None
    #: the clusters' final pass over the full image: tiles of this size, None for one
    #: whole pass (the default method's regions use ``analysis_shape`` instead)
    final_tile: tuple[int, ...] | None = None
    #: the default method's final pass: the shape of the copy its regions are made on
    analysis_shape: tuple[int, ...] | None = None

    @property
    def tiled(self) -> bool:
        """Whether the run trains on tiles."""
        return self.tile is not None

    def describe(self) -> str:
        """One line for the widget's status and the CLI: the path taken and why."""
        return self.reason


def _xs(shape) -> str:
    return " x ".join(str(int(s)) for s in shape)


def _fit_tile(shape: tuple[int, ...], max_px: float) -> tuple[int, ...]:
    """The most cube-like tile of at most ``max_px`` pixels inside ``shape``."""
    tile = [1] * len(shape)
    if max_px < 1:
        return tuple(tile)
    order = sorted(range(len(shape)), key=lambda a: shape[a])
    left = max_px
    for k, a in enumerate(order):
        side = int(left ** (1.0 / (len(order) - k)))
        tile[a] = max(1, min(shape[a], side))
        left /= tile[a]
    return tuple(tile)


def plan_image(
    spatial: tuple[int, ...],
    in_channels: int,
    params: SegmentParams,
    device: str,
    guided: bool = False,
) -> RunPlan:
    """THE plan of a run on an image of ``spatial`` shape, made once before any work.

    The training steps on the image's copy of at most ``train_pixels`` (see
    :func:`training_size`: the whole copy, the memory-lean step or tiles), the coarse
    stage's tiles, and the final pass: the default method's analysis copy, or the
    clusters' tiles over the full image. The engine, the dock and ``auto_batch`` read it;
    a ``MemoryError`` says what fits when the run does not.
    """
    train = training_size(spatial, params.train_pixels)
    plan = plan_run(train, in_channels, params, device, guided=guided, full_shape=spatial)
    coarse = None
    if params.coarse_scale < 1.0:
        small = coarse_size(train, params.coarse_scale)
        coarse = plan_run(small, in_channels, params.replace(tile_size=0), device, guided=True).tile
    if params.regions and not guided:
        analysis = _analysis_shape(tuple(spatial), in_channels, params, device)
        return replace(plan, coarse_tile=coarse, analysis_shape=analysis)
    final = plan.tile
    if tuple(train) != tuple(spatial):  # trained on a copy: the full image in tiles
        final = prediction_tile(spatial, in_channels, params, device)
    return replace(plan, coarse_tile=coarse, final_tile=final)


def prediction_tile(
    spatial: tuple[int, ...], in_channels: int, params: SegmentParams, device: str
) -> tuple[int, ...]:
    """The tile of a pass without training over an image of ``spatial`` shape (the
    clusters' final pass after training on a copy, a saved network applied): sized as
    for a training step, which needs more, so that it surely fits; the whole image when
    that fits at once. A ``MemoryError`` when nothing fits.
    """
    return plan_run(spatial, in_channels, params, device, guided=True).tile or tuple(spatial)


def _analysis_shape(spatial, in_channels: int, params: SegmentParams, device: str):
    """The copy the default method's regions are made on: at most ``ANALYSIS_PIXELS`` per
    plane, and no more than one pass without gradients fits in memory.
    """
    shape = training_size(spatial, ANALYSIS_PIXELS)
    # the pass needs less than a training step, so a shape that could train fits
    fit = plan_run(
        shape, in_channels, params.replace(tile_size=0), device, guided=True, full_shape=spatial
    )
    if fit.tiled:  # as many pixels per plane as the largest tile that fits holds
        shape = training_size(spatial, max(1, math.prod(fit.tile) // math.prod(shape[:-2])))
    return tuple(shape)


def training_size(shape, max_pixels: int):
    """The spatial size of the training copy: Y and X shrunk together (Z kept) so that
    a plane has at most ``max_pixels`` pixels; ``shape`` itself when 0 or small enough.
    """
    plane = shape[-2] * shape[-1]
    if not max_pixels or plane <= max_pixels:
        return tuple(shape)
    yx = coarse_size(shape[-2:], math.sqrt(max_pixels / plane))
    return tuple(shape[:-2]) + tuple(yx)


def coarse_size(shape, scale: float):
    """Size of the coarse stage's image (at least ``MIN_SIZE`` per side, 2 along Z)."""
    least = [MIN_SIZE] * len(shape)
    if len(shape) == 3:
        least[0] = 2
    return tuple(max(lo, min(s, round(s * scale))) for s, lo in zip(shape, least, strict=False))


def plan_run(
    shape: tuple[int, ...],
    in_channels: int,
    params: SegmentParams,
    device: str,
    *,
    guided: bool = False,
    full_shape: tuple[int, ...] | None = None,
) -> RunPlan:
    """Choose between the whole image (regular or memory-lean step) and tiles for the
    training steps on ``shape`` (the image's, or its training copy's, of an image of
    ``full_shape``), and estimate the whole run's peak.

    The budget is ``params.memory_gb``, or ``SAFETY_FRACTION`` of what is free on
    ``device``, less the image's copies. ``params.tile_size > 0`` asks for tiles of
    that side wherever the image is larger; ``0`` tiles only when the whole image does
    not fit, with the largest tile that fits, up to ``AUTO_TILE_PIXELS``. Raises
    ``MemoryError`` naming what fits when not even the smallest tile does.
    """
    shape = tuple(int(s) for s in shape)
    full_shape = shape if full_shape is None else tuple(int(s) for s in full_shape)
    budget = _budget(params, device)
    weights = weight_bytes(params, in_channels, len(shape))
    if budget is not None and weights * MARGIN > max(budget / 2, budget - BASE_BYTES * MARGIN):
        raise MemoryError(
            f"the {params.arch!r} network with n_channels={params.n_channels} and "
            f"n_conv={params.n_conv} "
            f"has {weights / 4 / WEIGHT_COPIES / 1e6:,.0f} million weights, which with their "
            "gradients "
            f"need about {gb(weights)}: more than the about {gb(budget)} available on {device}; "
            "use fewer channels (n_channels) or fewer layers (n_conv)"
        )
    fixed = BASE_BYTES + input_bytes(full_shape, in_channels) + weights
    room = None if budget is None else budget - fixed * MARGIN  # for the steps and the final pass
    try:
        tile, lean, why = _plan_step(shape, in_channels, params, device, guided=guided, room=room)
    except MemoryError as exc:
        if shape == full_shape:
            raise
        raise MemoryError(
            f"{exc} (it is the training copy of a {_xs(full_shape)} image, whose own copies "
            f"take about {gb(input_bytes(full_shape, in_channels))} of that)"
        ) from None
    step_px = math.prod(tile) if tile else math.prod(shape)
    step_bytes = step_px * bytes_per_pixel(params, in_channels, lean)
    heap = (
        fast_heap_possible(device)
        and not lean
        and budget is not None
        and fixed + step_bytes * (1 + HEAP_ALLOWANCE) <= budget / 2
    )
    final = _final_pass_bytes(
        shape, full_shape, in_channels, params, guided=guided, tile=tile, lean=lean, room=room
    )
    peak = max(
        BASE_BYTES + input_bytes(full_shape, in_channels, preparing=True),
        fixed + max(step_bytes * (1 + (HEAP_ALLOWANCE if heap else 0)), final),
    )
    avail = "" if budget is None else f"; about {gb(budget)} available to it"
    return RunPlan(
        shape,
        lean,
        tile,
        budget,
        f"{why} (needs about {gb(peak)}{avail})",
        peak_bytes=peak,
        step_bytes=step_bytes,
        heap=heap,
    )


def _budget(params: SegmentParams, device: str) -> float | None:
    budget: float | None = None
    if not os.environ.get("NAPARI_INCEPTSEG_NO_MEMORY_CHECK"):
        have = available_bytes(device)
        budget = None if have is None else float(have) * SAFETY_FRACTION
    if params.memory_gb:
        budget = params.memory_gb * 1e9 if budget is None else min(budget, params.memory_gb * 1e9)
    return budget


def _plan_step(shape, in_channels, params, device, *, guided, room):
    """``(tile or None, lean, words)`` for the training steps, within ``room`` bytes."""
    dims = len(shape)
    n_px = float(math.prod(shape))
    lean = (
        dims == 2
        and not guided
        and room is not None
        and use_lean(shape[0], shape[1], in_channels, params, device, have=room)
    )
    per_px = bytes_per_pixel(params, in_channels) * MARGIN
    room_px = float("inf") if room is None else room / per_px
    smallest = min_tile_side(params)
    if params.tile_size and params.tile_size < smallest:
        raise ValueError(
            f"tile_size must be 0 (automatic) or at least {smallest} for {params.arch!r} "
            f"with n_conv={params.n_conv}, got {params.tile_size}"
        )
    if params.tile_size and any(s > params.tile_size for s in shape):
        return _asked_tiles(shape, params, device, per_px, room)
    if room is None or n_px * bytes_per_pixel(params, in_channels, lean) * MARGIN <= room:
        return (
            None,
            lean,
            "the whole image at once" + (", with the memory-lean step" if lean else ""),
        )
    max_px = min(room_px, AUTO_TILE_PIXELS[dims])
    tile = _fit_tile(shape, max_px)
    if max_px <= 0 or any(t < min(smallest, s) for t, s in zip(tile, shape, strict=False)):
        need = (BASE_BYTES + n_px * bytes_per_pixel(params, in_channels, lean)) * MARGIN
        raise _nothing_fits(shape, params, device, need=need, room=room, room_px=room_px)
    return (
        tile,
        False,
        (
            f"tiles of {_xs(tile)}: the whole image does not fit; one network is "
            "trained on tiles and predicts tile by tile"
        ),
    )


def _asked_tiles(shape, params, device, per_px, room):
    """The plan for tiles of the asked ``tile_size``, or why they do not fit."""
    tile = tuple(min(s, params.tile_size) for s in shape)
    room_px = float("inf") if room is None else room / per_px
    if math.prod(tile) > room_px:
        raise MemoryError(
            f"a tile of {_xs(tile)} needs about "
            f"{gb(BASE_BYTES * MARGIN + math.prod(tile) * per_px)} "
            f"of memory with {params.arch!r} but about {gb(room + BASE_BYTES * MARGIN)} "
            "is available "
            f"on {device}: use a smaller tile_size (at most about "
            f"{int(max(room_px, 0) ** (1 / len(shape)))})"
        )
    return (
        tile,
        False,
        f"tiles of {_xs(tile)} (tile_size {params.tile_size}), predicted tile by tile",
    )


def _nothing_fits(shape, params, device, *, need, room, room_px) -> MemoryError:
    """The error for an image of which not even the smallest tile fits, with what would."""
    hint = (
        "free some memory"
        if room_px < 1
        else f"a tile of {_xs(_fit_tile(shape, room_px))} is all that fits"
    )
    if params.arch == "inception":
        hint += ", or use arch='vanilla'"
    if params.n_channels > 16:
        hint += ", or use fewer channels (n_channels)"
    return MemoryError(
        f"a {_xs(shape)} image needs about {gb(need)} of memory with {params.arch!r} "
        f"({params.n_channels} channels) and not even a {min_tile_side(params)}-pixel tile "
        f"fits in the about {gb(max(room, 0) + BASE_BYTES * MARGIN)} available on {device}: "
        f"{hint}"
    )


def _final_pass_bytes(shape, full_shape, in_channels, params, *, guided, tile, lean, room) -> float:
    """The final pass's estimate: the default method's regions on an analysis copy of
    at most ``ANALYSIS_PIXELS`` per plane, else the clusters of the whole image (or tile
    by tile, or with the lean step, as the steps were planned).
    """
    full_px = float(math.prod(full_shape))
    per_pass = pass_bytes_per_pixel(params, in_channels)
    if params.regions and not guided:
        planes = math.prod(full_shape[:-2])
        return min(full_px, planes * ANALYSIS_PIXELS) * per_pass
    if tile is not None:
        return math.prod(tile) * per_pass
    if lean:
        return full_px * bytes_per_pixel(params, in_channels, lean=True)
    if room is not None and full_px * per_pass * MARGIN > room:  # the full image goes tile by tile
        return min(full_px * per_pass, room / MARGIN)
    return full_px * per_pass
