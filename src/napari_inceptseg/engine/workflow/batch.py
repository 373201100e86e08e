"""Several images at once (``evaluate --batch``, :func:`segment_batch`).

Each image stays its own run -- its own network, seed and stop rule -- so every result
is identical to running the images one by one. The runs go side by side in threads;
on CUDA each thread issues its work on a stream of its own, so the GPU overlaps one
image's kernels with another's, and one run's Python time with the others' GPU time.

Why not one network with stacked weights (grouped convolutions, ``torch.func.vmap``)?
Their forward pass matches, but their weight gradients sum over pixels in another
order: four ``vanilla`` networks trained as one grouped network drifted from the
one-by-one weights by 5e-4 at the 4th step on the CPU, and their clusters differed
from then on (docs/benchmarks.md, "Batched runs"). The same seed would no longer give
the same labels.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import numbers
import queue
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from ...image import check_layout, spatial_layout
from ...params import SegmentParams
from ...presets import preset_params
from ..machine.footprint import BASE_BYTES, SAFETY_FRACTION
from ..machine.plan import plan_image
from ..machine.runtime import available_bytes, resolve_device
from .progress import SegmentationError, stop_when
from .result import SegmentationResult
from .segment import segment

#: the most runs a batch keeps side by side on a GPU (more only adds threads and memory)
MAX_BATCH = 32
#: ... and on the CPU (docs/benchmarks.md, "Batched runs on the CPU")
CPU_BATCH = 2


def auto_batch(params: SegmentParams, shape: Sequence[int], in_channels: int = 3) -> int:
    """How many runs of ``shape`` to keep side by side: as many as the free memory holds,
    at most ``MAX_BATCH`` on a GPU and ``CPU_BATCH`` on the CPU (measured on 2 cores:
    2 side by side took 15-25% less time than one by one for the default method, whose
    region step is single-threaded, and 7-9% less for ``paper-vanilla``; 3 gained no more).
    """
    device = resolve_device(params.device)
    cap = MAX_BATCH if device.type == "cuda" else (CPU_BATCH if device.type == "cpu" else 1)
    free = available_bytes(str(device))
    try:
        plan = plan_image(tuple(shape), in_channels, params, str(device))
    except MemoryError:
        return 1
    if free is None or cap == 1:
        return 1
    per_run = max(plan.peak_bytes - BASE_BYTES, 1.0)
    return int(max(1, min(cap, math.floor(free * SAFETY_FRACTION / per_run))))


@contextlib.contextmanager
def own_stream(device: str):
    """Within this block, this thread's CUDA work goes to a fresh stream (a no-op elsewhere)."""
    import torch

    dev = resolve_device(device)
    if dev.type != "cuda":
        yield
        return
    stream = torch.cuda.Stream(device=dev)
    with torch.cuda.stream(stream):
        yield
    stream.synchronize()


#: the stop events of the side-by-side runs under way in this process
_UNDER_WAY: set[threading.Event] = set()


def stop_runs_under_way() -> None:
    """Stop every side-by-side run of this process at its next iteration, whatever
    generator was left open: the last thing an interrupted command does, so that no
    worker thread runs on and holds the process open at exit.
    """
    for event in list(_UNDER_WAY):
        event.set()


def map_side_by_side(
    fn: Callable[[Any], Any], items: Iterable[Any], batch: int, device: str = "auto"
) -> Iterator[tuple[int, Any, BaseException | None]]:
    """``fn(item)`` for every item, ``batch`` at a time side by side (each in its own
    thread and CUDA stream); yields ``(index, result, None)`` or ``(index, None, error)``
    as they finish. ``batch <= 1`` runs them one by one in this thread.

    When this thread is interrupted (Ctrl+C, or SIGTERM in the CLI) or the consumer
    stops early, the runs under way stop at their next iteration (``fn`` must drain
    the engine with :func:`~.results.run_to_end`), no queued item starts, and those
    that had already finished are still yielded before the interruption goes on.
    """
    items = list(items)
    if batch <= 1:
        for k, item in enumerate(items):
            try:
                yield k, fn(item), None
            except Exception as exc:  # noqa: BLE001 - handed to the caller with its index
                yield k, None, exc
        return
    stop, finished = threading.Event(), queue.SimpleQueue()
    _UNDER_WAY.add(stop)

    def call(k, item):  # every outcome goes to ``finished``, errors included
        try:
            with stop_when(stop), own_stream(device):
                finished.put((k, fn(item), None))
        except BaseException as exc:  # noqa: BLE001 - handed to the caller with its index
            finished.put((k, None, exc))

    # The main thread waits on ``finished`` alone, 0.1 s at a time: Ctrl+C is handled
    # between bytecodes of the main thread, and a signal that the kernel delivered to
    # a worker thread would not wake a wait without a timeout (nor would
    # concurrent.futures.wait, which can also be left holding a future's lock).
    with ThreadPoolExecutor(max_workers=batch, thread_name_prefix="inceptseg-batch") as pool:
        order = iter(enumerate(items))
        running = 0
        for k, item in itertools.islice(order, batch):
            pool.submit(call, k, item)
            running += 1
        try:
            while running:
                try:  # a short wait: a signal caught on another thread reaches us between waits
                    answer = finished.get(timeout=0.1)
                except queue.Empty:
                    continue
                running -= 1
                yield answer
                nxt = next(order, None)
                if nxt is not None:
                    pool.submit(call, *nxt)
                    running += 1
        except KeyboardInterrupt:
            stop.set()
            pool.shutdown(wait=True, cancel_futures=True)  # each stops within one iteration
            yield from _finished_before(finished)
            raise
        finally:
            stop.set()
            _UNDER_WAY.discard(stop)


