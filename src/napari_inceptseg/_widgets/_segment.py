"""The "Unsupervised segmentation" dock widget.

A thin GUI over :func:`napari_inceptseg._stack.segment_stack_iter`: the engine
generator runs in a napari ``thread_worker``; layers are touched only in the
worker's ``yielded`` / ``returned`` / ``errored`` / ``aborted`` handlers, which
napari calls in the main thread. torch is imported when a run starts.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, List, Optional, Tuple

import numpy as np
from magicgui.widgets import CheckBox, ComboBox, Container, FloatSpinBox, Label, PushButton, SpinBox
from napari.layers import Image
from napari.utils import progress
from napari.utils.notifications import show_error, show_info

from .._params import SegmentParams
from .._stack import PlaneLayout, StackProgress, StackResult, plane_layout
from ._layers import current_plane, output_geometry

if TYPE_CHECKING:  # pragma: no cover
    import napari

log = logging.getLogger(__name__)

CURRENT, ALL = "current slice", "all slices"

#: widget label and upper bound of each numeric engine parameter
_NUMERIC = {
    "n_channels": ("channels (max clusters)", 1000),
    "n_conv": ("depth (n_conv)", 10),
    "max_iter": ("max iterations", 100000),
    "min_labels": ("min clusters", 1000),
    "lr": ("learning rate", 10.0),
    "w_sim": ("similarity weight", 100.0),
    "w_con": ("continuity weight", 100.0),
    "coarse_scale": ("coarse scale", 1.0),
    "coarse_iter": ("coarse steps", 100000),
    "refine_iter": ("refine steps", 10000),
}
_CHOICE_LABELS = {"arch": "architecture", "init": "initialisation", "precision": "precision"}


def _param_widgets() -> dict:
    """One magicgui widget per engine parameter, with the paper's default and its help."""
    out = {}
    for f in dataclasses.fields(SegmentParams):
        help_ = f.metadata["help"]
        if "choices" in f.metadata:
            out[f.name] = ComboBox(label=_CHOICE_LABELS[f.name], choices=f.metadata["choices"], value=f.default, tooltip=help_)
        elif f.name in _NUMERIC:
            label, hi = _NUMERIC[f.name]
            if str(f.type) == "float":
                out[f.name] = FloatSpinBox(
                    label=label, min=0.0 if f.name != "coarse_scale" else f.metadata["minimum"],
                    max=hi, step=0.01 if f.name != "coarse_scale" else 0.05, value=f.default, tooltip=help_,
                )
            else:
                out[f.name] = SpinBox(label=label, min=f.metadata["minimum"], max=hi, value=f.default, tooltip=help_)
    return out


def _present_devices() -> List[str]:
    from .._engine import available_devices  # imports torch: only at construction

    return ["auto", *available_devices()]


@dataclass
class _Run:
    """Everything one run owns; the widget holds at most one."""

    image: Image
    layout: PlaneLayout
    params: SegmentParams
    planes: List[Tuple[int, ...]]
    keep_preview: bool
    name: str
    worker: Any = None
    pbar: Any = None
    layer: Any = None  # the Labels layer this run created (and only that one is updated)
    cancelled: bool = False
    failed: bool = False
    history: List[float] = field(default_factory=list)


