"""Segmenting one image: one generator that every caller drives.

:func:`segment_iter` yields a :class:`~.progress.Progress` record per iteration and
returns a :class:`~.result.SegmentationResult`; :func:`segment` drains it. It goes one
level of detail down per function: prepare the inputs (``inputs.py``) -> plan memory ->
build the network and its stages (``build.py``) -> train stage by stage
(``training.py``) -> the final pass (``final_pass.py``) -> the result. A whole-image
run's worker trains with :func:`train_network`. No Qt, no napari; torch is imported
when a run starts, not when this module is imported.
"""

from __future__ import annotations

from collections.abc import Generator
from functools import partial
from typing import Any

import numpy as np

from ...image import axis_weights, is_constant
from ...labels import channels_present, make_label_map
from ...objects.find import find_objects
from ...params import SegmentParams
from ...presets import preset_params, resolve_params
from ...regions.hierarchy import single_region
from ...regions.method import limit_clusters
from ..machine.footprint import HEAP_ALLOWANCE
from ..machine.plan import plan_image
from ..machine.runtime import heap_allocator, is_out_of_memory, oom_types
from .build import Network, build_network, checked_plan
from .final_pass import final_clusters, final_record, regions_pass, stage_record
from .inputs import RunInputs, check_settings, drawn_seed, out_of_memory, prepare_inputs
from .progress import Progress, RunInterrupted, SegmentationError, relay, run_to_end
from .result import SegmentationResult
from .training import StageContext, optimise


def segment_iter(
    image,
    *,
    channel_axis: int | None = None,
    params: SegmentParams | None = None,
    preview_every: int = 0,
    init_state: dict[str, Any] | None = None,
    sync_every: int | None = None,
    scribbles=None,
    spacing=None,
    init_model=None,
    preset: str | None = None,
    **kwargs: Any,
) -> Generator[Progress, None, SegmentationResult]:
    """Segment one 2D image (or, with ``dims='3d'``, one volume), yielding progress.

    The engine's one generator: :func:`segment`, the CLI, the benchmark and the
    napari dock all drive it. It yields a :class:`Progress` record per iteration
    and per stage after training, and returns the :class:`SegmentationResult`;
    closing it cancels the run after the current iteration.

    Parameters
    ----------
    image : array_like
        As for :func:`segment`.
    channel_axis : int, optional
        The axis that holds the channels of a multichannel image.
    params : SegmentParams, optional
        The run's settings; or give them as keyword arguments on top of ``preset``.
    preview_every : int
        Every k-th record (and the last) carries the current labels; 0: none (tiled
        runs predict once at the end).
    init_state : dict, optional
        A ``result.model.state_dict()`` of the same architecture and channel counts to
        warm-start from (weights only).
    sync_every : int, optional
        Read the losses back from the device every that many iterations (default:
        every iteration on the CPU, every ``CUDA_SYNC_EVERY`` on a GPU); the stop rule
        is checked then.
    scribbles, spacing, init_model
        As for :func:`segment`.
    preset : str, optional
        The preset the keyword settings apply to (default: ``'default'``).
    **kwargs
        :class:`SegmentParams` fields.

    Yields
    ------
    Progress
        One record per iteration, then one per stage after training.

    Returns
    -------
    SegmentationResult
        The generator's return value (``StopIteration.value``).

    Raises
    ------
    ValueError
        A bad image or setting, before any work.
    SegmentationError
        The run failed for a reason the user can act on.
    RunInterrupted
        Ctrl+C (``KeyboardInterrupt``) stopped the run.

    References
    ----------
    .. [1] W. Kim, A. Kanezaki and M. Tanaka, "Unsupervised learning of image
           segmentation based on differentiable feature clustering", IEEE Transactions
           on Image Processing 29, 8055-8068 (2020). doi:10.1109/TIP.2020.3011269

    Examples
    --------
    >>> import numpy as np
    >>> from napari_inceptseg import run_to_end, segment_iter
    >>> image = np.zeros((64, 64), np.uint8)
    >>> image[16:48, 16:48] = 200
    >>> gen = segment_iter(image, seed=0, preview_every=5)
    >>> first = next(gen)
    >>> first.iteration, first.stage
    (1, 'training')
    >>> result = run_to_end(gen)
    >>> int(result.labels.max())
    2
    """
    run = prepare_inputs(
        image,
        resolve_params(params, kwargs, preset),
        channel_axis=channel_axis,
        preview_every=preview_every,
        sync_every=sync_every,
        scribbles=scribbles,
        spacing=spacing,
        init_model=init_model,
        init_state=init_state,
    )
    if run.params.objects:
        return _objects(run, scribbles is not None or init_model is not None)
    if is_constant(run.data):  # nothing to cluster: every pixel is the same cluster
        whole = np.ones(run.spatial, dtype=np.int32)
        return run.result(
            labels=whole,
            n_iter=0,
            stop_reason="constant image",
            regions=run.regions,
            channel_ids=np.zeros(run.spatial, dtype=np.int32),
            hierarchy=single_region(whole) if run.regions else None,
        )
    plan = checked_plan(
        plan_image,
        run.spatial,
        run.net_in.shape[0],
        run.params,
        str(run.device),
        guided=run.scribbles is not None,
    )
    try:
        net = build_network(run, plan)
        trained = yield from _train(run, net, plan)
        final = yield from _final_pass(run, net, plan)
    except KeyboardInterrupt as exc:  # Ctrl+C: hand over what the run has so far
        if isinstance(exc, RunInterrupted):
            raise
        raise RunInterrupted(run.ctx.last.labels(), run.ctx.last.iteration) from None
    except (*oom_types(), RuntimeError) as exc:
        if isinstance(exc, SegmentationError) or not is_out_of_memory(exc):
            raise
        raise out_of_memory(run) from None
    return _result(run, net, plan, final, trained)


