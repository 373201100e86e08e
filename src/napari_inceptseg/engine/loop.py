"""The optimisation loop: one generator that every caller drives.

:func:`segment_iter` yields a :class:`~.results.Progress` record per iteration and
returns a :class:`~.results.SegmentationResult`; :func:`segment` drains it. It goes one
level of detail down per function: prepare the inputs -> plan memory -> build the
network and its stages -> train stage by stage (``stages.py``) -> the final pass
(``finish.py``) -> the result. No Qt, no napari; torch is imported when a run starts,
not when this module is imported.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from functools import partial
from typing import Any, Dict, Generator, List, Optional, Tuple

import numpy as np

from ..hierarchy import single_region
from ..image import axis_weights, is_constant, is_rgb, prepare, to_colour_space
from ..labels import channels_present, make_label_map, prepare_scribbles
from ..params import SegmentParams, resolve_params
from .plan import HEAP_ALLOWANCE, coarse_size, plan_image, plan_run, training_size
from .results import Progress, RunInterrupted, SegmentationError, relay, run_to_end
from .segmentation import SegmentationResult
from .runtime import CUDA_SYNC_EVERY, heap_allocator, is_out_of_memory, oom_types, resolve_device
from .stages import StageContext, optimise

# torch's seed is process-wide: two runs (two docks, two threads) must not seed and draw
# their initial weights at the same time, or one run's seed decides the other's weights
_SEEDED_INIT = threading.Lock()


@dataclass
class _Inputs:
    """A run's inputs, checked and prepared: what every later step reads."""

    params: SegmentParams
    data: np.ndarray  # normalised (C, *spatial)
    net_in: np.ndarray  # the network's input (CIELAB for RGB by default)
    ranges: np.ndarray
    train_shape: Tuple[int, ...]
    scribbles: Optional[np.ndarray]  # network channel per pixel, -1 = none
    device: Any  # torch.device
    seed: int
    init_state: Optional[Dict[str, Any]]
    ctx: StageContext
    spacing: Optional[Tuple[float, ...]]
    t0: float

    @property
    def spatial(self) -> Tuple[int, ...]:
        return tuple(self.data.shape[1:])

    @property
    def regions(self) -> bool:
        """Whether the labels are regions (the default method; not with scribbles)."""
        return self.params.regions and self.scribbles is None

    def result(self, **kw) -> SegmentationResult:
        return SegmentationResult(
            history=self.ctx.history, params=self.params, device=str(self.device), seed=self.seed,
            ranges=self.ranges, spacing=self.spacing, seconds=time.perf_counter() - self.t0, **kw,
        )


@dataclass
class _Network:
    """The network being trained and what trains it."""

    model: Any
    optimizer: Any
    fmt: Any  # torch memory format
    x_host: Any  # the network's input at full resolution, (1, C, *spatial) on the host
    stages: List[Tuple[Any, int]]  # (TrainingSource, steps): coarse (optional), then full
    lean_step: Any = None

    @property
    def full(self):
        return self.stages[-1][0]