def _finished_before(finished) -> Iterator[tuple[int, Any, None]]:
    """The runs that had finished well when the batch was interrupted."""
    while True:
        try:
            k, result, exc = finished.get_nowait()
        except queue.Empty:
            return
        if exc is None:
            yield k, result, None


class BatchError(SegmentationError):
    """Some images of :func:`segment_batch` failed: ``results`` holds every result in
    order (None where an image failed) and ``errors`` each failure by image index.
    """

    def __init__(self, results: list[SegmentationResult | None], errors: dict[int, BaseException]):
        lines = "; ".join(f"image {k}: {exc}" for k, exc in sorted(errors.items()))
        super().__init__(
            f"{len(errors)} of {len(results)} image(s) failed ({lines}); "
            "the others' results are in this error's .results"
        )
        self.results, self.errors = results, errors


def segment_batch(
    images: Sequence[Any],
    *,
    batch: int = 0,
    seeds: Sequence[int] | None = None,
    preset: str = "default",
    channel_axis: int | None = None,
    **params: Any,
) -> list[SegmentationResult]:
    """Segment several images, ``batch`` of them side by side (0: automatic, see
    :func:`auto_batch`). Image ``k`` runs with ``seeds[k]`` (default: the ``seed``
    keyword for all); each result equals ``segment(images[k], seed=seeds[k], ...)``.

    Every image's shape is checked before any run starts (a ValueError names each bad
    one). When runs fail (e.g. diverge), the others still finish and a
    :class:`BatchError` carries their results and each failure by image index.
    """
    settings = preset_params(preset, **params)
    if seeds is None:
        seeds = [settings.seed] * len(images)
    if len(seeds) != len(images):
        raise ValueError(f"{len(seeds)} seeds for {len(images)} images: give one seed per image")
    if isinstance(batch, bool) or not isinstance(batch, numbers.Integral) or batch < 0:
        raise ValueError(f"batch must be a whole number >= 0 (0: automatic), got {batch!r}")
    _check_images(images, channel_axis, settings.spatial_dims)
    if batch == 0:
        batch = auto_batch(settings, _spatial(images[0], channel_axis)) if len(images) else 1

    def one(k):
        return segment(
            images[k], preset=preset, channel_axis=channel_axis, **{**params, "seed": seeds[k]}
        )

    results: list[SegmentationResult | None] = [None] * len(images)
    errors: dict[int, BaseException] = {}
    runs = map_side_by_side(one, range(len(images)), int(batch), settings.device)
    with contextlib.closing(runs):  # an interruption here stops the runs under way too
        for k, res, exc in runs:
            results[k] = res
            if exc is not None:
                errors[k] = exc
    if errors:
        raise BatchError(results, errors)
    return results


def _check_images(images: Sequence[Any], channel_axis, dims: int) -> None:
    """A ValueError naming every image whose shape cannot be segmented."""
    import numpy as np

    bad = []
    for k, image in enumerate(images):
        try:
            check_layout(np.shape(image), channel_axis, dims)
        except ValueError as exc:
            bad.append(f"image {k}: {exc}")
    if bad:
        raise ValueError("; ".join(bad) + " (no image was segmented)")


def _spatial(image, channel_axis) -> tuple[int, ...]:
    import numpy as np

    return spatial_layout(np.shape(image), channel_axis)[0]
