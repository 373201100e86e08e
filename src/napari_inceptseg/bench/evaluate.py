"""Benchmark evaluation: every method on every image of a dataset, scored under
both protocols, written as a resumable per-image CSV plus a summary.

Files in the output folder:

- ``config.json``  what was run (dataset, engine parameters, scale, seed);
- ``results.csv``  one row per (image, method), appended and flushed as each
  finishes, so an interrupted run loses nothing and resumes where it stopped;
- ``skipped.csv``  images that could not be read or segmented, with the reason;
- ``summary.json`` / ``summary.md``  mean and standard deviation per metric.

No Qt, no napari. Runs sequentially, or over a Dask distributed cluster.
"""

from __future__ import annotations

import contextlib
import os
import time
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from ..distributed.cluster import check_workers, cluster_client
from ..engine.workflow.batch import auto_batch, map_side_by_side
from ..engine.workflow.progress import SegmentationError, run_to_end
from ..engine.workflow.segment import segment_iter
from ..params import ARCHITECTURES, SegmentParams
from ..presets import PRESETS, preset_params
from ..scoring.metrics import region_scores, score
from ..scoring.objects import dsb_scores, instance_scores
from .baselines import BASELINES, baseline_levels
from .datasets import Item
from .output import (
    LEVELS_KEY,
    SKIP_COLUMNS,
    check_output_folder,
    locked,
    prepare_output,
    record_answers,
)
from .region_benchmark import level_rows
from .tables import (
    BASE_COLUMNS,
    INSTANCE_METRICS,
    METRICS,
    POOL_COLUMNS,
    PROTOCOLS,
    REGION_METRICS,
    metric_columns,
    read_rows,
    write_summary,
)

#: the default method with ``objects=True``
OBJECTS = "objects"
#: presets, the papers' networks by name (aliases of their presets), objects and the baselines
METHODS = (*PRESETS, *ARCHITECTURES, OBJECTS, *BASELINES)


def method_params(method: str, overrides: dict[str, Any]) -> SegmentParams:
    """The settings a network method runs with: its preset (``vanilla`` and
    ``inception`` are the paper presets) with the user's ``overrides`` on top.
    """
    if method == OBJECTS:
        return preset_params("default", **{**overrides, "objects": True})
    preset = f"paper-{method}" if method in ARCHITECTURES else method
    return preset_params(preset, **overrides)


def image_seed(base: int, name: str) -> int:
    """A per-image seed that does not depend on order or on which worker runs it."""
    return (zlib.crc32(name.encode()) ^ int(base)) % (2**31)


def _resize(array: np.ndarray, shape: tuple[int, int], labels: bool) -> np.ndarray:
    from skimage.transform import resize

    out_shape = tuple(shape) + array.shape[2:]
    if labels:
        return resize(array, out_shape, order=0, preserve_range=True, anti_aliasing=False).astype(
            array.dtype
        )
    out = resize(array, out_shape, order=1, preserve_range=True, anti_aliasing=True)
    return (
        np.round(out).astype(array.dtype) if array.dtype.kind in "iu" else out.astype(array.dtype)
    )


def evaluate_one(
    item: Item, method: str, overrides: dict[str, Any], scale: float = 1.0
) -> dict[str, Any]:
    """Segment one image with one method and score it; returns the CSV row, whose
    ``LEVELS_KEY`` holds its rows of the region benchmark (``region_levels.csv``).

    ``overrides`` are engine settings applied on top of a network method's preset.
    With ``scale < 1`` a copy downscaled by ``scale`` per side is segmented and
    the labels are upscaled (nearest neighbour) and scored at full resolution.
    """
    image, gts = item.load()
    seed = image_seed(overrides.get("seed") or 0, item.name)
    t0 = time.perf_counter()
    h, w = image.shape[:2]
    work = image
    if scale != 1.0:
        work = _resize(image, (max(8, round(h * scale)), max(8, round(w * scale))), labels=False)
    if method in PRESETS or method in ARCHITECTURES or method == OBJECTS:
        params = method_params(method, {**overrides, "seed": seed})
        res = run_to_end(segment_iter(work, params=params))
        labels, n_iter, levels = res.labels, res.n_iter, res.hierarchy
    elif method in BASELINES:
        (labels, levels), n_iter = baseline_levels(method, work, seed=seed), 0
    else:
        raise ValueError(f"unknown method {method!r}: choose from {', '.join(METHODS)}")
    seconds = time.perf_counter() - t0
    labels, levels = _at_shape(labels, levels, (h, w))
    row: dict[str, Any] = {
        "image": item.name,
        "method": method,
        "seed": seed,
        "seconds": round(seconds, 3),
        "n_iter": n_iter,
        "n_clusters": int(np.unique(labels).size),
    }
    row[LEVELS_KEY] = level_rows(
        item.name, method, labels, levels, gts, ignore_index=item.ignore_index
    )
    return {**row, **score_row(labels, gts, item.ignore_index, item.kind == "instances")}