def segment_iter(
    image,
    *,
    channel_axis: Optional[int] = None,
    params: Optional[SegmentParams] = None,
    preview_every: int = 0,
    init_state: Optional[Dict[str, Any]] = None,
    sync_every: Optional[int] = None,
    scribbles=None,
    spacing=None,
    init_model=None,
    preset: Optional[str] = None,
    **kwargs: Any,
) -> Generator[Progress, None, SegmentationResult]:
    """Segment one 2D image (or, with ``dims='3d'``, one volume), yielding a
    :class:`Progress` per iteration.

    Parameters are those of :class:`SegmentParams`, given either as ``params``
    or as keyword arguments (``arch='vanilla', max_iter=200, ...``) on top of
    ``preset`` (``'default'``, ``'paper-vanilla'``, ``'paper-inception'``). With
    ``preview_every=k > 0`` every k-th record (and the last) carries the current
    labels (not in tiled runs, which predict once at the end). The generator's
    return value is the :class:`SegmentationResult`; closing the generator
    cancels the run after the current iteration.

    ``scribbles`` (the image's spatial shape, 0 = unlabelled, ids 1..S) guide
    the clustering: each id becomes one cluster that keeps the id in the output.
    ``spacing`` (one number per spatial axis, e.g. a napari layer's scale)
    weights the continuity loss of each axis by finest spacing / its spacing.
    ``init_model`` (a :class:`~napari_inceptseg.TrainedModel`) warm-starts from a
    saved network, with its architecture and normalisation; ``init_state`` (a
    ``result.model.state_dict()`` of the same architecture and channel counts)
    warm-starts from weights alone. ``sync_every`` reads the losses and cluster
    counts back from the device every that many iterations (default: every
    iteration on the CPU, every ``CUDA_SYNC_EVERY`` on a GPU); the stop rule is
    checked then, so a GPU run may take up to ``sync_every - 1`` steps more.
    """
    run = _prepare(image, channel_axis, resolve_params(params, kwargs, preset), preview_every,
                   sync_every, scribbles, spacing, init_model, init_state)
    if is_constant(run.data):  # nothing to cluster: every pixel is the same cluster
        whole = np.ones(run.spatial, dtype=np.int32)
        return run.result(labels=whole, n_iter=0, stop_reason="constant image", regions=run.regions,
                          channel_ids=np.zeros(run.spatial, dtype=np.int32),
                          hierarchy=single_region(whole) if run.regions else None)
    plan = _plan(plan_image, run.spatial, run.net_in.shape[0], run.params, str(run.device),
                 guided=run.scribbles is not None)
    try:
        net = _build(run, plan)
        n_iter, stop_reason = yield from _train(run, net, plan)
        raw, labels, response, hierarchy = yield from _finish(run, net, plan)
    except KeyboardInterrupt as exc:  # Ctrl+C: hand over what the run has so far
        if isinstance(exc, RunInterrupted):
            raise
        raise RunInterrupted(run.ctx.last.labels(), run.ctx.last.iteration) from None
    except (*oom_types(), RuntimeError) as exc:
        if isinstance(exc, SegmentationError) or not is_out_of_memory(exc):
            raise
        raise _out_of_memory(run) from None
    return _result(run, net, plan, raw, labels, response, n_iter, stop_reason, hierarchy)


def _out_of_memory(run: _Inputs) -> SegmentationError:
    return SegmentationError(
        f"out of memory on {run.device} for a {' x '.join(map(str, run.spatial))} image with "
        f"{run.params.n_channels} channels ({run.params.arch}): use a smaller image, fewer "
        f"channels, a tile_size, or device='cpu'")


def _prepare(image, channel_axis, params, preview_every, sync_every, scribbles, spacing, init_model,
             init_state) -> _Inputs:
    """Check every input and prepare the image: a ValueError that says what to fix,
    before anything heavy happens."""
    ranges = None
    if init_model is not None:
        params = init_model.structure_of(params)
        init_state = init_model.state_dict
        ranges = init_model.ranges
    _check_count("preview_every", preview_every, 0)
    if sync_every is not None:
        _check_count("sync_every", sync_every, 1)
    dims = params.spatial_dims
    data, ranges = prepare(image, channel_axis, dims, ranges)
    net_in = to_colour_space(data, params.color_space, is_rgb(np.shape(image), channel_axis, dims))
    spatial = tuple(data.shape[1:])
    weights = axis_weights(spacing, dims)
    scr, scr_ids = prepare_scribbles(scribbles, spatial, params.n_channels)
    if scr is not None and params.n_clusters:
        raise ValueError("n_clusters cannot be combined with scribbles (merging would change their ids): "
                         "set n_clusters=0, or scribble fewer ids")
    device = resolve_device(params.device)
    if params.precision != "float32" and device.type not in ("cpu", "cuda"):
        raise ValueError(
            f"precision {params.precision!r} is supported on CUDA and the CPU, not on "
            f"{device.type}: use precision='float32'"
        )
    seed = params.seed
    if seed is None:
        seed = drawn_seed()
    if sync_every is None:  # CPU ops are synchronous anyway; a GPU should not wait for the host every step
        sync_every = CUDA_SYNC_EVERY if device.type == "cuda" else 1
    history: Dict[str, List[float]] = {"loss": [], "loss_sim": [], "loss_con": [], "n_labels": []}
    ctx = StageContext(params, spatial, weights, scr_ids, preview_every, sync_every, history)
    return _Inputs(params, data, net_in, ranges, training_size(spatial, params.train_pixels), scr, device,
                   seed, init_state, ctx, _spacing(spacing), time.perf_counter())


