"""The network a run trains and the stages it trains in: its initial weights drawn
from the run's seed alone, its optimiser, the memory-lean step when the plan asks for
it, and the training copies (coarse, then full) with their tiles.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..machine.plan import coarse_size
from ..machine.runtime import memory_format_for
from ..machine.tiles import TrainingSource, downscale_scribbles
from .inputs import RunInputs
from .progress import SegmentationError

# torch's seed is process-wide: two runs (two docks, two threads) must not seed and draw
# their initial weights at the same time, or one run's seed decides the other's weights
_SEEDED_INIT = threading.Lock()


@dataclass
class Network:
    """The network being trained and what trains it."""

    model: Any
    optimizer: Any
    fmt: Any  # torch memory format
    x_host: Any  # the network's input at full resolution, (1, C, *spatial) on the host
    stages: list[tuple[Any, int]]  # (TrainingSource, steps): coarse (optional), then full
    lean_step: Any = None

    @property
    def full(self):
        """The full-resolution stage's training source."""
        return self.stages[-1][0]


def checked_plan(planner, *args, **kwargs):
    """A memory plan, or the SegmentationError that says why the run cannot fit."""
    try:
        return planner(*args, **kwargs)
    except MemoryError as exc:
        raise SegmentationError(str(exc)) from None


def build_network(run: RunInputs, plan) -> Network:
    """The network (its initial weights drawn from the run's seed alone), its
    optimiser, and the stages it trains in.
    """
    import torch

    from ..modeling.networks import build_model
    from ..modeling.optim import MomentumSGD

    params = run.params
    with _SEEDED_INIT, torch.random.fork_rng(devices=[]):
        torch.manual_seed(run.seed)
        model = build_model(
            params.arch,
            run.net_in.shape[0],
            params.n_channels,
            params.n_conv,
            init=params.init,
            dims=params.spatial_dims,
        )
    if run.init_state is not None:
        try:
            model.load_state_dict(run.init_state)
        except RuntimeError as exc:
            raise ValueError(
                "the warm-start network does not fit this image and these settings "
                f"(architecture, channels, depth and dims must match): {exc}"
            ) from None
    fmt = memory_format_for(run.device, params.spatial_dims)
    model.to(device=run.device, memory_format=fmt).train()  # BN uses batch statistics in every pass
    x_host = torch.from_numpy(run.net_in).unsqueeze(0)
    lean_step = None
    if plan.lean:  # the memory-lean vanilla step (see plan.use_lean)
        from ..modeling.lean import LeanVanillaStep

        lean_step = LeanVanillaStep(model)
    optimizer = MomentumSGD(model.parameters(), lr=params.lr, momentum=0.9)
    return Network(model, optimizer, fmt, x_host, _stages(run, plan, x_host, fmt), lean_step)


def _stages(run: RunInputs, plan, x_host, fmt) -> list[tuple[Any, int]]:
    """``(source, steps)`` per stage: the training copy (``train_pixels``) for
    ``max_iter`` steps or, with ``coarse_scale < 1``, a coarser copy first and then
    ``refine_iter`` steps on the training copy. Sources share one random generator
    (the tiles' positions).
    """
    import torch

    params = run.params
    scr_host = None if run.scribbles is None else torch.from_numpy(run.scribbles)[None, None]
    x_train, scr_train = x_host, scr_host
    if run.train_shape != run.spatial:  # train on a smaller copy (train_pixels)
        x_train = torch.nn.functional.interpolate(x_host, size=run.train_shape, mode="area")
        scr_train = None if scr_host is None else downscale_scribbles(scr_host, run.train_shape)
    rng = np.random.default_rng(run.seed)
    full = TrainingSource(x_train, scr_train, plan.tile, device=run.device, fmt=fmt, rng=rng)
    if params.coarse_scale >= 1.0:
        return [(full, params.max_iter)]
    small = coarse_size(run.train_shape, params.coarse_scale)
    x_small = torch.nn.functional.interpolate(x_train, size=small, mode="area")
    scr_small = None if scr_train is None else downscale_scribbles(scr_train, small)
    coarse = TrainingSource(
        x_small, scr_small, plan.coarse_tile, device=run.device, fmt=fmt, rng=rng
    )
    return [(coarse, min(params.coarse_iter, params.max_iter)), (full, params.refine_iter)]
