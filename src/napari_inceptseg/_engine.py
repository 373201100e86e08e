"""The optimisation loop: one generator that every caller drives.

``segment_iter`` yields a :class:`Progress` record per iteration and returns a
:class:`SegmentationResult`; :func:`segment` drains it. No Qt, no napari; torch
is imported when a run starts, not when this module is imported.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Dict, Generator, List, Optional

import numpy as np

from ._params import SegmentParams, resolve_params
from ._preprocess import is_constant, prepare_image

if TYPE_CHECKING:  # pragma: no cover
    import torch


#: on CUDA, read losses and cluster counts back every this many iterations
CUDA_SYNC_EVERY = 8


class SegmentationError(RuntimeError):
    """A run failed for a reason the user can act on (e.g. out of memory)."""


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

    @property
    def n_labels(self) -> int:
        return int(self.labels.max()) if self.labels.size else 0

    @property
    def final_loss(self) -> Optional[float]:
        return self.history["loss"][-1] if self.history["loss"] else None

    def metadata(self) -> Dict[str, Any]:
        """JSON-friendly description of the run (for napari layer metadata, files)."""
        return {
            "params": {**self.params.to_dict(), "seed": self.seed},
            "n_iter": self.n_iter,
            "n_labels": self.n_labels,
            "final_loss": self.final_loss,
            "device": self.device,
            "seconds": round(self.seconds, 3),
            "stop_reason": self.stop_reason,
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


def consecutive_labels(raw: np.ndarray) -> np.ndarray:
    """Renumber cluster ids to 1..K (in order of their channel index), as int32."""
    flat = raw.ravel()
    present = np.bincount(flat)
    lut = np.zeros(present.size, dtype=np.int32)
    nz = present > 0
    lut[nz] = np.arange(1, int(nz.sum()) + 1, dtype=np.int32)
    return lut[raw]


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
    **kwargs: Any,
) -> Generator[Progress, None, SegmentationResult]:
    """Segment one 2D image, yielding a :class:`Progress` per iteration.

    Parameters are those of :class:`SegmentParams`, given either as ``params``
    or as keyword arguments (``arch='vanilla', max_iter=200, ...``). With
    ``preview_every=k > 0`` every k-th record (and the last) carries the current
    labels. The generator's return value is the :class:`SegmentationResult`;
    closing the generator cancels the run after the current iteration.
    ``init_state`` (a ``result.model.state_dict()`` of a network of the same
    architecture and channel counts) warm-starts from a trained network.
    ``sync_every`` reads the losses and cluster counts back from the device every
    that many iterations (default: every iteration on the CPU, every
    ``CUDA_SYNC_EVERY`` on a GPU); the stop rule is checked then, so a GPU run
    may take up to ``sync_every - 1`` steps more than a CPU run.
    """
    params = resolve_params(params, kwargs)
    if isinstance(preview_every, bool) or int(preview_every) != preview_every or preview_every < 0:
        raise ValueError(f"preview_every must be an integer >= 0, got {preview_every!r}")
    if sync_every is not None and (
        isinstance(sync_every, bool) or int(sync_every) != sync_every or sync_every < 1
    ):
        raise ValueError(f"sync_every must be an integer >= 1, got {sync_every!r}")

    data = prepare_image(image, channel_axis=channel_axis)
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
    h, w = data.shape[1:]

    if is_constant(data):
        # Nothing to cluster: every pixel is the same cluster.
        return SegmentationResult(
            labels=np.ones((h, w), dtype=np.int32), n_iter=0, history=history, params=params,
            device=str(device), seconds=time.perf_counter() - t0, stop_reason="constant image",
            seed=seed, channel_ids=np.zeros((h, w), dtype=np.int32),
        )

    from ._memory import check_fits, heap_mode_ok, use_lean

    lean = use_lean(h, w, data.shape[0], params, str(device))
    try:
        check_fits(h, w, data.shape[0], params, str(device), lean)
    except MemoryError as exc:
        raise SegmentationError(str(exc)) from None

    import torch

    from ._models import build_model
    from ._train import MomentumSGD, heap_allocator, memory_format_for

    if sync_every is None:
        # CPU ops are synchronous anyway; a GPU should not wait for the host every step
        sync_every = CUDA_SYNC_EVERY if device.type == "cuda" else 1
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = build_model(params.arch, data.shape[0], params.n_channels, params.n_conv, params.init)
        if init_state is not None:
            try:
                model.load_state_dict(init_state)
            except RuntimeError as exc:
                raise ValueError(
                    "the warm-start network does not fit this image and these settings "
                    f"(architecture, channels and depth must match): {exc}"
                ) from None
        fmt = memory_format_for(device)
        model.to(device=device, memory_format=fmt).train()  # BN uses batch statistics in every pass
        x = torch.from_numpy(data).unsqueeze(0).to(device).contiguous(memory_format=fmt)
        optimizer = MomentumSGD(model.parameters(), lr=params.lr, momentum=0.9)
        lean_step = None
        if lean:  # the memory-lean vanilla step (see _memory.use_lean)
            from ._lean import LeanVanillaStep

            lean_step = LeanVanillaStep(model)

        stages = [(x, params.max_iter)]
        if params.coarse_scale < 1.0:
            small = coarse_size(h, w, params.coarse_scale)
            x_small = torch.nn.functional.interpolate(x, size=small, mode="area").contiguous(memory_format=fmt)
            stages = [(x_small, min(params.coarse_iter, params.max_iter)), (x, params.refine_iter)]
        total = sum(n for _, n in stages)
        n_iter = 0
        stop_reason = "max_iter"
        heap = device.type == "cpu" and not lean and heap_mode_ok(h, w, data.shape[0], params)
        with heap_allocator(heap):
            for k, (x_stage, steps) in enumerate(stages):  # coarse, then full resolution
                if steps == 0:
                    continue
                stop_reason = yield from _optimise(
                    model, optimizer, x_stage, steps, n_iter, total, params, preview_every,
                    sync_every, history, (h, w), lean_step if x_stage is x else None,
                )
                if k == 1 and stop_reason == "max_iter":
                    stop_reason = "refine_iter"
                n_iter = len(history["loss"])
            if lean_step is not None:  # same memory bound as the lean step
                raw = lean_step.predict(x).cpu().numpy().astype(np.int32)
            else:
                with torch.no_grad(), _autocast(device, params.precision):  # BN still on batch statistics
                    raw = model.fast_forward(x).float().argmax(1)[0].cpu().numpy().astype(np.int32)
        model.to(memory_format=torch.contiguous_format)
    except _oom_types() as exc:
        raise SegmentationError(
            f"out of memory on {device} for a {h} x {w} image with "
            f"{params.n_channels} channels ({params.arch}): use a smaller image or "
            f"fewer channels, or device='cpu'"
        ) from exc

    return SegmentationResult(
        labels=consecutive_labels(raw), n_iter=n_iter, history=history, params=params,
        device=str(device), seconds=time.perf_counter() - t0, stop_reason=stop_reason,
        seed=seed, model=model, channel_ids=raw,
    )


def coarse_size(h: int, w: int, scale: float):
    """Size of the coarse stage's image (at least ``MIN_SIZE`` per side)."""
    from ._preprocess import MIN_SIZE

    return (max(MIN_SIZE, min(h, round(h * scale))), max(MIN_SIZE, min(w, round(w * scale))))