#: seeds a run draws lie below this (the dock's seed box, a 32-bit signed integer, takes them all)
DRAWN_SEED_LIMIT = 2**31


def drawn_seed() -> int:
    """A fresh seed from the operating system's entropy, below :data:`DRAWN_SEED_LIMIT`."""
    return int(np.random.SeedSequence().generate_state(1)[0]) % DRAWN_SEED_LIMIT


def _check_count(name: str, value, least: int) -> None:
    if isinstance(value, bool) or int(value) != value or value < least:
        raise ValueError(f"{name} must be an integer >= {least}, got {value!r}")


def _spacing(spacing) -> Optional[Tuple[float, ...]]:
    return None if spacing is None else tuple(float(v) for v in np.ravel(spacing))


def _plan(planner, *args, **kwargs):
    """A memory plan, or the SegmentationError that says why the run cannot fit."""
    try:
        return planner(*args, **kwargs)
    except MemoryError as exc:
        raise SegmentationError(str(exc)) from None


def _build(run: _Inputs, plan) -> _Network:
    """The network (its initial weights drawn from the run's seed alone), its
    optimiser, and the stages it trains in."""
    import torch

    from .networks import build_model
    from .optim import MomentumSGD
    from .runtime import memory_format_for

    params = run.params
    with _SEEDED_INIT, torch.random.fork_rng(devices=[]):
        torch.manual_seed(run.seed)
        model = build_model(params.arch, run.net_in.shape[0], params.n_channels, params.n_conv,
                            params.init, dims=params.spatial_dims)
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
        from .lean import LeanVanillaStep

        lean_step = LeanVanillaStep(model)
    optimizer = MomentumSGD(model.parameters(), lr=params.lr, momentum=0.9)
    return _Network(model, optimizer, fmt, x_host, _stages(run, plan, x_host, fmt), lean_step)


def _stages(run: _Inputs, plan, x_host, fmt) -> List[Tuple[Any, int]]:
    """``(source, steps)`` per stage: the training copy (``train_pixels``) for
    ``max_iter`` steps or, with ``coarse_scale < 1``, a coarser copy first and then
    ``refine_iter`` steps on the training copy. Sources share one random generator
    (the tiles' positions)."""
    import torch

    from .tiles import TrainingSource, downscale_scribbles

    params = run.params
    scr_host = None if run.scribbles is None else torch.from_numpy(run.scribbles)[None, None]
    x_train, scr_train = x_host, scr_host
    if run.train_shape != run.spatial:  # train on a smaller copy (train_pixels)
        x_train = torch.nn.functional.interpolate(x_host, size=run.train_shape, mode="area")
        scr_train = None if scr_host is None else downscale_scribbles(scr_host, run.train_shape)
    rng = np.random.default_rng(run.seed)
    full = TrainingSource(x_train, scr_train, plan.tile, run.device, fmt, rng)
    if params.coarse_scale >= 1.0:
        return [(full, params.max_iter)]
    small = coarse_size(run.train_shape, params.coarse_scale)
    x_small = torch.nn.functional.interpolate(x_train, size=small, mode="area")
    scr_small = None if scr_train is None else downscale_scribbles(scr_train, small)
    small_plan = _plan(plan_run, small, run.net_in.shape[0], params.replace(tile_size=0), str(run.device), True)
    coarse = TrainingSource(x_small, scr_small, small_plan.tile, run.device, fmt, rng)
    return [(coarse, min(params.coarse_iter, params.max_iter)), (full, params.refine_iter)]


