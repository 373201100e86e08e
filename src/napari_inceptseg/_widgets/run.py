"""A run's life in the dock: its worker, its progress bar and the one Labels layer it owns.

The engine's generator (``segment_stack_iter`` or ``apply_stack_iter``) runs as a
:class:`~.jobs.Job`; layers are touched only in its ``yielded`` / ``returned`` /
``errored`` / ``aborted`` handlers, which napari calls in the main thread, each bound to
its own run (stardist-napari's pattern). With ``RunLifecycle.inline`` the same generator
is drained in the calling thread and the same handlers are called in the same order.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np
from napari.layers import Image
from napari.utils.notifications import show_error, show_info

from ..engine.workflow.progress import SegmentationError
from ..engine.workflow.stack import ApplyProgress
from ..params import SegmentParams
from .jobs import SIGNALS, Job
from .layers import measure
from .source import RunSource

log = logging.getLogger(__name__)


@dataclass
class Run:
    """Everything one run owns; a dock holds at most one."""

    image: Image
    # what it reads (the layer, a pyramid level or one slice) and where the output goes
    source: RunSource
    params: SegmentParams
    keep_preview: bool
    name: str
    kind: str = "train"  # or "apply": a saved network labels the planes, no training
    network: str = ""  # (apply) the network's description, kept in the layer's metadata
    job: Any = None  # its Job: the worker (or the inline drain) and the progress bar
    pbar: Any = None
    layer: Any = None  # the Labels layer this run created (and only that one is updated)
    cancelled: bool = False
    failed: bool = False
    returned: bool = False  # the result has landed: previews still queued are stale
    result: Any = None  # what the engine returned


class RunLifecycle:
    """Starts runs and handles their records. ``status(text)`` shows a line in the dock,
    ``trained(model, where)`` receives a run's trained network, ``ended(run)`` is called
    once a run is over, whatever the way."""

    #: drain the generator in the calling thread instead of a worker thread (tests)
    inline = False

    def __init__(
        self,
        viewer,
        status: Callable[[str], None],
        trained: Callable[[Any, str], None],
        ended: Callable[[Run], None],
    ):
        self._viewer = viewer
        self._status, self._trained, self._ended = status, trained, ended

    def start(self, run: Run, total: int, desc: str, status: str, fn, *args, **kwargs) -> None:
        """Run ``fn(*args, **kwargs)`` (an engine generator) for ``run``, with a
        cancellable progress bar of ``total`` steps."""
        on = {name: partial(getattr(self, f"_on_{name}"), run) for name in SIGNALS}
        run.job = Job(
            self._viewer,
            partial(fn, *args, **kwargs),
            desc=desc,
            total=total,
            on=on,
            on_cancel=partial(self.cancel, run),
        )
        run.pbar = run.job.pbar
        self._status(status)
        run.job.start(self.inline)

    def cancel(self, run: Run) -> None:
        """Stop ``run`` after its current iteration (or tile)."""
        if run.cancelled or run.returned:
            return
        run.cancelled = True
        self._status("cancelling...")
        if run.job is not None:
            run.job.cancel()

    # --- handlers (main thread) ------------------------------------------------------

    def _ensure_layer(self, run: Run):
        if run.layer is None or run.layer not in self._viewer.layers:
            run.layer = self._viewer.add_labels(
                np.zeros(run.source.layout.labels_shape, dtype=np.int32),
                name=run.name,
                **run.source.geometry,
            )
        return run.layer

    def _show_plane(self, run: Run, index, labels) -> None:
        layer = self._ensure_layer(run)
        layer.data[run.source.layout.labels_index(index)] = labels
        layer.refresh()

    def _on_yielded(self, run: Run, sp) -> None:
        if run.cancelled or run.returned:  # queued records after Cancel or the result are dropped
            return
        if isinstance(sp, ApplyProgress):
            self._status(f"applied to plane {sp.plane + 1}/{sp.n_planes}")
            self._show_plane(run, sp.index, sp.labels)
            done = sp.plane + 1
        else:
            p = sp.progress
            where = f"slice {sp.plane + 1}/{sp.n_planes} · " if sp.n_planes > 1 else ""
            if p.part is not None:
                self._status(f"{where}final pass · tile {p.part[0]}/{p.part[1]}")
            elif p.stage != "training":  # the stages after training: the pass, regions, hierarchy
                self._status(f"{where}{p.stage} (after {p.iteration} iterations)...")
            else:
                self._status(
                    f"{where}iteration {p.iteration}/{p.max_iter} · loss {p.loss:.3f} · "
                    f"{p.n_labels} clusters"
                )
            if p.labels is not None:
                self._show_plane(run, sp.index, p.labels)
            done = sp.plane * run.params.total_iter + p.iteration
        # last: napari's progress bar processes Qt events, so later handlers (even the
        # result's) may run inside this call; nothing of this record may follow them
        run.pbar.update(done - run.pbar.n)

    def _on_returned(self, run: Run, result) -> None:
        run.returned, run.result = True, result
        layer = self._ensure_layer(run)
        if run.kind == "apply":
            layer.data = result
            layer.metadata["inceptseg"] = {
                "image": run.image.name,
                "applied": True,
                "n_iter": 0,
                "network": run.network,
                "planes": [list(p) for p in run.source.planes],
            }
            msg = (
                f"{run.name}: {len(run.source.planes)} plane(s) labelled with the network, "
                "no training"
            )
        else:
            layer.data = result.labels
            layer.metadata["inceptseg"] = {"image": run.image.name, **result.metadata()}
            last = result.results[-1]
            if last.model is not None:
                self._trained(last.trained_model(), f"trained on '{run.image.name}'")
            kind = "regions" if all(r.regions for r in result.results) else "clusters"
            msg = (
                f"{run.name}: {result.n_labels} {kind} after {result.n_iter} iterations "
                f"in {result.seconds:.1f} s on {result.results[0].device}; {result.results[0].plan}"
            )
            if run.params.objects:
                layer.features = measure(result.labels, run.image, run.params.dims == "2d")
                msg = f"{run.name}: {result.n_labels} objects in {result.seconds:.2f} s"
        self._status(msg)
        show_info(msg)

    def _on_errored(self, run: Run, exc: BaseException) -> None:
        run.failed = True
        if isinstance(exc, ValueError):
            msg = f"Cannot segment '{run.image.name}': {exc}"
        else:
            msg = f"Segmentation of '{run.image.name}' failed: {exc}"
            if not isinstance(exc, SegmentationError):  # a bug: keep its traceback in the log
                log.error("segmentation failed", exc_info=(type(exc), exc, exc.__traceback__))
        self._drop_preview(run)
        self._status(msg)
        show_error(msg)

    def _on_aborted(self, run: Run) -> None:
        self._drop_preview(run)
        kept = (
            " (last preview kept)"
            if run.layer is not None and run.layer in self._viewer.layers
            else ""
        )
        self._status(f"cancelled{kept}")

    def _drop_preview(self, run: Run) -> None:
        if not run.keep_preview and run.layer is not None and run.layer in self._viewer.layers:
            self._viewer.layers.remove(run.layer)
            run.layer = None

    def _on_finished(self, run: Run) -> None:
        self._ended(run)