def _autocast(device, precision: str):
    """Mixed precision for the network's passes (the loss stays float32)."""
    import contextlib

    import torch

    if precision == "float32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=getattr(torch, precision))


def _optimise(model, optimizer, x, steps, done_before, total, params, preview_every,
              sync_every, history, full_shape, lean=None):
    """Run up to ``steps`` optimisation steps on ``x``, yielding :class:`Progress`
    records numbered from ``done_before + 1`` and appending to ``history``.
    Returns ``"min_labels"`` or ``"max_iter"``. Previews of a coarse stage are
    upscaled (nearest neighbour) to ``full_shape``. ``lean`` is a
    ``LeanVanillaStep`` to take instead of autograd, or None."""
    import torch

    from ._train import cluster_loss, count_labels, stats_tuple

    coarse = tuple(x.shape[2:]) != tuple(full_shape)
    pending = []  # (iteration, stats tensors, target) not yet read back from the device
    last_it = done_before + steps
    for it in range(done_before + 1, last_it + 1):
        optimizer.zero_grad()
        if lean is not None:  # sets the gradients itself
            loss, l_sim, l_con, target = lean(x, params.w_sim, params.w_con)
        else:
            with _autocast(x.device, params.precision):
                response = model.fast_forward(x)
            loss, l_sim, l_con, target = cluster_loss(response.float(), params.w_sim, params.w_con)
            del response
            loss.backward()
        n_labels_t = count_labels(target, params.n_channels)
        optimizer.step()
        pending.append((it, (loss, l_sim, l_con, n_labels_t), target if preview_every else None))
        del loss, target
        if not (len(pending) >= sync_every or it == last_it or (preview_every and it % preview_every == 0)):
            continue
        done = False
        values = stats_tuple(*(t for _, stats, _ in pending for t in stats))
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
                if coarse:
                    tgt = torch.nn.functional.interpolate(
                        tgt[:, None].float(), size=tuple(full_shape), mode="nearest"
                    )[:, 0].long()
                preview = consecutive_labels(tgt[0].cpu().numpy())
            yield Progress(i, total, loss_v, sim_v, con_v, n_labels, preview)
        pending.clear()
        if done:
            return "min_labels"
    return "max_iter"


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
    arch: str = "inception",
    channel_axis: Optional[int] = None,
    n_channels: int = 100,
    n_conv: int = 2,
    max_iter: int = 1000,
    min_labels: int = 3,
    lr: float = 0.1,
    w_sim: float = 1.0,
    w_con: float = 1.0,
    device: str = "auto",
    seed: Optional[int] = None,
    init: str = "default",
    coarse_scale: float = 1.0,
    coarse_iter: int = 60,
    refine_iter: int = 1,
    precision: str = "float32",
    callback=None,
) -> SegmentationResult:
    """Segment a 2D image (grayscale, RGB/RGBA, or multichannel with
    ``channel_axis``) without labels. Returns a :class:`SegmentationResult`
    whose ``.labels`` are numbered 1..K. ``callback(progress)`` is called
    after every iteration. ``coarse_scale < 1`` turns on coarse-to-fine: first
    ``coarse_iter`` steps on a copy downscaled by that factor per side, then
    ``refine_iter`` steps at full resolution (see :class:`SegmentParams`)."""
    params = SegmentParams(
        arch=arch, n_channels=n_channels, n_conv=n_conv, max_iter=max_iter,
        min_labels=min_labels, lr=lr, w_sim=w_sim, w_con=w_con, device=device,
        seed=seed, init=init, coarse_scale=coarse_scale, coarse_iter=coarse_iter,
        refine_iter=refine_iter, precision=precision,
    )
    return run_to_end(segment_iter(image, channel_axis=channel_axis, params=params), callback)