#: the key of an evaluation row that carries its region benchmark rows


def _at_shape(labels: np.ndarray, levels, shape: tuple[int, int]):
    """Labels (and a hierarchy's regions, or a sweep's partitions) at the ground truth's shape."""
    if labels.shape == tuple(shape):
        return labels, levels
    labels = _resize(labels, shape, labels=True)
    if isinstance(levels, list):
        return labels, [_resize(part, shape, labels=True) for part in levels]
    return labels, None if levels is None else levels.with_base(
        _resize(levels.base, shape, labels=True)
    )


def score_row(
    labels: np.ndarray, gts: list[np.ndarray], ignore_index: int | None, instances: bool = False
) -> dict[str, Any]:
    """Every score column of one prediction. With ``instances`` (one id per object, 0 =
    background) the class scores compare with objects vs background (two classes), the
    region scores with each object as its own segment, and the object scores are added.
    """
    classes = [(gt > 0).astype(np.int32) for gt in gts] if instances else gts
    scores = {
        p: [
            score(labels, gt, ignore_index=ignore_index, protocol=p, regions=False)
            for gt in classes
        ]
        for p in PROTOCOLS
    }
    regions = [region_scores(labels, gt, ignore_index=ignore_index) for gt in gts]
    row: dict[str, Any] = {"n_regions": regions[0]["n_regions"], "n_annotators": len(gts)}
    for protocol in PROTOCOLS:
        _mean_and_best(row, f"{protocol}_", scores[protocol], METRICS)
    _mean_and_best(row, "", regions, REGION_METRICS)
    for c in POOL_COLUMNS:
        row[c] = float(sum(s[c] for s in regions))
    if instances:
        scores = {**instance_scores(labels, gts[0]), **dsb_scores(labels, gts[0])}
        row.update({k: v for k, v in scores.items() if k in INSTANCE_METRICS})
    return row


def _mean_and_best(row: dict[str, Any], prefix: str, per: list[dict[str, Any]], metrics) -> None:
    """Each metric's mean over annotators and the best annotator's (the same with one:
    a data set may mix images with one and with several annotators).
    """
    for m in metrics:
        vals = [s[m] for s in per]
        row[f"{prefix}{m}"] = float(np.mean(vals))
        row[f"{prefix}{m}_best"] = float(np.min(vals) if m == "voi" else np.max(vals))


def _safe_evaluate_one(
    item: Item, method: str, params: dict[str, Any], scale: float, threads: int = 0
):
    """``(row, None)`` or ``((image, method), reason)``: bad images, and images a method
    refuses (too large for the memory, a diverged run), never stop a run.
    """
    if threads:
        import torch

        torch.set_num_threads(threads)
    try:
        return evaluate_one(item, method, params, scale), None
    except (ValueError, OSError, SegmentationError, MemoryError) as exc:
        return (item.name, method), f"{type(exc).__name__}: {exc}" if isinstance(
            exc, MemoryError
        ) else str(exc)


def _safe_pair(pair, params: dict[str, Any], scale: float):
    item, method = pair
    return _safe_evaluate_one(item, method, params, scale)


def _safe_evaluate_batch(
    pairs, params: dict[str, Any], scale: float, batch: int, threads: int = 0
) -> list:
    """The answers of :func:`_safe_evaluate_one` for several pairs, ``batch`` side by side."""
    if threads:
        import torch

        torch.set_num_threads(threads)
    return list(_side_by_side(pairs, params, scale, batch))


def _side_by_side(pairs, params: dict[str, Any], scale: float, batch: int) -> Iterator[tuple]:
    """The pairs' answers, ``batch`` side by side. Closed early (an interruption
    anywhere in the caller), it stops the runs under way at once: they are not left to
    run on and hold the process open at exit.
    """
    runs = map_side_by_side(
        partial(_safe_pair, params=params, scale=scale), pairs, batch, params.get("device", "auto")
    )
    with contextlib.closing(runs):
        for _, answer, exc in runs:
            if exc is not None:
                raise exc
            yield answer


