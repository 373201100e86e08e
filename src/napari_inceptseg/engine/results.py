"""What a run yields and how it ends: :class:`Progress` records, :func:`run_to_end`
(which drains any of the engine's generators), :class:`SegmentationError` and
:class:`RunInterrupted` (numpy only). The finished run is a
:class:`~.segmentation.SegmentationResult`."""

from __future__ import annotations

import contextlib
import threading
from dataclasses import dataclass
from typing import Generator, Iterator, Optional, Tuple

import numpy as np


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
    #: "training", or a stage after training ("final pass" tile by tile, counting tiles
    #: in ``part``; "full-resolution pass", "regions", "hierarchy"), whose records
    #: repeat the last iteration's numbers
    stage: str = "training"
    part: Optional[Tuple[int, int]] = None  # (tiles done, tiles in all) in the final pass


def relay(gen: Generator, wrap=None, after=None):
    """``yield from gen``, each record passed through ``wrap`` and ``after()`` called
    once it has been received (before it is passed on); returns ``gen``'s result."""
    outcome = []

    def whole():
        outcome.append((yield from gen))

    for record in whole():
        if after is not None:
            after()
        yield record if wrap is None else wrap(record)
    return outcome[0]


#: the stop request of the runs in this thread (see :func:`stop_when`)
_STOP = threading.local()


@contextlib.contextmanager
def stop_when(event: threading.Event) -> Iterator[None]:
    """Within this block, every :func:`run_to_end` of this thread stops as if Ctrl+C
    had been pressed (``RunInterrupted``, with the run's last good clusters) at its
    next record once ``event`` is set: how a main thread that was interrupted stops
    the runs its worker threads are in."""
    before = getattr(_STOP, "event", None)
    _STOP.event = event
    try:
        yield
    finally:
        _STOP.event = before


def _stop_requested() -> bool:
    event = getattr(_STOP, "event", None)
    return event is not None and event.is_set()


def run_to_end(gen: Generator, callback=None):
    """Drain a generator of the engine (``segment_iter``, ``segment_stack_iter``,
    ``predict_tiled``, ...), calling ``callback(record)`` for every record, and
    return its result. When ``callback`` raises, ``gen`` is left where it was, so
    that the caller can still throw into it (the CLI's Ctrl+C in the progress bar).
    Inside :func:`stop_when`, a stop request is thrown into ``gen`` as Ctrl+C."""
    while True:
        if _stop_requested():
            gen.throw(KeyboardInterrupt())
        try:
            record = next(gen)
        except StopIteration as stop:
            return stop.value
        if callback is not None:
            callback(record)