def _objects(run: RunInputs, guided: bool) -> SegmentationResult:
    """Objects on a background from the image's contrast (no network): labels 0..N."""
    if guided:
        raise ValueError(
            "objects=True finds objects from the image's contrast and uses no scribbles or "
            "saved network: leave them out, or set objects=False"
        )
    labels = find_objects(run.data, run.spacing)
    return run.result(labels=labels, n_iter=0, stop_reason="objects", regions=False)


def _train(run: RunInputs, net: Network, plan):
    """Every stage in turn (a generator of records); returns ``(n_iter, stop_reason)``."""
    total = sum(n for _, n in net.stages)
    n_iter, stop_reason = 0, "max_iter"
    heap = run.device.type == "cpu" and plan.heap
    with heap_allocator(heap, plan.step_bytes * HEAP_ALLOWANCE) as guard:  # the training steps only
        for k, (source, steps) in enumerate(net.stages):  # coarse, then full resolution
            if steps == 0:
                continue
            lean = net.lean_step if source is net.full else None
            steps = optimise(net, source, steps, run.ctx, count=(n_iter, total), lean=lean)
            stop_reason = yield from relay(steps, after=guard.check)
            if k == 1 and stop_reason == "max_iter":
                stop_reason = "refine_iter"
            n_iter = len(run.ctx.history["loss"])
    return n_iter, stop_reason


def train_network(copy: np.ndarray, full_shape, ranges, params: SegmentParams):
    """The network that a run of ``params`` on an image of spatial shape ``full_shape``
    trains, trained on ``copy``: that image's training copy, made elsewhere, already in
    the network's input space (``(C, *training shape)``, normalised with ``ranges`` and
    in its colour space). What a whole-image run's worker trains; returns the torch
    network, its BatchNorm statistics those of the last step.
    """
    params = params.replace(seed=drawn_seed() if params.seed is None else params.seed)
    device, sync_every = check_settings(params, None, None)
    spatial = tuple(copy.shape[1:])
    history: dict[str, list[float]] = {"loss": [], "loss_sim": [], "loss_con": [], "n_labels": []}
    weights = axis_weights(None, params.spatial_dims)
    ctx = StageContext(params, spatial, weights, (), 0, sync_every, history)
    run = RunInputs(
        params, copy, copy, ranges, spatial, None, device, params.seed, None, ctx, None, 0.0
    )
    plan = checked_plan(plan_image, tuple(full_shape), copy.shape[0], params, str(device))
    net = build_network(run, plan)
    run_to_end(_train(run, net, plan))
    return net.model


def _final_pass(run: RunInputs, net: Network, plan):
    """The final pass (a generator: the tiled pass yields per tile); returns its
    :class:`~.final_pass.FinalPass`, of the image's shape.
    """
    import torch

    total = sum(n for _, n in net.stages)
    if run.regions:  # the default method: clusters -> regions and their hierarchy
        stage = partial(stage_record, run.ctx.history, total)
        final = yield from regions_pass(run, net, plan, stage)
    else:
        final = yield from final_clusters(
            run, net, plan, partial(final_record, run.ctx.history, total)
        )
    net.model.to(memory_format=torch.contiguous_format)
    return final