def _execute(todo, params, scale, *, client, workers, batch: int = 1) -> Iterator[tuple]:
    """Every pair's answer: here, or on the cluster of ``client`` (None: here)."""
    if client is None:
        yield from _side_by_side(todo, params, scale, batch)
        return
    from distributed import as_completed

    threads = max(1, (os.cpu_count() or 1) // workers) if workers else 0
    # each worker takes a batch of pairs at a time
    chunks = [todo[k : k + batch] for k in range(0, len(todo), max(1, batch))]
    futures = [
        client.submit(_safe_evaluate_batch, chunk, params, scale, batch, threads, pure=False)
        for chunk in chunks
    ]
    # (in this client's own event loop, whatever Client the caller holds open)
    for fut in as_completed(futures, loop=client.loop):
        yield from fut.result()


def evaluation_batch(
    items: Sequence[Item], methods: Sequence[str], params: dict[str, Any], scale: float = 1.0
) -> int:
    """``batch=0``: the engine's :func:`~napari_inceptseg.engine.workflow.batch.auto_batch` for the
    first readable image and the most demanding method (1 for the baselines alone).
    """
    nets = [m for m in methods if m in PRESETS or m in ARCHITECTURES]
    if not nets:
        return 1
    for item in items:
        try:
            image, _ = item.load()
        except ValueError:  # an unreadable image is skipped later, with its reason
            continue
        shape = tuple(max(8, round(n * scale)) for n in image.shape[:2])
        channels = image.shape[2] if image.ndim == 3 else 1
        return min(auto_batch(method_params(m, params), shape, min(channels, 3)) for m in nets)
    return 1


@dataclass
class EvaluationReport:
    """What one ``evaluate`` run wrote: its folder, tables and summary."""

    out: Path
    summary: dict[str, Any]
    n_done_before: int
    n_new: int
    n_skipped: int


def _checked_request(methods: Sequence[str], params, scale: float) -> dict[str, Any]:
    """The engine settings as a dict, once every method and setting is known good
    (a bad one fails here, before any image).
    """
    for m in methods:
        if m not in METHODS:
            raise ValueError(f"unknown method {m!r}: choose from {', '.join(METHODS)}")
    if isinstance(params, SegmentParams):
        params = params.to_dict()
    for m in methods:
        if m in PRESETS or m in ARCHITECTURES:
            method_params(m, params)
    if not 0 < scale <= 1:
        raise ValueError(
            "scale must be in (0, 1] (0.25 segments a copy a quarter the size per side), "
            f"got {scale}"
        )
    return params


def run_evaluation(
    items: Sequence[Item],
    methods: Sequence[str],
    params: dict[str, Any],
    out,
    *,
    config: dict[str, Any],
    scale: float = 1.0,
    overwrite: bool = False,
    workers: int | None = None,
    scheduler: str | None = None,
    batch: int = 1,
    progress: bool = True,
    log=print,
) -> EvaluationReport:
    """Evaluate ``methods`` on ``items`` into ``out`` (resuming what is there).
    ``params`` are engine settings applied on top of each network method's preset
    (a dict of :class:`SegmentParams` fields; a ``SegmentParams`` is taken whole).
    ``batch`` images go side by side (per Dask worker with ``workers``/``scheduler``;
    0: as many as the device's memory holds, see :func:`evaluation_batch`).
    """
    params = _checked_request(methods, params, scale)
    check_workers(workers)
    out = Path(out)
    check_output_folder(out)
    batch = batch if batch > 0 else evaluation_batch(items, methods, params, scale)
    with contextlib.ExitStack() as stack:
        distributed = bool(workers or scheduler)
        client = stack.enter_context(cluster_client(scheduler, workers)) if distributed else None
        stack.enter_context(locked(out))  # the cluster answered: now the folder is written
        prepare_output(out, config, overwrite)
        n_before, n_new, n_skip = _run_pairs(
            items,
            methods,
            out,
            lambda todo: _execute(todo, params, scale, client=client, workers=workers, batch=batch),
            progress=progress,
            log=log,
        )
    summary = write_summary(out, config, columns_of(items))
    return EvaluationReport(out, summary, n_before, n_new, n_skip)


def columns_of(items: Sequence[Item]) -> list[str]:
    """The columns of results.csv for these images."""
    multi = any(i.kind == "mat" for i in items)
    return list(BASE_COLUMNS) + metric_columns(multi, any(i.kind == "instances" for i in items))


def _run_pairs(items, methods, out: Path, execute, *, progress: bool, log) -> tuple[int, int, int]:
    """Answer every (image, method) pair not yet in ``out``: ``(before, new, skipped)``."""
    columns = columns_of(items)
    done = {(r["image"], r["method"]) for r in read_rows(out / "results.csv", columns)}
    skipped = {(r["image"], r["method"]) for r in read_rows(out / "skipped.csv", SKIP_COLUMNS)}
    todo = [(i, m) for i in items for m in methods if (i.name, m) not in done | skipped]
    n_before = len(items) * len(methods) - len(todo)
    if n_before:
        log(
            f"resuming: {n_before} of {len(items) * len(methods)} (image, method) pairs "
            f"already in {out}"
        )
    from tqdm import tqdm

    bar = tqdm(
        total=len(items) * len(methods),
        initial=n_before,
        unit="run",
        disable=not progress,
        dynamic_ncols=True,
    )
    # closed whatever happens here (Ctrl+C or SIGTERM while a row is written): the runs
    # under way stop now, not when the interpreter exits and waits for their threads
    try:
        with contextlib.closing(execute(todo)) as answers:
            n_new, n_skip = record_answers(answers, out, columns, bar, log)
    finally:
        bar.close()
    return n_before, n_new, n_skip