class SegmentWidget(Container):
    """Segment the selected image layer without labels; the clusters become a Labels layer."""

    def __init__(self, viewer: napari.viewer.Viewer):
        super().__init__()
        self._viewer = viewer
        self._run: Optional[_Run] = None

        self._image = ComboBox(label="image", choices=self._image_choices, tooltip="The image layer to segment (follows the selected layer).")
        self._params = _param_widgets()
        self._device = ComboBox(label="device", choices=_present_devices(), value="auto", tooltip=SegmentParams.__dataclass_fields__["device"].metadata["help"])
        self._seed = SpinBox(label="seed", min=-1, max=2**31 - 1, value=-1, tooltip="Seed of the initial weights; -1 draws one (recorded in the layer metadata). The same seed gives the same result on the CPU.")
        self._preview_every = SpinBox(label="preview every", min=0, max=10000, value=10, tooltip="Update the output layer every N iterations while the run goes on (0: only at the end).")
        self._channel_axis = ComboBox(label="channel axis", choices=self._channel_axis_choices, tooltip="Axis holding the channels of a multichannel (non-RGB) image, e.g. 0 for (C, Y, X). RGB layers need none.")
        self._slices = ComboBox(label="slices", choices=[CURRENT, ALL], value=CURRENT, tooltip="For images with Z, T or other leading axes: segment the slice on screen, or every slice into one Labels layer.")
        self._warm_start = CheckBox(text="warm start from the previous slice", value=True, tooltip="All slices: start each slice from the network trained on the previous one, so that cluster ids stay consistent along the stack (and later slices converge faster).")
        self._keep_preview = CheckBox(text="keep last preview if cancelled or failed", value=False, tooltip="Off: a cancelled or failed run removes its layer, leaving the viewer as it was.")
        self._run_btn = PushButton(text="Run")
        self._cancel_btn = PushButton(text="Cancel", enabled=False)
        self._status = Label(value="")

        self.extend([
            self._image, *self._params.values(), self._device, self._seed, self._preview_every,
            self._channel_axis, self._slices, self._warm_start, self._keep_preview,
            Container(widgets=[self._run_btn, self._cancel_btn], layout="horizontal", labels=False),
            self._status,
        ])

        self._run_btn.changed.connect(self.run)
        self._cancel_btn.changed.connect(self.cancel)
        self._image.changed.connect(self._on_image_changed)
        self._channel_axis.changed.connect(self._update_nd_controls)
        self._slices.changed.connect(self._update_nd_controls)
        for ev in (viewer.layers.events.inserted, viewer.layers.events.removed, viewer.layers.events.reordered):
            ev.connect(self._refresh_choices)
        viewer.layers.selection.events.active.connect(self._follow_active)
        self._follow_active()
        self._update_nd_controls()

    # --- choices and state ---------------------------------------------------------

    def _image_choices(self, _widget=None):
        return [(layer.name, layer) for layer in self._viewer.layers if isinstance(layer, Image)]

    def _channel_axis_choices(self, _widget=None):
        picker = self.__dict__.get("_image")  # absent while the widget is being built
        layer = None if picker is None else picker.value
        if layer is None or layer.rgb:
            return [("none", None)]
        return [("none", None)] + [(str(i), i) for i in range(layer.ndim)]

    def _refresh_choices(self, event=None):
        self.reset_choices()
        self._update_nd_controls()

    def _follow_active(self, event=None):
        active = self._viewer.layers.selection.active
        if isinstance(active, Image) and self._image.value is not active:
            self._image.reset_choices()
            self._image.value = active

    def _on_image_changed(self, _value=None):
        self._channel_axis.reset_choices()
        self._update_nd_controls()

    def _plane_layout(self) -> Optional[PlaneLayout]:
        layer = self._image.value
        if layer is None:
            return None
        return plane_layout(layer.data.shape, self._channel_axis.value, rgb=layer.rgb)

    def _update_nd_controls(self, _value=None):
        try:
            layout = self._plane_layout()
        except ValueError:
            layout = None
        nd = bool(layout and layout.leading_axes)
        self._slices.visible = nd
        self._warm_start.visible = nd and self._slices.value == ALL

    def _set_running(self, running: bool) -> None:
        self._run_btn.enabled = not running
        self._cancel_btn.enabled = running

    @property
    def running(self) -> bool:
        return self._run is not None

    def parameters(self) -> SegmentParams:
        values = {name: w.value for name, w in self._params.items()}
        return SegmentParams(**values, device=self._device.value, seed=None if self._seed.value < 0 else self._seed.value)

    # --- run / cancel -------------------------------------------------------------------

    def run(self, _=None) -> None:
        """Start a run on the chosen image (ignored while one is going)."""
        if self._run is not None:
            return
        layer = self._image.value
        if layer is None:
            show_info("Open or select an image layer first (File > Open Sample has examples).")
            return
        try:
            params = self.parameters()
            layout = self._plane_layout()
            if not layout.leading_axes:
                planes = [()]
            elif self._slices.value == CURRENT:
                planes = [current_plane(self._viewer, layer, layout)]
            else:
                planes = [tuple(i) for i in np.ndindex(*layout.leading_shape)]
        except ValueError as exc:
            show_error(f"Cannot segment '{layer.name}': {exc}")
            return
        from napari.qt.threading import create_worker

        from .._stack import segment_stack_iter

        run = _Run(
            image=layer, layout=layout, params=params, planes=planes,
            keep_preview=self._keep_preview.value, name=f"{layer.name} clusters",
        )
        run.worker = create_worker(
            segment_stack_iter, layer.data, channel_axis=layout.channel_axis if not layer.rgb else None,
            rgb=layer.rgb, planes=planes, warm_start=self._warm_start.value, params=params,
            preview_every=self._preview_every.value, _start_thread=False,
            _connect={
                "yielded": self._on_yielded, "returned": self._on_returned, "errored": self._on_errored,
                "aborted": self._on_aborted, "finished": self._on_finished,
            },
        )
        run.pbar = progress(total=len(planes) * params.total_iter, desc=f"Segmenting {layer.name}")
        self._run = run
        self._set_running(True)
        self._status.value = f"starting on {params.device}..."
        run.worker.start()

    def cancel(self, _=None) -> None:
        """Stop the run after the current iteration."""
        if self._run is None:
            return
        self._run.cancelled = True
        self._status.value = "cancelling..."
        self._run.worker.quit()

    # --- worker handlers (main thread) -------------------------------------------

    def _ensure_layer(self, run: _Run):
        if run.layer is None or run.layer not in self._viewer.layers:
            run.layer = self._viewer.add_labels(
                np.zeros(run.layout.labels_shape, dtype=np.int32), name=run.name,
                **output_geometry(run.image, run.layout.channel_axis),
            )
        return run.layer

    def _on_yielded(self, sp: StackProgress) -> None:
        run = self._run
        if run is None or run.cancelled:  # records still queued after Cancel are dropped
            return
        p = sp.progress
        done = sp.plane * run.params.total_iter + p.iteration
        run.pbar.update(done - run.pbar.n)
        where = f"slice {sp.plane + 1}/{sp.n_planes} · " if sp.n_planes > 1 else ""
        self._status.value = f"{where}iteration {p.iteration}/{p.max_iter} · loss {p.loss:.3f} · {p.n_labels} clusters"
        if p.labels is not None:
            layer = self._ensure_layer(run)
            layer.data[run.layout.labels_index(sp.index)] = p.labels
            layer.refresh()

    def _on_returned(self, result: StackResult) -> None:
        run = self._run
        layer = self._ensure_layer(run)
        layer.data = result.labels
        layer.metadata["inceptseg"] = {"image": run.image.name, **result.metadata()}
        msg = (f"{run.name}: {result.n_labels} clusters after {result.n_iter} iterations "
               f"in {result.seconds:.1f} s on {result.results[0].device}")
        self._status.value = msg
        show_info(msg)

    def _on_errored(self, exc: BaseException) -> None:
        run = self._run
        run.failed = True
        if isinstance(exc, ValueError):
            msg = f"Cannot segment '{run.image.name}': {exc}"
        else:
            msg = f"Segmentation of '{run.image.name}' failed: {exc}"
            if type(exc).__name__ != "SegmentationError":
                log.error("segmentation failed", exc_info=(type(exc), exc, exc.__traceback__))
        self._drop_preview(run)
        self._status.value = msg
        show_error(msg)

    def _on_aborted(self) -> None:
        run = self._run
        self._drop_preview(run)
        kept = " (last preview kept)" if run.layer is not None and run.layer in self._viewer.layers else ""
        self._status.value = f"cancelled{kept}"

    def _drop_preview(self, run: _Run) -> None:
        if not run.keep_preview and run.layer is not None and run.layer in self._viewer.layers:
            self._viewer.layers.remove(run.layer)
            run.layer = None

    def _on_finished(self) -> None:
        run, self._run = self._run, None
        if run is not None and run.pbar is not None:
            run.pbar.close()
        self._set_running(False)
