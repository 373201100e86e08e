"""The optimisation loop: one generator that every caller drives.

``segment_iter`` yields a :class:`Progress` record per iteration and returns a
:class:`SegmentationResult`; :func:`segment` drains it. No Qt, no napari; torch
is imported when a run starts, not when this module is imported.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any, Dict, Generator, List, Optional, Tuple

import numpy as np

from ._memory import coarse_size, training_size
from ._params import SegmentParams, resolve_params
from ._preprocess import is_constant
from ._regions import consecutive_labels

if TYPE_CHECKING:  # pragma: no cover
    import torch


#: on CUDA, read losses and cluster counts back every this many iterations
CUDA_SYNC_EVERY = 8
# torch's seed is process-wide: two runs (two docks, two threads) must not seed and draw
# their initial weights at the same time, or one run's seed decides the other's weights
_SEEDED_INIT = threading.Lock()


class SegmentationError(RuntimeError):
    """A run failed for a reason the user can act on (e.g. out of memory).

    When the optimisation diverged, ``labels`` holds the last good clusters (those of
    ``iteration``, the last one whose loss was finite, at the image's spatial shape),
    or None when no iteration was good or the stage was tiled.
    """

    def __init__(self, message: str, *, labels: Optional[np.ndarray] = None, iteration: Optional[int] = None):
        super().__init__(message)
        self.labels = labels
        self.iteration = iteration


class RunInterrupted(KeyboardInterrupt):
    """Ctrl+C (or, in the CLI, SIGTERM) stopped a run. ``labels`` are the last good
    clusters (of ``iteration``, at the image's spatial shape), or None when there were
    none yet (or the stage was tiled)."""

    def __init__(self, labels: Optional[np.ndarray] = None, iteration: Optional[int] = None):
        super().__init__()
        self.labels = labels
        self.iteration = iteration


@dataclass
class _LastGood:
    """The last read-back step whose loss was finite, kept for a run that stops early."""

    iteration: Optional[int] = None
    target: Any = None  # int16 channels (1, *shape) at the stage's resolution
    as_labels: Any = None  # target -> labels 1..K at the image's shape

    def labels(self) -> Optional[np.ndarray]:
        return None if self.target is None else self.as_labels(self.target)


@dataclass(frozen=True)
class Progress:
    """One optimisation step.

    ``labels`` is set only on preview iterations (every ``preview_every``
    steps): the current clusters numbered 1..K, the image's spatial shape.
    """

    iteration: int
    max_iter: int
    loss: float
    loss_sim: float
    loss_con: float
    n_labels: int
    labels: Optional[np.ndarray] = None
    #: "training", or "final pass" for the tile-by-tile pass after training (whose
    #: records repeat the last iteration's numbers and count tiles in ``part``)
    stage: str = "training"
    part: Optional[Tuple[int, int]] = None  # (tiles done, tiles in all) in the final pass


@dataclass
class SegmentationResult:
    """What a finished run returns."""

    labels: np.ndarray
    n_iter: int
    history: Dict[str, List[float]]
    params: SegmentParams
    device: str
    seconds: float
    stop_reason: str
    seed: int
    model: Any = field(default=None, repr=False)
    #: the network's channel index of every pixel (0..n_channels-1) before
    #: renumbering; stable across slices when a network is warm-started
    channel_ids: Optional[np.ndarray] = field(default=None, repr=False)
    #: cluster id of every network channel: ``label_map[channel_ids]`` are the
    #: clusters (``labels`` themselves unless ``regions`` or ``n_clusters`` changed them)
    label_map: Optional[np.ndarray] = field(default=None, repr=False)
    #: per-channel intensity range [lo, hi] the image was normalised with
    ranges: Optional[np.ndarray] = field(default=None, repr=False)
    scribble_ids: Tuple[int, ...] = ()
    spacing: Optional[Tuple[float, ...]] = None
    #: how memory was used: whole image, memory-lean step, or tiles (and why)
    plan: str = "the whole image at once"
    #: True when ``labels`` are connected regions made from the clusters (the default
    #: method); False when they are the clusters (``label_map[channel_ids]``)
    regions: bool = False

    def trained_model(self):
        """The trained network with its parameters, normalisation and id mapping,
        as a :class:`~napari_inceptseg.TrainedModel` (to save, apply or warm-start)."""
        from ._model_io import TrainedModel

        if self.model is None:
            raise ValueError(f"this run trained no network ({self.stop_reason})")
        return TrainedModel.from_result(self)

    def save_model(self, path, *, overwrite: bool = False):
        """Save the trained network to a ``.safetensors`` file (see :class:`TrainedModel`)."""
        return self.trained_model().save(path, overwrite=overwrite)

    @property
    def n_labels(self) -> int:
        return int(self.labels.max()) if self.labels.size else 0

    @property
    def final_loss(self) -> Optional[float]:
        return self.history["loss"][-1] if self.history["loss"] else None

    def metadata(self) -> Dict[str, Any]:
        """JSON-friendly description of the run (for napari layer metadata, files)."""
        from ._params import preset_of

        return {
            "preset": preset_of(self.params),
            "params": {**self.params.to_dict(), "seed": self.seed},
            "n_iter": self.n_iter,
            "n_labels": self.n_labels,
            "final_loss": self.final_loss,
            "device": self.device,
            "seconds": round(self.seconds, 3),
            "stop_reason": self.stop_reason,
            "plan": self.plan,
            "labels": "regions" if self.regions else "clusters",
            **({"scribble_ids": list(self.scribble_ids)} if self.scribble_ids else {}),
            **({"spacing": list(self.spacing)} if self.spacing else {}),
        }


def available_devices() -> List[str]:
    """Devices present on this machine, best first (always ends with 'cpu')."""
    import torch

    found = []
    if torch.cuda.is_available():
        found.append("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        found.append("mps")
    return found + ["cpu"]


def resolve_device(device: str = "auto") -> "torch.device":
    """Turn 'auto' / 'cuda' / 'cuda:N' / 'mps' / 'cpu' into a torch.device.

    Asking for a device that is absent raises a ValueError that says what is.
    """
    import torch

    present = available_devices()
    name = str(device).strip().lower()
    if name == "auto":
        return torch.device(present[0])
    kind, _, index = name.partition(":")
    if kind not in ("cuda", "mps", "cpu") or (index and not index.isdigit()):
        raise ValueError(
            f"unknown device {device!r}: use 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'"
        )
    if kind not in present:
        raise ValueError(
            f"device {device!r} was requested but is not available here "
            f"(available: {', '.join(present)}); use device='auto' or 'cpu'"
        )
    if kind == "cuda" and index and int(index) >= torch.cuda.device_count():
        raise ValueError(
            f"device {device!r} does not exist: this machine has "
            f"{torch.cuda.device_count()} CUDA device(s)"
        )
    return torch.device(name)


def continuity_loss(response: "torch.Tensor") -> "torch.Tensor":
    """Mean |vertical differences| + mean |horizontal differences| of an
    ``(N, C, H, W)`` response (the L1 losses against zero of the reference)."""
    dy = response[:, :, 1:, :] - response[:, :, :-1, :]
    dx = response[:, :, :, 1:] - response[:, :, :, :-1]
    return dy.abs().mean() + dx.abs().mean()


def similarity_loss(response: "torch.Tensor", target: "torch.Tensor") -> "torch.Tensor":
    """Cross-entropy of an ``(N, C, H, W)`` response against its own argmax ``(N, H, W)``."""
    import torch.nn.functional as F

    return F.cross_entropy(response, target)


def _oom_types():
    import torch

    types = [MemoryError]
    oom = getattr(torch.cuda, "OutOfMemoryError", None)
    if oom is not None:
        types.append(oom)
    return tuple(types)


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
    params = resolve_params(params, kwargs, preset)
    ranges = None
    if init_model is not None:
        params = init_model.structure_of(params)
        init_state = init_model.state_dict
        ranges = init_model.ranges
    if isinstance(preview_every, bool) or int(preview_every) != preview_every or preview_every < 0:
        raise ValueError(f"preview_every must be an integer >= 0, got {preview_every!r}")
    if sync_every is not None and (
        isinstance(sync_every, bool) or int(sync_every) != sync_every or sync_every < 1
    ):
        raise ValueError(f"sync_every must be an integer >= 1, got {sync_every!r}")

    from ._preprocess import is_rgb, prepare, to_colour_space
    from ._scribbles import axis_weights, prepare_scribbles

    dims = params.spatial_dims
    data, ranges = prepare(image, channel_axis, dims, ranges)
    net_in = to_colour_space(data, params.color_space, is_rgb(np.shape(image), channel_axis, dims))
    spatial = tuple(data.shape[1:])
    train_shape = training_size(spatial, params.train_pixels)
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
        seed = int(np.random.SeedSequence().generate_state(1)[0])
    history: Dict[str, List[float]] = {"loss": [], "loss_sim": [], "loss_con": [], "n_labels": []}
    t0 = time.perf_counter()
    common = dict(history=history, params=params, device=str(device), seed=seed, ranges=ranges,
                  spacing=None if spacing is None else tuple(float(v) for v in np.ravel(spacing)))

    if is_constant(data):
        # Nothing to cluster: every pixel is the same cluster.
        return SegmentationResult(
            labels=np.ones(spatial, dtype=np.int32), n_iter=0, seconds=time.perf_counter() - t0,
            stop_reason="constant image", channel_ids=np.zeros(spatial, dtype=np.int32),
            regions=params.regions and scr is None, **common,
        )

    from ._memory import HEAP_ALLOWANCE, plan_image, plan_run

    try:
        plan = plan_image(spatial, net_in.shape[0], params, str(device), guided=scr is not None)
    except MemoryError as exc:
        raise SegmentationError(str(exc)) from None

    import torch

    from ._models import build_model
    from ._train import MomentumSGD, heap_allocator, memory_format_for

    if sync_every is None:
        # CPU ops are synchronous anyway; a GPU should not wait for the host every step
        sync_every = CUDA_SYNC_EVERY if device.type == "cuda" else 1
    last = _LastGood()
    try:
        with _SEEDED_INIT, torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = build_model(params.arch, net_in.shape[0], params.n_channels, params.n_conv,
                                params.init, dims=dims)
        if init_state is not None:
            try:
                model.load_state_dict(init_state)
            except RuntimeError as exc:
                raise ValueError(
                    "the warm-start network does not fit this image and these settings "
                    f"(architecture, channels, depth and dims must match): {exc}"
                ) from None
        fmt = memory_format_for(device, dims)
        model.to(device=device, memory_format=fmt).train()  # BN uses batch statistics in every pass
        x_host = torch.from_numpy(net_in).unsqueeze(0)
        scr_host = None if scr is None else torch.from_numpy(scr)[None, None]
        x_train, scr_train = x_host, scr_host
        if train_shape != spatial:  # train on a smaller copy (train_pixels)
            x_train = torch.nn.functional.interpolate(x_host, size=train_shape, mode="area")
            scr_train = None if scr_host is None else _downscale_scribbles(scr_host, train_shape)
        rng = np.random.default_rng(seed)
        full = _Source(x_train, scr_train, plan.tile, device, fmt, rng)
        optimizer = MomentumSGD(model.parameters(), lr=params.lr, momentum=0.9)
        lean_step = None
        if plan.lean:  # the memory-lean vanilla step (see _memory.use_lean)
            from ._lean import LeanVanillaStep

            lean_step = LeanVanillaStep(model)

        stages = [(full, params.max_iter)]
        if params.coarse_scale < 1.0:
            small = coarse_size(train_shape, params.coarse_scale)
            x_small = torch.nn.functional.interpolate(x_train, size=small, mode="area")
            scr_small = None if scr_train is None else _downscale_scribbles(scr_train, small)
            try:
                small_plan = plan_run(small, net_in.shape[0], params.replace(tile_size=0), str(device), True)
            except MemoryError as exc:
                raise SegmentationError(str(exc)) from None
            coarse = _Source(x_small, scr_small, small_plan.tile, device, fmt, rng)
            stages = [(coarse, min(params.coarse_iter, params.max_iter)), (full, params.refine_iter)]
        total = sum(n for _, n in stages)
        n_iter = 0
        stop_reason = "max_iter"
        heap = device.type == "cpu" and plan.heap
        with heap_allocator(heap, plan.step_bytes * HEAP_ALLOWANCE) as guard:  # the training steps only
            for k, (source, steps) in enumerate(stages):  # coarse, then full resolution
                if steps == 0:
                    continue
                stop_reason = yield from _each_record(_optimise(
                    model, optimizer, source, steps, n_iter, total, params, preview_every,
                    sync_every, history, spatial, weights, last, scr_ids,
                    lean_step if source is full else None,
                ), guard.check)
                if k == 1 and stop_reason == "max_iter":
                    stop_reason = "refine_iter"
                n_iter = len(history["loss"])
        # the final pass also sets BatchNorm's running statistics to this image's,
        # so that the saved network reproduces this result (TrainedModel.apply)
        regions = params.regions and scr is None
        if regions:  # the default method: clusters -> regions
            raw, labels = _regions_pass(model, x_host, data, params, device, fmt)
        else:
            tiles = partial(_final_record, history, total)
            raw, response = yield from _final_clusters(model, x_host, full, plan, lean_step, device, fmt,
                                                       params, tiles)
            labels = None
        model.to(memory_format=torch.contiguous_format)
    except KeyboardInterrupt as exc:  # Ctrl+C: hand over what the run has so far
        if isinstance(exc, RunInterrupted):
            raise
        raise RunInterrupted(last.labels(), last.iteration) from None
    except _oom_types() as exc:
        raise SegmentationError(
            f"out of memory on {device} for a {' x '.join(map(str, spatial))} image with "
            f"{params.n_channels} channels ({params.arch}): use a smaller image, fewer "
            f"channels, a tile_size, or device='cpu'"
        ) from exc

    from ._scribbles import channels_present, make_label_map

    label_map = make_label_map(channels_present(raw, params.n_channels), params.n_channels, scr_ids)
    if labels is None:
        labels = label_map[raw]
        if params.n_clusters:
            from ._regions import limit_clusters

            labels, _ = limit_clusters(labels, net_in if response is None else response, params.n_clusters)
    return SegmentationResult(
        labels=labels, n_iter=n_iter, seconds=time.perf_counter() - t0,
        stop_reason=stop_reason, model=model, channel_ids=raw, label_map=label_map,
        scribble_ids=scr_ids, plan=_describe(plan, train_shape, spatial), regions=regions, **common,
    )


class _Source:
    """What the optimisation steps of one stage see: the whole image (moved to the
    device once) or, with ``tile``, a random tile of it per step."""

    def __init__(self, x, scribbles, tile, device, fmt, rng):
        self.tile = tile
        self.shape = tuple(x.shape[2:])
        self.device, self.fmt, self.rng = device, fmt, rng
        if tile is None:
            x = x.to(device).contiguous(memory_format=fmt)
            scribbles = None if scribbles is None else scribbles.to(device)
        self.x, self.scribbles = x, scribbles
        # the stop rule looks at the clusters of this many recent tiles together
        self.window = 1 if tile is None else int(min(8, math.ceil(math.prod(self.shape) / math.prod(tile))))

    def batch(self):
        if self.tile is None:
            return self.x, self.scribbles
        sel = (slice(None), slice(None)) + tuple(
            slice(a, a + t) for a, t in
            ((int(self.rng.integers(0, s - t + 1)), t) for s, t in zip(self.shape, self.tile))
        )
        x = self.x[sel].to(self.device).contiguous(memory_format=self.fmt)
        scr = None if self.scribbles is None else self.scribbles[sel].to(self.device)
        return x, scr


def _describe(plan, train_shape, spatial) -> str:
    """The memory plan in words, saying when training used a smaller copy."""
    if tuple(train_shape) == tuple(spatial):
        return plan.describe()
    return f"trained on a {' x '.join(map(str, train_shape))} copy: {plan.describe()}"


def _upscale_nearest(array: np.ndarray, shape) -> np.ndarray:
    """``array`` resized to ``shape`` by nearest neighbour (each output pixel takes
    the input pixel it falls in)."""
    if tuple(array.shape) == tuple(shape):
        return array
    index = np.ix_(*[(np.arange(n) * a) // n for a, n in zip(array.shape, shape)])
    return array[index]


def _regions_pass(model, x_host, data, params, device, fmt):
    """The default method's last step: one forward pass over the image (a copy of at
    most ``ANALYSIS_PIXELS`` per plane for larger ones, and no larger than the free
    memory allows) that sets BatchNorm's statistics and gives the response, then
    regions from its clusters (:func:`~napari_inceptseg._regions.regions_from_clusters`).
    Returns ``(channel ids, labels)``, both of the image's spatial shape."""
    import torch

    from ._memory import plan_run
    from ._models import calibrating_batchnorm
    from ._regions import ANALYSIS_PIXELS, regions_from_clusters

    spatial = tuple(x_host.shape[2:])
    shape = training_size(spatial, ANALYSIS_PIXELS)
    try:  # the pass needs less than a training step, so a shape that could train fits
        fit = plan_run(shape, x_host.shape[1], params.replace(tile_size=0), str(device), guided=True,
                       full_shape=spatial)
    except MemoryError as exc:
        raise SegmentationError(str(exc)) from None
    if fit.tiled:  # as many pixels per plane as the largest tile that fits holds
        shape = training_size(spatial, max(1, math.prod(fit.tile) // math.prod(shape[:-2])))
    image = data
    if shape != spatial:
        x_host = torch.nn.functional.interpolate(x_host, size=shape, mode="area")
        image = torch.nn.functional.interpolate(torch.from_numpy(data)[None], size=shape, mode="area")[0].numpy()
    with torch.no_grad(), _autocast(device, params.precision), calibrating_batchnorm(model):
        response = model.fast_forward(x_host.to(device).contiguous(memory_format=fmt)).float()[0]
    raw = response.argmax(0).to("cpu", torch.int32).numpy()
    response = response.cpu().numpy()
    labels = regions_from_clusters(raw, response, image, merge_threshold=params.merge_threshold,
                                   n_clusters=params.n_clusters)
    return _upscale_nearest(raw, spatial), _upscale_nearest(labels, spatial)


def _final_record(history, total, done, of) -> Progress:
    """A record of the tile-by-tile final pass: the last iteration's numbers, and the tiles."""
    last = (history[k][-1] if history[k] else math.nan for k in ("loss", "loss_sim", "loss_con"))
    n = history["n_labels"][-1] if history["n_labels"] else 0
    return Progress(len(history["loss"]), total, *last, n, stage="final pass", part=(done, of))


def _final_clusters(model, x_host, full, plan, lean_step, device, fmt, params, tiles):
    """The argmax channel of every pixel of the full image after training (and, when
    ``n_clusters`` asks for merging and the image was one pass, the response), by the
    path the memory plan chose: whole image, memory-lean step or tiles. A generator:
    the tiled path yields ``tiles(done, of)`` after each tile (so a run can be cancelled
    within one tile) and returns ``(channel ids, response or None)``."""
    import torch

    from ._memory import plan_run
    from ._models import calibrating_batchnorm

    spatial = tuple(x_host.shape[2:])
    tile = plan.tile if plan.tiled else None
    if tuple(full.shape) != spatial:  # trained on a smaller copy: the full image may need tiles
        try:
            tile = plan_run(spatial, x_host.shape[1], params, str(device), guided=True).tile or spatial
        except MemoryError as exc:
            raise SegmentationError(str(exc)) from None
    if tile is not None:  # statistics over tiles covering the image, then tile by tile
        n = 2 * sum(1 for _ in _windows(spatial, tile))  # (the prediction's windows are as many or more)
        done = 0
        with calibrating_batchnorm(model):
            for _ in calibrate_tiled(model, x_host, tile, device, fmt, params.precision):
                done += 1
                yield tiles(done, n)
        predict = predict_tiled(model, x_host, tile, model.radius, device, fmt, params.precision)
        while True:
            try:
                next(predict)
            except StopIteration as stop:
                return stop.value.numpy(), None
            done += 1
            yield tiles(done, max(n, done))
    if lean_step is not None:  # same memory bound as the lean step
        with calibrating_batchnorm(model):
            return lean_step.predict(full.x).cpu().numpy().astype(np.int32), None
    with torch.no_grad(), _autocast(device, params.precision), calibrating_batchnorm(model):
        response = model.fast_forward(full.x).float()  # BN still on batch statistics
    raw = response.argmax(1)[0].cpu().numpy().astype(np.int32)
    return raw, (response[0].cpu().numpy() if params.n_clusters else None)


def _downscale_scribbles(scr, size):
    """Scribbles (-1 = none) at a coarser size: a coarse pixel takes the largest id it covers."""
    import torch.nn.functional as F

    pool = F.adaptive_max_pool2d if scr.dim() == 4 else F.adaptive_max_pool3d
    return pool((scr + 1).float(), tuple(size)).long() - 1


def _windows(spatial, step):
    import itertools

    for starts in itertools.product(*(range(0, s, c) for s, c in zip(spatial, step))):
        yield starts, [min(s, a + c) for a, s, c in zip(starts, spatial, step)]


def calibrate_tiled(model, x, tile, device, fmt, precision="float32"):
    """One training-mode pass (no gradients) over tiles that cover ``x``, to average
    BatchNorm's statistics over the whole image (see ``calibrating_batchnorm``).
    A generator that yields after each tile (drain it with :func:`run_to_end`); it
    never yields inside ``no_grad`` (grad mode is per thread, and a generator left
    there would switch gradients off for whatever the thread runs next)."""
    import torch

    model.train()
    for starts, ends in _windows(tuple(x.shape[2:]), tile):
        sel = (slice(None), slice(None), *(slice(a, e) for a, e in zip(starts, ends)))
        with torch.no_grad(), _autocast(torch.device(device), precision):
            model.fast_forward(x[sel].to(device).contiguous(memory_format=fmt))
        yield


def predict_tiled(model, x, tile, radius, device, fmt, precision="float32"):
    """The argmax channel of every pixel of ``x`` (``(1, C, *spatial)``, any device),
    as an int32 CPU tensor, computed in windows of ``tile`` whose outer ``radius``
    pixels are discarded (zero-padding there would differ from the whole image's
    neighbours), with BatchNorm's running statistics: the same function as one
    pass over the whole image in eval mode, without its memory. A generator that
    yields after each window and returns the labels (drain it with :func:`run_to_end`)."""
    import torch

    spatial = tuple(x.shape[2:])
    core = [max(1, t - 2 * radius) for t in tile]
    out = torch.empty(spatial, dtype=torch.int32)
    was_training = model.training
    model.eval()
    try:
        for starts, ends in _windows(spatial, core):
            win = [slice(max(0, a - radius), min(s, e + radius)) for a, e, s in zip(starts, ends, spatial)]
            with torch.no_grad(), _autocast(torch.device(device), precision):  # (not across the yield)
                xt = x[(slice(None), slice(None), *win)].to(device).contiguous(memory_format=fmt)
                lab = model.fast_forward(xt).float().argmax(1)[0]
            inner = tuple(slice(a - w.start, e - w.start) for a, e, w in zip(starts, ends, win))
            out[tuple(slice(a, e) for a, e in zip(starts, ends))] = lab[inner].to("cpu", torch.int32)
            yield
    finally:
        model.train(was_training)
    return out


def _autocast(device, precision: str):
    """Mixed precision for the network's passes (the loss stays float32)."""
    import contextlib

    import torch

    if precision == "float32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=getattr(torch, precision))


def _optimise(model, optimizer, source, steps, done_before, total, params, preview_every,
              sync_every, history, full_shape, axis_weights, last, scribble_ids=(), lean=None):
    """Run up to ``steps`` optimisation steps on ``source`` (a :class:`_Source`),
    yielding :class:`Progress` records numbered from ``done_before + 1`` and
    appending to ``history``; ``last`` (a :class:`_LastGood`) follows the last good
    step. Returns ``"min_labels"`` or ``"max_iter"``.
    Previews of a coarse stage are upscaled (nearest neighbour) to
    ``full_shape``; tiled stages have none. ``lean`` is a ``LeanVanillaStep`` to
    take instead of autograd, or None. In tiled stages the stop rule counts the
    clusters of the last ``source.window`` tiles together."""
    import collections

    import torch

    from ._train import cluster_loss, stats_tuple

    coarse = tuple(source.shape) != tuple(full_shape)
    tiled = source.tile is not None
    as_labels = partial(_target_labels, dims=len(source.shape), full_shape=full_shape if coarse else None,
                        n_channels=params.n_channels, scribble_ids=scribble_ids)
    recent = collections.deque(maxlen=source.window)
    pending = []  # (iteration, stats tensors, target) not yet read back from the device
    last_it = done_before + steps
    for it in range(done_before + 1, last_it + 1):
        x, scr = source.batch()
        optimizer.zero_grad()
        if lean is not None:  # sets the gradients itself
            loss, l_sim, l_con, target = lean(x, params.w_sim, params.w_con)
        else:
            with _autocast(x.device, params.precision):
                response = model.fast_forward(x)
            loss, l_sim, l_con, target = cluster_loss(response.float(), params.w_sim, params.w_con,
                                                      axis_weights, scr, params.w_scr)
            del response
            loss.backward()
        recent.append(torch.bincount(target.reshape(-1), minlength=params.n_channels))
        n_labels_t = (recent[0] if len(recent) == 1 else torch.stack(tuple(recent)).sum(0)).count_nonzero()
        optimizer.step()
        want_preview = preview_every and not tiled
        pending.append((it, (loss, l_sim, l_con, n_labels_t), target if want_preview else None))
        read_back = len(pending) >= sync_every or it == last_it or (preview_every and it % preview_every == 0)
        newest = (it, target.to(torch.int16)) if read_back and not tiled else None  # kept if its loss is finite
        del loss, target, x, scr
        if not read_back:
            continue
        done = False
        values = stats_tuple(*(t for _, stats, _ in pending for t in stats))
        for k, (i, _, _) in enumerate(pending):
            if not math.isfinite(values[4 * k]):
                raise _diverged(i, values[4 * k], params.lr, last)
        if newest is not None:
            last.iteration, last.target, last.as_labels = *newest, as_labels
        for k, (i, _, tgt) in enumerate(pending):
            loss_v, sim_v, con_v, n_v = values[4 * k: 4 * k + 4]
            n_labels = int(n_v)
            history["loss"].append(loss_v)
            history["loss_sim"].append(sim_v)
            history["loss_con"].append(con_v)
            history["n_labels"].append(n_labels)
            done = done or n_labels <= params.min_labels
            preview = None
            if tgt is not None and (i % preview_every == 0 or (done and k == len(pending) - 1) or i == total):
                preview = as_labels(tgt)
            yield Progress(i, total, loss_v, sim_v, con_v, n_labels, preview)
        pending.clear()
        if done:
            return "min_labels"
    return "max_iter"


def _each_record(gen, action):
    """``yield from gen``, calling ``action`` after each record (the heap guard)."""
    while True:
        try:
            record = next(gen)
        except StopIteration as stop:
            return stop.value
        action()
        yield record


def _target_labels(tgt, dims, full_shape, n_channels, scribble_ids):
    """Labels 1..K at the image's shape from a step's target channels (``(1, *shape)``,
    or ``shape`` from the lean step; ``dims`` spatial axes): upscaled (nearest) from a
    smaller training copy when ``full_shape`` is given."""
    import torch

    from ._scribbles import channels_present, make_label_map

    tgt = tgt.reshape(tgt.shape[-dims:])
    if full_shape is not None:
        tgt = torch.nn.functional.interpolate(tgt[None, None].float(), size=tuple(full_shape), mode="nearest")[0, 0]
    raw = tgt.long().cpu().numpy()
    if scribble_ids:
        return make_label_map(channels_present(raw, n_channels), n_channels, scribble_ids)[raw]
    return consecutive_labels(raw)


def _diverged(iteration, loss, lr, last: _LastGood) -> SegmentationError:
    """The error for a non-finite loss, carrying the last good clusters when there are any."""
    msg = (f"the optimisation diverged: the loss became {loss} at iteration {iteration}; "
           f"try a lower learning rate (lr is {lr:g})")
    if last.target is None:
        return SegmentationError(msg + "; no earlier iteration had labels to keep")
    return SegmentationError(msg, labels=last.labels(), iteration=last.iteration)


def run_to_end(gen: Generator[Progress, None, SegmentationResult], callback=None) -> SegmentationResult:
    """Drain a :func:`segment_iter` generator, calling ``callback(progress)``
    for every record, and return its result."""
    while True:
        try:
            progress = next(gen)
        except StopIteration as stop:
            return stop.value
        if callback is not None:
            callback(progress)


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
    from ._params import preset_params

    settings = preset_params(preset, **params)
    return run_to_end(segment_iter(image, channel_axis=channel_axis, params=settings, scribbles=scribbles,
                                   spacing=spacing, init_model=init_model), callback)