def _train(run: _Inputs, net: _Network, plan):
    """Every stage in turn (a generator of records); returns ``(n_iter, stop_reason)``."""
    total = sum(n for _, n in net.stages)
    n_iter, stop_reason = 0, "max_iter"
    heap = run.device.type == "cpu" and plan.heap
    with heap_allocator(heap, plan.step_bytes * HEAP_ALLOWANCE) as guard:  # the training steps only
        for k, (source, steps) in enumerate(net.stages):  # coarse, then full resolution
            if steps == 0:
                continue
            lean = net.lean_step if source is net.full else None
            stop_reason = yield from relay(optimise(
                net.model, net.optimizer, source, steps, n_iter, total, run.ctx, lean), after=guard.check)
            if k == 1 and stop_reason == "max_iter":
                stop_reason = "refine_iter"
            n_iter = len(run.ctx.history["loss"])
    return n_iter, stop_reason


def _finish(run: _Inputs, net: _Network, plan):
    """The final pass (a generator: the tiled pass yields per tile); returns
    ``(channel ids, labels or None, response or None, hierarchy or None)`` at the image's shape."""
    import torch

    from .finish import final_clusters, final_record, regions_pass, stage_record

    labels = response = hierarchy = None
    total = sum(n for _, n in net.stages)
    if run.regions:  # the default method: clusters -> regions and their hierarchy
        stage = partial(stage_record, run.ctx.history, total)
        raw, labels, hierarchy = yield from regions_pass(net.model, net.x_host, run.data, run.params, run.device,
                                                         net.fmt, stage)
    else:
        tiles = partial(final_record, run.ctx.history, total)
        raw, response = yield from final_clusters(net.model, net.x_host, net.full, plan, net.lean_step,
                                                  run.device, net.fmt, run.params, tiles)
    net.model.to(memory_format=torch.contiguous_format)
    return raw, labels, response, hierarchy


def _result(run: _Inputs, net: _Network, plan, raw, labels, response, n_iter, stop_reason,
            hierarchy=None) -> SegmentationResult:
    """The labels (the clusters, merged to ``n_clusters`` if asked, unless they are
    regions already) and everything a caller may want to keep of the run."""
    params = run.params
    label_map = make_label_map(channels_present(raw, params.n_channels), params.n_channels, run.ctx.scribble_ids)
    if labels is None:
        labels = label_map[raw]
        if params.n_clusters:
            from ..regions import limit_clusters

            labels, _ = limit_clusters(labels, run.net_in if response is None else response, params.n_clusters)
    return run.result(labels=labels, n_iter=n_iter, stop_reason=stop_reason, model=net.model, channel_ids=raw,
                      label_map=label_map, scribble_ids=run.ctx.scribble_ids, plan=_describe(plan, run),
                      regions=run.regions, hierarchy=hierarchy)


def _describe(plan, run: _Inputs) -> str:
    """The memory plan in words, saying when training used a smaller copy."""
    if tuple(run.train_shape) == tuple(run.spatial):
        return plan.describe()
    return f"trained on a {' x '.join(map(str, run.train_shape))} copy: {plan.describe()}"


def segment(
    image,
    *,
    preset: str = "default",
    channel_axis: Optional[int] = None,
    scribbles=None,
    spacing=None,
    init_model=None,
    callback=None,
    **params: Any,
) -> SegmentationResult:
    """Segment a 2D image (grayscale, RGB/RGBA, or multichannel with
    ``channel_axis``), or with ``dims='3d'`` a volume, without labels. Returns a
    :class:`SegmentationResult` whose ``.labels`` are numbered 1..K.

    ``preset`` picks the method: ``'default'`` (a short training on a downscaled
    copy, then connected regions; seconds on a CPU) or the papers' exact settings,
    ``'paper-vanilla'`` and ``'paper-inception'``. Any :class:`SegmentParams` field
    given as a keyword (``n_clusters=5``, ``max_iter=200``, ``seed=0``, ...) overrides
    the preset. ``callback(progress)`` is called after every iteration.
    ``scribbles``, ``spacing`` and ``init_model`` are described in :func:`segment_iter`.
    """
    from ..params import preset_params

    settings = preset_params(preset, **params)
    return run_to_end(segment_iter(image, channel_axis=channel_axis, params=settings, scribbles=scribbles,
                                   spacing=spacing, init_model=init_model), callback)
