"""A run's inputs, checked and prepared before anything heavy happens: the image
normalised and in the network's colour space, the scribbles, the device, the seed and
the stage context that every later step reads.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from ...image import axis_weights, is_rgb, prepare, to_colour_space
from ...labels import prepare_scribbles
from ...params import SegmentParams
from ..machine.plan import training_size
from ..machine.runtime import CUDA_SYNC_EVERY, resolve_device
from .progress import SegmentationError
from .result import SegmentationResult
from .training import StageContext


@dataclass
class RunInputs:
    """A run's inputs, checked and prepared: what every later step reads."""

    params: SegmentParams
    data: np.ndarray  # normalised (C, *spatial)
    net_in: np.ndarray  # the network's input (CIELAB for RGB by default)
    ranges: np.ndarray
    train_shape: tuple[int, ...]
    scribbles: np.ndarray | None  # network channel per pixel, -1 = none
    device: Any  # torch.device
    seed: int
    init_state: dict[str, Any] | None
    ctx: StageContext
    spacing: tuple[float, ...] | None
    t0: float

    @property
    def spatial(self) -> tuple[int, ...]:
        """The image's spatial shape."""
        return tuple(self.data.shape[1:])

    @property
    def regions(self) -> bool:
        """Whether the labels are regions (the default method; not with scribbles)."""
        return self.params.regions and self.scribbles is None

    def result(self, **kw) -> SegmentationResult:
        """The run's result: ``kw`` (labels, ...) with what every result carries."""
        return SegmentationResult(
            history=self.ctx.history,
            params=self.params,
            device=str(self.device),
            seed=self.seed,
            ranges=self.ranges,
            spacing=self.spacing,
            seconds=time.perf_counter() - self.t0,
            **kw,
        )


def out_of_memory(run: RunInputs) -> SegmentationError:
    """The error that says what to change when the device ran out of memory."""
    return SegmentationError(
        f"out of memory on {run.device} for a {' x '.join(map(str, run.spatial))} image with "
        f"{run.params.n_channels} channels ({run.params.arch}): use a smaller image, fewer "
        f"channels, a tile_size, or device='cpu'"
    )


def prepare_inputs(
    image,
    params,
    *,
    channel_axis=None,
    preview_every=0,
    sync_every=None,
    scribbles=None,
    spacing=None,
    init_model=None,
    init_state=None,
) -> RunInputs:
    """Check every input and prepare the image: a ValueError that says what to fix,
    before anything heavy happens.
    """
    _check_count("preview_every", preview_every, 0)
    if sync_every is not None:
        _check_count("sync_every", sync_every, 1)
    ranges = None
    if init_model is not None:
        params = init_model.structure_of(params)
        init_state = init_model.state_dict
        ranges = init_model.ranges
    dims = params.spatial_dims
    data, ranges = prepare(image, channel_axis, dims, ranges)
    net_in = to_colour_space(data, params.color_space, is_rgb(np.shape(image), channel_axis, dims))
    spatial = tuple(data.shape[1:])
    scr, scr_ids = prepare_scribbles(scribbles, spatial, params.n_channels)
    device, sync_every = check_settings(params, scr, sync_every)
    seed = drawn_seed() if params.seed is None else params.seed
    history: dict[str, list[float]] = {"loss": [], "loss_sim": [], "loss_con": [], "n_labels": []}
    weights = axis_weights(spacing, dims)
    ctx = StageContext(params, spatial, weights, scr_ids, preview_every, sync_every, history)
    return RunInputs(
        params,
        data,
        net_in,
        ranges,
        training_size(spatial, params.train_pixels),
        scr,
        device,
        seed,
        init_state,
        ctx,
        _spacing(spacing),
        time.perf_counter(),
    )


def check_settings(params: SegmentParams, scribbles, sync_every):
    """The run's device and read-back period, once the settings that only make sense
    together are checked.
    """
    if scribbles is not None and params.n_clusters:
        raise ValueError(
            "n_clusters cannot be combined with scribbles (merging would change their ids): "
            "set n_clusters=0, or scribble fewer ids"
        )
    device = resolve_device(params.device)
    if params.precision != "float32" and device.type not in ("cpu", "cuda"):
        raise ValueError(
            f"precision {params.precision!r} is supported on CUDA and the CPU, not on "
            f"{device.type}: use precision='float32'"
        )
    if sync_every is None:  # the CPU is synchronous anyway; a GPU should not wait every step
        sync_every = CUDA_SYNC_EVERY if device.type == "cuda" else 1
    return device, sync_every


#: seeds a run draws lie below this (the dock's seed box, a 32-bit signed integer, takes them all)
DRAWN_SEED_LIMIT = 2**31


def drawn_seed() -> int:
    """A fresh seed from the operating system's entropy, below :data:`DRAWN_SEED_LIMIT`."""
    return int(np.random.SeedSequence().generate_state(1)[0]) % DRAWN_SEED_LIMIT


def _check_count(name: str, value, least: int) -> None:
    if isinstance(value, bool) or int(value) != value or value < least:
        raise ValueError(f"{name} must be an integer >= {least}, got {value!r}")


def _spacing(spacing) -> tuple[float, ...] | None:
    return None if spacing is None else tuple(float(v) for v in np.ravel(spacing))
