"""One stage of training: up to N optimisation steps on one source (torch is imported
inside the functions).

:func:`optimise` takes the steps, reads the losses and cluster counts back from the
device every ``sync_every`` steps, applies the stop rule (``min_labels``), yields a
:class:`~.results.Progress` per step, and keeps the last good clusters
(:class:`LastGood`) for a run that diverges or is interrupted.
"""

from __future__ import annotations

import collections
import math
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import numpy as np

from ...labels import channels_present, consecutive_labels, make_label_map
from ...params import SegmentParams
from ..machine.runtime import autocast, stats_tuple
from .progress import Progress, SegmentationError


@dataclass
class LastGood:
    """The last read-back step whose loss was finite, kept for a run that stops early."""

    iteration: int | None = None
    target: Any = None  # int16 channels (1, *shape) at the stage's resolution
    as_labels: Any = None  # target -> labels 1..K at the image's shape

    def labels(self) -> np.ndarray | None:
        """The labels at this stage, if there are any yet."""
        return None if self.target is None else self.as_labels(self.target)


@dataclass
class StageContext:
    """What every stage of one run shares."""

    params: SegmentParams
    full_shape: tuple[int, ...]  # the image's spatial shape (previews come at this size)
    axis_weights: tuple[float, ...]
    scribble_ids: tuple[int, ...]
    preview_every: int
    sync_every: int
    history: dict[str, list[float]]
    last: LastGood = field(default_factory=LastGood)


def optimise(net, source, steps: int, ctx: StageContext, *, count: tuple[int, int], lean=None):
    """Run up to ``steps`` optimisation steps of ``net`` (a :class:`~.build.Network`) on
    ``source`` (a :class:`~..machine.tiles.TrainingSource`), yielding :class:`Progress`
    records numbered from ``done_before + 1`` (``count`` is ``(done_before, total)``) and appending
    to ``ctx.history``; ``ctx.last`` follows the last good step. Returns ``"min_labels"``
    or ``"max_iter"``. Previews of a coarse stage are upscaled (nearest neighbour) to
    the image's shape; tiled stages have none. ``lean`` is a ``LeanVanillaStep`` to take
    instead of autograd, or None. In tiled stages the stop rule counts the clusters of
    the last ``source.window`` tiles together.
    """
    import torch

    done_before, total = count
    coarse = tuple(source.shape) != tuple(ctx.full_shape)
    tiled = source.tile is not None
    as_labels = partial(
        _target_labels,
        dims=len(source.shape),
        full_shape=ctx.full_shape if coarse else None,
        n_channels=ctx.params.n_channels,
        scribble_ids=ctx.scribble_ids,
    )
    recent = collections.deque(maxlen=source.window)
    pending = []  # (iteration, stats tensors, target) not yet read back from the device
    last_it = done_before + steps
    preview_every = ctx.preview_every
    for it in range(done_before + 1, last_it + 1):
        stats, target = _step(net, source, ctx, lean, recent)
        pending.append((it, stats, target if preview_every and not tiled else None))
        read_back = (
            len(pending) >= ctx.sync_every
            or it == last_it
            or (preview_every and it % preview_every == 0)
        )
        # kept if its loss is finite
        newest = (it, target.to(torch.int16)) if read_back and not tiled else None
        del stats, target
        if not read_back:
            continue
        done = yield from _report(pending, newest, as_labels, ctx, total)
        pending.clear()
        if done:
            return "min_labels"
    return "max_iter"


def _step(net, source, ctx: StageContext, lean, recent):
    """One optimisation step; returns ``((loss, loss_sim, loss_con, n_labels), target)``
    as tensors on the device (not read back).
    """
    import torch

    from ..modeling.loss import cluster_loss

    params = ctx.params
    x, scr = source.batch()
    net.optimizer.zero_grad()
    if lean is not None:  # sets the gradients itself
        loss, l_sim, l_con, target = lean(x, params.w_sim, params.w_con)
    else:
        with autocast(x.device, params.precision):
            response = net.model.fast_forward(x)
        loss, l_sim, l_con, target = cluster_loss(
            response.float(),
            params.w_sim,
            params.w_con,
            ctx.axis_weights,
            scribbles=scr,
            w_scr=params.w_scr,
        )
        del response
        loss.backward()
    recent.append(_channel_counts(target, params.n_channels))
    n_labels = (
        recent[0] if len(recent) == 1 else torch.stack(tuple(recent)).sum(0)
    ).count_nonzero()
    net.optimizer.step()
    return (loss, l_sim, l_con, n_labels), target


def _channel_counts(target, n_channels: int):
    """Pixels per channel, on the target's device. On CUDA without ``bincount``, which
    reads the largest value back to the host and so would wait for the GPU every step.
    """
    import torch

    flat = target.reshape(-1)
    if not flat.is_cuda:
        return torch.bincount(flat, minlength=n_channels)
    ones = torch.ones(1, dtype=torch.long, device=flat.device).expand(flat.numel())
    return torch.zeros(n_channels, dtype=torch.long, device=flat.device).index_add_(0, flat, ones)


def _report(pending, newest, as_labels, ctx: StageContext, total: int):
    """Read the pending steps' numbers back (one device sync), refuse a non-finite loss,
    append them to the history and yield their records. Returns whether the stop rule
    (``min_labels``) was met.
    """
    values = stats_tuple(*(t for _, stats, _ in pending for t in stats))
    for k, (i, _, _) in enumerate(pending):
        if not math.isfinite(values[4 * k]):
            raise _diverged(i, values[4 * k], ctx.params.lr, ctx.last)
    if newest is not None:
        ctx.last.iteration, ctx.last.target, ctx.last.as_labels = *newest, as_labels
    done = False
    every = ctx.preview_every
    for k, (i, _, tgt) in enumerate(pending):
        loss_v, sim_v, con_v, n_v = values[4 * k : 4 * k + 4]
        n_labels = int(n_v)
        for key, value in zip(
            ("loss", "loss_sim", "loss_con", "n_labels"),
            (loss_v, sim_v, con_v, n_labels),
            strict=False,
        ):
            ctx.history[key].append(value)
        done = done or n_labels <= ctx.params.min_labels
        preview = None
        if tgt is not None and (i % every == 0 or (done and k == len(pending) - 1) or i == total):
            preview = as_labels(tgt)
        yield Progress(i, total, loss_v, sim_v, con_v, n_labels, preview)
    return done


def _target_labels(tgt, dims, full_shape, n_channels, scribble_ids):
    """Labels 1..K at the image's shape from a step's target channels (``(1, *shape)``,
    or ``shape`` from the lean step; ``dims`` spatial axes): upscaled (nearest) from a
    smaller training copy when ``full_shape`` is given.
    """
    import torch

    tgt = tgt.reshape(tgt.shape[-dims:])
    if full_shape is not None:
        tgt = torch.nn.functional.interpolate(
            tgt[None, None].float(), size=tuple(full_shape), mode="nearest"
        )[0, 0]
    raw = tgt.long().cpu().numpy()
    if scribble_ids:
        return make_label_map(channels_present(raw, n_channels), n_channels, scribble_ids)[raw]
    return consecutive_labels(raw)


def _diverged(iteration, loss, lr, last: LastGood) -> SegmentationError:
    """The error for a non-finite loss, carrying the last good clusters when there are any."""
    msg = (
        f"the optimisation diverged: the loss became {loss} at iteration {iteration}; "
        f"try a lower learning rate (lr is {lr:g})"
    )
    if last.target is None:
        return SegmentationError(msg + "; no earlier iteration had labels to keep")
    return SegmentationError(msg, labels=last.labels(), iteration=last.iteration)
