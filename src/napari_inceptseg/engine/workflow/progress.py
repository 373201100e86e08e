"""What a run yields and how it ends: :class:`Progress` records, :func:`run_to_end`
(which drains any of the engine's generators), :class:`SegmentationError` and
:class:`RunInterrupted` (numpy only). The finished run is a
:class:`~.segmentation.SegmentationResult`.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Generator, Iterator
from dataclasses import dataclass

import numpy as np


class SegmentationError(RuntimeError):
    """A run failed for a reason the user can act on (e.g. out of memory).

    Parameters
    ----------
    message : str
        What went wrong and what to change.
    labels : numpy.ndarray, optional
        When the optimisation diverged: the last good clusters (those of
        ``iteration``, the last one whose loss was finite, at the image's spatial
        shape); None when no iteration was good or the stage was tiled.
    iteration : int, optional
        The iteration of ``labels``.

    Examples
    --------
    >>> import numpy as np
    >>> from napari_inceptseg import SegmentationError, segment
    >>> try:
    ...     segment(np.eye(64) * 255, memory_gb=1e-6)
    ... except SegmentationError as exc:
    ...     print(exc)
    the 'vanilla' network with n_channels=48 ... or fewer layers (n_conv)
    """

    def __init__(
        self, message: str, *, labels: np.ndarray | None = None, iteration: int | None = None
    ):
        super().__init__(message)
        self.labels = labels
        self.iteration = iteration


class RunInterrupted(KeyboardInterrupt):
    """Ctrl+C (or, in the CLI, SIGTERM) stopped a run.

    A ``KeyboardInterrupt``, so an uncaught one ends a script as Ctrl+C does.

    Parameters
    ----------
    labels : numpy.ndarray, optional
        The last good clusters (of ``iteration``, at the image's spatial shape), or
        None when there were none yet (or the stage was tiled).
    iteration : int, optional
        The iteration of ``labels``.

    Examples
    --------
    >>> from napari_inceptseg import RunInterrupted
    >>> issubclass(RunInterrupted, KeyboardInterrupt)
    True
    """

    def __init__(self, labels: np.ndarray | None = None, iteration: int | None = None):
        super().__init__()
        self.labels = labels
        self.iteration = iteration


@dataclass(frozen=True)
class Progress:
    """One record of a run: an optimisation step, or a stage after training.

    Attributes
    ----------
    iteration : int
        The step, from 1.
    max_iter : int
        The most steps the run takes.
    loss, loss_sim, loss_con : float
        The loss and its similarity and continuity terms.
    n_labels : int
        Clusters at this step.
    labels : numpy.ndarray or None
        Set only on preview records (every ``preview_every`` steps): the current
        clusters numbered 1..K at the image's spatial shape.
    stage : str
        ``'training'``, or a stage after it (``'final pass'`` tile by tile,
        ``'full-resolution pass'``, ``'regions'``, ``'hierarchy'``), whose records
        repeat the last iteration's numbers.
    part : tuple of int or None
        ``(tiles done, tiles in all)`` in the tiled final pass.

    Examples
    --------
    >>> import numpy as np
    >>> from napari_inceptseg import segment
    >>> seen = []
    >>> _ = segment(np.eye(32) * 255, seed=0, callback=seen.append)
    >>> seen[0].stage, seen[-1].stage
    ('training', 'hierarchy')
    """

    iteration: int
    max_iter: int
    loss: float
    loss_sim: float
    loss_con: float
    n_labels: int
    labels: np.ndarray | None = None
    #: "training", or a stage after training ("final pass" tile by tile, counting tiles
    #: in ``part``; "full-resolution pass", "regions", "hierarchy"), whose records
    #: repeat the last iteration's numbers
    stage: str = "training"
    part: tuple[int, int] | None = None  # (tiles done, tiles in all) in the final pass


def relay(gen: Generator, wrap=None, after=None):
    """``yield from gen``, each record passed through ``wrap`` and ``after()`` called
    once it has been received (before it is passed on); returns ``gen``'s result.
    """
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
    the runs its worker threads are in.
    """
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
    """Drain a generator of the engine and return its result.

    Parameters
    ----------
    gen : generator
        ``segment_iter``, ``segment_stack_iter``, ``apply_stack_iter``,
        ``segment_zarr_iter``, ...
    callback : callable, optional
        Called with every record. When it raises, ``gen`` is left where it was, so
        the caller can still throw into it (the CLI's Ctrl+C in the progress bar).

    Returns
    -------
    object
        The generator's return value.

    Raises
    ------
    RunInterrupted
        Inside :func:`stop_when`, a stop request is thrown into ``gen`` as Ctrl+C.

    Examples
    --------
    >>> import numpy as np
    >>> from napari_inceptseg import run_to_end, segment_iter
    >>> result = run_to_end(segment_iter(np.eye(32) * 255, seed=0))
    >>> result.labels.shape
    (32, 32)
    """
    while True:
        if _stop_requested():
            gen.throw(KeyboardInterrupt())
        try:
            record = next(gen)
        except StopIteration as stop:
            return stop.value
        if callback is not None:
            callback(record)