def _result(run: RunInputs, net: Network, plan, final, trained) -> SegmentationResult:
    """The labels (the clusters, merged to ``n_clusters`` if asked, unless they are
    regions already) and everything a caller may want to keep of the run; ``trained`` is
    ``(n_iter, stop_reason)``.
    """
    params, raw, labels = run.params, final.raw, final.labels
    label_map = make_label_map(
        channels_present(raw, params.n_channels), params.n_channels, run.ctx.scribble_ids
    )
    if labels is None:
        labels = label_map[raw]
        if params.n_clusters:
            features = run.net_in if final.response is None else final.response
            labels, _ = limit_clusters(labels, features, params.n_clusters)
    return run.result(
        labels=labels,
        n_iter=trained[0],
        stop_reason=trained[1],
        model=net.model,
        channel_ids=raw,
        label_map=label_map,
        scribble_ids=run.ctx.scribble_ids,
        plan=_describe(plan, run),
        regions=run.regions,
        hierarchy=final.hierarchy,
    )


def _describe(plan, run: RunInputs) -> str:
    """The memory plan in words, saying when training used a smaller copy."""
    if tuple(run.train_shape) == tuple(run.spatial):
        return plan.describe()
    return f"trained on a {' x '.join(map(str, run.train_shape))} copy: {plan.describe()}"


def segment(
    image,
    *,
    preset: str = "default",
    channel_axis: int | None = None,
    scribbles=None,
    spacing=None,
    init_model=None,
    callback=None,
    **params: Any,
) -> SegmentationResult:
    """Segment an image without labels.

    Trains a small CNN on this one image with a similarity loss and a continuity
    loss [1]_, then turns its clusters into regions and a region hierarchy (the
    default method) or returns the clusters themselves (the papers' presets).

    Parameters
    ----------
    image : array_like
        A 2D image: grayscale ``(Y, X)``, RGB/RGBA ``(Y, X, 3|4)``, or multichannel
        with ``channel_axis``; with ``dims='3d'`` a volume ``(Z, Y, X)``.
    preset : {'default', 'paper-vanilla', 'paper-inception'}
        The method: ``'default'`` (a short training on a downscaled copy, then
        connected regions; seconds on a CPU) or the papers' exact settings [1]_ [2]_.
    channel_axis : int, optional
        The axis that holds the channels of a multichannel image.
    scribbles : array_like of int, optional
        The image's spatial shape, 0 where unlabelled and ids 1..S elsewhere: each id
        becomes one cluster that keeps its id in the output.
    spacing : sequence of float, optional
        Pixel spacing per spatial axis (e.g. a napari layer's scale): the continuity
        loss of each axis is weighted by finest spacing / its spacing.
    init_model : TrainedModel, optional
        Start from a saved network (its architecture and normalisation) instead of
        random weights.
    callback : callable, optional
        ``callback(progress)`` is called with a :class:`Progress` after every iteration.
    **params
        Any :class:`SegmentParams` field (``n_clusters=5``, ``max_iter=200``,
        ``seed=0``, ``device='cuda'``, ...), overriding the preset.

    Returns
    -------
    SegmentationResult
        ``.labels`` (int32, numbered 1..K, the image's spatial shape; with
        ``objects=True`` 0 is the background and 1..N the objects), the region
        ``.hierarchy`` (default method), the trained network and the run's record.

    Raises
    ------
    ValueError
        An image or a setting the method cannot take; the message says what to change.
    SegmentationError
        The run failed for a reason the user can act on (out of memory, diverged).
    RunInterrupted
        Ctrl+C stopped the run; it carries the last good clusters.

    See Also
    --------
    segment_iter : the same run as a generator of progress records.
    segment_stack : every plane of a Z-stack or time series.

    References
    ----------
    .. [1] W. Kim, A. Kanezaki and M. Tanaka, "Unsupervised learning of image
           segmentation based on differentiable feature clustering", IEEE Transactions
           on Image Processing 29, 8055-8068 (2020). doi:10.1109/TIP.2020.3011269
    .. [2] R. Azad and A. Hamid (2025): the ``inception`` backbone of the method; its
           published code fixes the network and the paper evaluation protocol.

    Examples
    --------
    >>> from skimage import data
    >>> from napari_inceptseg import segment
    >>> result = segment(data.astronaut()[::4, ::4], seed=0)
    >>> result.labels.shape, result.labels.dtype.name, int(result.labels.min())
    ((128, 128), 'int32', 1)
    >>> coarser = result.hierarchy.cut(0.8)  # fewer, larger regions, no retraining
    >>> int(coarser.max()) <= int(result.labels.max())
    True
    """
    settings = preset_params(preset, **params)
    return run_to_end(
        segment_iter(
            image,
            channel_axis=channel_axis,
            params=settings,
            scribbles=scribbles,
            spacing=spacing,
            init_model=init_model,
        ),
        callback,
    )
