"""Tiles: training on a random tile per step, and seamless tiled prediction
(torch is imported inside the functions).

A :class:`TrainingSource` gives every optimisation step the whole image (moved to the
device once) or a random tile of it. :func:`calibrate_tiled` and :func:`predict_tiled`
compute the whole image's result window by window, for images larger than memory.
"""

from __future__ import annotations

import itertools
import math

from .runtime import autocast


class TrainingSource:
    """What the optimisation steps of one stage see: the whole image (moved to the
    device once) or, with ``tile``, a random tile of it per step.
    """

    def __init__(self, x, scribbles, tile, *, device, fmt, rng):
        self.tile = tile
        self.shape = tuple(x.shape[2:])
        self.device, self.fmt, self.rng = device, fmt, rng
        if tile is None:
            x = x.to(device).contiguous(memory_format=fmt)
            scribbles = None if scribbles is None else scribbles.to(device)
        self.x, self.scribbles = x, scribbles
        # the stop rule looks at the clusters of this many recent tiles together
        self.window = (
            1 if tile is None else int(min(8, math.ceil(math.prod(self.shape) / math.prod(tile))))
        )

    def batch(self):
        """The tiles trained together in one step."""
        if self.tile is None:
            return self.x, self.scribbles
        sel = (slice(None), slice(None)) + tuple(
            slice(a, a + t)
            for a, t in (
                (int(self.rng.integers(0, s - t + 1)), t)
                for s, t in zip(self.shape, self.tile, strict=False)
            )
        )
        x = self.x[sel].to(self.device).contiguous(memory_format=self.fmt)
        scr = None if self.scribbles is None else self.scribbles[sel].to(self.device)
        return x, scr


def downscale_scribbles(scr, size):
    """Scribbles (-1 = none) at a coarser size: a coarse pixel takes the largest id it covers."""
    import torch.nn.functional as F

    pool = F.adaptive_max_pool2d if scr.dim() == 4 else F.adaptive_max_pool3d
    return pool((scr + 1).float(), tuple(size)).long() - 1


def windows(spatial, step):
    """``(starts, stops)`` of the windows of side ``step`` that tile ``spatial``."""
    for starts in itertools.product(*(range(0, s, c) for s, c in zip(spatial, step, strict=False))):
        yield starts, [min(s, a + c) for a, s, c in zip(starts, spatial, step, strict=False)]


def calibrate_tiled(model, x, tile, *, device, fmt, precision="float32"):
    """One training-mode pass (no gradients) over tiles that cover ``x``, to average
    BatchNorm's statistics over the whole image (see ``calibrating_batchnorm``).
    A generator that yields after each tile (drain it with :func:`run_to_end`); it
    never yields inside ``no_grad`` (grad mode is per thread, and a generator left
    there would switch gradients off for whatever the thread runs next).
    """
    import torch

    model.train()
    for starts, ends in windows(tuple(x.shape[2:]), tile):
        sel = (slice(None), slice(None), *(slice(a, e) for a, e in zip(starts, ends, strict=False)))
        with torch.no_grad(), autocast(torch.device(device), precision):
            model.fast_forward(x[sel].to(device).contiguous(memory_format=fmt))
        yield


def predict_tiled(model, x, tile, radius, *, device, fmt, precision="float32"):
    """The argmax channel of every pixel of ``x`` (``(1, C, *spatial)``, any device),
    as an int32 CPU tensor, computed in windows of ``tile`` whose outer ``radius``
    pixels are discarded (zero-padding there would differ from the whole image's
    neighbours), with BatchNorm's running statistics: the same function as one
    pass over the whole image in eval mode, without its memory. A generator that
    yields after each window and returns the labels (drain it with :func:`run_to_end`).
    """
    import torch

    spatial = tuple(x.shape[2:])
    core = [max(1, t - 2 * radius) for t in tile]
    out = torch.empty(spatial, dtype=torch.int32)
    was_training = model.training
    model.eval()
    try:
        for starts, ends in windows(spatial, core):
            win = [
                slice(max(0, a - radius), min(s, e + radius))
                for a, e, s in zip(starts, ends, spatial, strict=False)
            ]
            # (not across the yield)
            with (
                torch.no_grad(),
                autocast(torch.device(device), precision),
            ):
                xt = x[(slice(None), slice(None), *win)].to(device).contiguous(memory_format=fmt)
                lab = model.fast_forward(xt).float().argmax(1)[0]
            inner = tuple(
                slice(a - w.start, e - w.start) for a, e, w in zip(starts, ends, win, strict=False)
            )
            out[tuple(slice(a, e) for a, e in zip(starts, ends, strict=False))] = lab[inner].to(
                "cpu", torch.int32
            )
            yield
    finally:
        model.train(was_training)
    return out
