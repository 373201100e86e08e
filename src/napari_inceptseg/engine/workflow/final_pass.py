"""After training: the full image's clusters (whole, memory-lean or tile by tile) or,
for the default method, its regions (torch is imported inside the functions).

Both final passes also set BatchNorm's running statistics to this image's, so that
the saved network reproduces the result (``TrainedModel.apply``).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from ...regions.method import region_stages
from ..machine.runtime import autocast
from ..machine.tiles import calibrate_tiled, predict_tiled, windows
from .progress import Progress, relay


def _upscale_nearest(array: np.ndarray, shape) -> np.ndarray:
    """``array`` resized to ``shape`` by nearest neighbour (each output pixel takes
    the input pixel it falls in).
    """
    if tuple(array.shape) == tuple(shape):
        return array
    index = np.ix_(*[(np.arange(n) * a) // n for a, n in zip(array.shape, shape, strict=False)])
    return array[index]


@dataclass
class FinalPass:
    """What the final pass gives, all of the image's spatial shape: the network's channel
    per pixel, and the labels and hierarchy (the default method) or the response (kept
    when ``n_clusters`` groups the clusters and the image was one pass).
    """

    raw: np.ndarray
    labels: np.ndarray | None = None
    response: np.ndarray | None = None
    hierarchy: Any = None


#: the default method's stages after training, each announced by a record (and a
#: point where the run can be cancelled)
REGION_STAGES = ("full-resolution pass", "regions", "hierarchy")


def regions_pass(run, net, plan, stage):
    """The default method's last steps, a generator that yields ``stage(name)`` before
    each of :data:`REGION_STAGES`: one forward pass over the image (a copy of at most
    ``ANALYSIS_PIXELS`` per plane for larger ones, and no larger than the free memory
    allows) that sets BatchNorm's statistics and gives the response; the finest regions
    from its clusters; their hierarchy and its cut (:mod:`napari_inceptseg.regions.method`).
    Returns a :class:`FinalPass` of the image's spatial shape.
    """
    yield stage(REGION_STAGES[0])
    raw, response, image = _analysis_pass(run, net, plan)
    params = run.params
    labels, hierarchy = yield from relay(
        region_stages(
            raw,
            response,
            image,
            merge_threshold=params.merge_threshold,
            level=params.level,
            n_clusters=params.n_clusters,
        ),
        wrap=stage,
    )
    spatial = tuple(net.x_host.shape[2:])
    if hierarchy.base.shape != spatial:
        hierarchy = hierarchy.with_base(_upscale_nearest(hierarchy.base, spatial))
    labels = _upscale_nearest(labels, spatial)
    return FinalPass(_upscale_nearest(raw, spatial), labels=labels, hierarchy=hierarchy)


def _analysis_pass(run, net, plan):
    """``(clusters, response, image)`` of the analysis copy, BatchNorm's statistics set."""
    import torch

    from ..modeling.networks import calibrating_batchnorm

    x_host, image = net.x_host, run.data
    shape = plan.analysis_shape
    if shape != tuple(x_host.shape[2:]):
        x_host = torch.nn.functional.interpolate(x_host, size=shape, mode="area")
        image = torch.nn.functional.interpolate(
            torch.from_numpy(image)[None], size=shape, mode="area"
        )[0].numpy()
    x = x_host.to(run.device).contiguous(memory_format=net.fmt)
    with (
        torch.no_grad(),
        autocast(run.device, run.params.precision),
        calibrating_batchnorm(net.model),
    ):
        response = net.model.fast_forward(x).float()[0]
    return response.argmax(0).to("cpu", torch.int32).numpy(), response.cpu().numpy(), image


def stage_record(history, total, name: str) -> Progress:
    """A record announcing a stage after training: the last iteration's numbers, and the stage."""
    last = (history[k][-1] if history[k] else math.nan for k in ("loss", "loss_sim", "loss_con"))
    n = history["n_labels"][-1] if history["n_labels"] else 0
    return Progress(len(history["loss"]), total, *last, n, stage=name)


def final_record(history, total, done, of) -> Progress:
    """A record of the tile-by-tile final pass: the last iteration's numbers, and the tiles."""
    record = stage_record(history, total, "final pass")
    return Progress(*dataclasses.astuple(record)[:6], stage="final pass", part=(done, of))


def final_clusters(run, net, plan, tiles):
    """The argmax channel of every pixel of the full image after training (and, when
    ``n_clusters`` asks for merging and the image was one pass, the response), by the
    path the memory plan chose: whole image, memory-lean step or tiles. A generator:
    the tiled path yields ``tiles(done, of)`` after each tile (so a run can be cancelled
    within one tile) and returns a :class:`FinalPass`.
    """
    import torch

    from ..modeling.networks import calibrating_batchnorm

    model, params = net.model, run.params
    if plan.final_tile is not None:
        return (yield from _tiled_clusters(run, net, plan.final_tile, tiles))
    if net.lean_step is not None:  # same memory bound as the lean step
        with calibrating_batchnorm(model):
            raw = net.lean_step.predict(net.full.x).cpu().numpy().astype(np.int32)
        return FinalPass(raw)
    with torch.no_grad(), autocast(run.device, params.precision), calibrating_batchnorm(model):
        response = model.fast_forward(net.full.x).float()  # BN still on batch statistics
    raw = response.argmax(1)[0].cpu().numpy().astype(np.int32)
    return FinalPass(raw, response=response[0].cpu().numpy() if params.n_clusters else None)


def _tiled_clusters(run, net, tile, tiles):
    """:func:`final_clusters` tile by tile: BatchNorm's statistics over tiles covering the
    image, then the prediction's windows (as many or more).
    """
    from ..modeling.networks import calibrating_batchnorm

    model, x_host = net.model, net.x_host
    where = {"device": run.device, "fmt": net.fmt, "precision": run.params.precision}
    n = 2 * sum(1 for _ in windows(tuple(x_host.shape[2:]), tile))
    done = 0
    with calibrating_batchnorm(model):
        for _ in calibrate_tiled(model, x_host, tile, **where):
            done += 1
            yield tiles(done, n)
    predict = predict_tiled(model, x_host, tile, model.radius, **where)
    while True:
        try:
            next(predict)
        except StopIteration as stop:
            return FinalPass(stop.value.numpy())
        done += 1
        yield tiles(done, max(n, done))
