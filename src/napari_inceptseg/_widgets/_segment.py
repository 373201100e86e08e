"""The "Unsupervised segmentation" dock widget.

A thin GUI over :func:`napari_inceptseg._stack.segment_stack_iter`: the engine
generator runs in a napari ``thread_worker``; layers are touched only in the
worker's ``yielded`` / ``returned`` / ``errored`` / ``aborted`` handlers, which
napari calls in the main thread. torch is imported when a run starts.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, List, Optional, Tuple

import numpy as np
from magicgui.widgets import CheckBox, ComboBox, Container, FileEdit, FloatSpinBox, Label, PushButton, SpinBox
from napari.layers import Image, Labels
from napari.utils import progress
from napari.utils.notifications import show_error, show_info

from .._params import PRESETS, SegmentParams, method_fields, preset_params
from .._stack import ApplyProgress, PlaneLayout, StackProgress, StackResult, plane_layout
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
    "w_scr": ("scribble weight", 100.0),
    "tile_size": ("tile size (0: auto)", 100000),
    "memory_gb": ("memory limit GB (0: free)", 100000.0),
    "coarse_scale": ("coarse scale", 1.0),
    "coarse_iter": ("coarse steps", 100000),
    "refine_iter": ("refine steps", 10000),
    "train_pixels": ("training pixels (0: all)", 10**9),
    "merge_threshold": ("merge threshold", 100.0),
    "n_clusters": ("at most N labels (0: any)", 100000),
}
_CHOICE_LABELS = {"arch": "architecture", "dims": "dimensions", "init": "initialisation", "precision": "precision",
                  "color_space": "colour space"}
_BOOL_LABELS = {"regions": "connected regions"}


def _param_widgets() -> dict:
    """One magicgui widget per engine parameter, with the default method's value and its help."""
    out = {}
    for f in dataclasses.fields(SegmentParams):
        help_ = f.metadata["help"]
        if f.name in _BOOL_LABELS:
            out[f.name] = CheckBox(text=_BOOL_LABELS[f.name], value=f.default, tooltip=help_)
        elif "choices" in f.metadata:
            out[f.name] = ComboBox(label=_CHOICE_LABELS[f.name], choices=f.metadata["choices"], value=f.default, tooltip=help_)
        elif f.name in _NUMERIC:
            label, hi = _NUMERIC[f.name]
            if str(f.type) == "float":
                out[f.name] = FloatSpinBox(
                    label=label, min=0.0 if f.name != "coarse_scale" else f.metadata["minimum"],
                    max=hi, step={"coarse_scale": 0.05, "memory_gb": 0.5, "merge_threshold": 0.05}.get(f.name, 0.01),
                    value=f.default, tooltip=help_,
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
    kind: str = "train"  # or "apply": a saved network labels the planes, no training
    worker: Any = None
    pbar: Any = None
    layer: Any = None  # the Labels layer this run created (and only that one is updated)
    cancelled: bool = False
    failed: bool = False
    returned: bool = False  # the result has landed: previews still queued are stale


class SegmentWidget(Container):
    """Segment the selected image layer without labels; the result (regions with the
    default method, clusters with the paper presets) becomes a Labels layer."""

    def __init__(self, viewer: napari.viewer.Viewer):
        super().__init__()
        self._viewer = viewer
        self._run: Optional[_Run] = None

        self._image = ComboBox(label="image", choices=self._image_choices, tooltip="The image layer to segment (follows the selected layer).")
        self._preset = ComboBox(label="preset", choices=list(PRESETS), value="default", tooltip=(
            "default: a short training on a downscaled copy, then connected regions (seconds on a CPU). "
            "paper-vanilla / paper-inception: the papers' exact settings (1000 iterations at full "
            "resolution, raw clusters). Choosing one sets every method control below."))
        self._params = _param_widgets()
        self._device = ComboBox(label="device", choices=_present_devices(), value="auto", tooltip=SegmentParams.__dataclass_fields__["device"].metadata["help"])
        self._seed = SpinBox(label="seed", min=-1, max=2**31 - 1, value=-1, tooltip="Seed of the initial weights; -1 draws one (recorded in the layer metadata). The same seed gives the same result on the CPU.")
        self._preview_every = SpinBox(label="preview every", min=0, max=10000, value=10, tooltip="Update the output layer every N iterations while the run goes on (0: only at the end).")
        self._channel_axis = ComboBox(label="channel axis", choices=self._channel_axis_choices, tooltip="Axis holding the channels of a multichannel (non-RGB) image, e.g. 0 for (C, Y, X). RGB layers need none.")
        self._slices = ComboBox(label="slices", choices=[CURRENT, ALL], value=CURRENT, tooltip="For images with Z, T or other leading axes: segment the slice on screen, or every slice into one Labels layer.")
        self._warm_start = CheckBox(text="warm start from the previous slice", value=True, tooltip="All slices: start each slice from the network trained on the previous one, so that cluster ids stay consistent along the stack (and later slices converge faster).")
        self._keep_preview = CheckBox(text="keep last preview if cancelled or failed", value=False, tooltip="Off: a cancelled or failed run removes its layer, leaving the viewer as it was.")
        self._scribbles = ComboBox(label="scribbles", choices=self._scribble_choices, tooltip="Optional Labels layer of the image's size with a few painted strokes (ids 1, 2, ...; 0 = unpainted): each id becomes one cluster that keeps the id (and colour) in the result.")
        self._reuse = CheckBox(text="start from the last network", value=False, enabled=False, tooltip="Train starting from the network of the last run (or the loaded file), e.g. after adding scribbles: refining is fast. Its architecture, channels and depth are used.")
        self._model_file = FileEdit(label="network file", mode="w", filter="*.safetensors", tooltip="Where Save writes the last network, and what Load reads (.safetensors).")
        self._save_btn = PushButton(text="Save network")
        self._load_btn = PushButton(text="Load network")
        self._apply_btn = PushButton(text="Apply network", enabled=False, tooltip="Label the current slice / all slices / the image with the last network, without training: the same ids on every slice and time point.")
        self._model_info = Label(value="network: none yet")
        self._run_btn = PushButton(text="Run")
        self._cancel_btn = PushButton(text="Cancel", enabled=False)
        self._status = Label(value="")

        self.extend([
            self._image, self._preset, *self._params.values(), self._device, self._seed, self._preview_every,
            self._channel_axis, self._slices, self._warm_start, self._scribbles, self._reuse,
            self._keep_preview,
            Container(widgets=[self._run_btn, self._cancel_btn], layout="horizontal", labels=False),
            self._model_info, self._model_file,
            Container(widgets=[self._apply_btn, self._save_btn, self._load_btn], layout="horizontal", labels=False),
            self._status,
        ])
        self._model = None  # TrainedModel of the last run, or loaded from a file

        self._run_btn.changed.connect(self.run)
        self._cancel_btn.changed.connect(self.cancel)
        self._apply_btn.changed.connect(self.apply)
        self._save_btn.changed.connect(self.save_model)
        self._load_btn.changed.connect(self.load_model)
        self._params["dims"].changed.connect(self._update_nd_controls)
        self._preset.changed.connect(self.apply_preset)
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

    def _scribble_choices(self, _widget=None):
        return [("none", None)] + [(layer.name, layer) for layer in self._viewer.layers if isinstance(layer, Labels)]

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

    def _plane_layout(self, dims: Optional[int] = None) -> Optional[PlaneLayout]:
        layer = self._image.value
        if layer is None:
            return None
        if dims is None:
            dims = 3 if self._params["dims"].value == "3d" else 2
        return plane_layout(layer.data.shape, self._channel_axis.value, rgb=layer.rgb, dims=dims)

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
        self._apply_btn.enabled = not running and self._model is not None
        self._load_btn.enabled = not running

    def _set_model(self, model, where: str) -> None:
        self._model = model
        self._model_info.value = f"network: {where} ({model.describe()})"
        self._reuse.enabled = True
        self._apply_btn.enabled = not self.running

    @property
    def running(self) -> bool:
        return self._run is not None

    def apply_preset(self, name: Optional[str] = None) -> None:
        """Set every method control to the preset's value (device, seed and memory stay)."""
        settings = preset_params(name or self._preset.value)
        for field_name in method_fields():
            self._params[field_name].value = getattr(settings, field_name)

    def parameters(self) -> SegmentParams:
        values = {name: w.value for name, w in self._params.items()}
        return SegmentParams(**values, device=self._device.value, seed=None if self._seed.value < 0 else self._seed.value)

    # --- run / cancel -------------------------------------------------------------------

    def _planes(self, layer, layout):
        if not layout.leading_axes:
            return [()]
        if self._slices.value == CURRENT:
            return [current_plane(self._viewer, layer, layout)]
        return [tuple(i) for i in np.ndindex(*layout.leading_shape)]

    def _plan_line(self, layer, layout, params) -> str:
        """Which memory path the run takes and why (raises MemoryError if none fits)."""
        from .._memory import plan_image

        if layer.rgb:
            in_ch = 3
        elif layout.channel_axis is not None:
            in_ch = layout.shape[layout.channel_axis]
        else:
            in_ch = 1
        device = params.device if params.device != "auto" else self._device.choices[1]
        return plan_image(layout.spatial_shape, in_ch, params, device).describe()

    def run(self, _=None) -> None:
        """Start a run on the chosen image (ignored while one is going)."""
        if self._run is not None:
            return
        layer = self._image.value
        if layer is None:
            show_info("Open or select an image layer first (File > Open Sample has examples).")
            return
        init_model = self._model if (self._reuse.value and self._model is not None) else None
        scribble_layer = self._scribbles.value
        try:
            params = self.parameters()
            if init_model is not None:
                params = init_model.structure_of(params)
            layout = self._plane_layout(params.spatial_dims)
            planes = self._planes(layer, layout)
            scribbles = None
            if scribble_layer is not None:
                if tuple(scribble_layer.data.shape) != layout.labels_shape:
                    raise ValueError(
                        f"the scribbles layer '{scribble_layer.name}' has shape {tuple(scribble_layer.data.shape)}, "
                        f"the image needs {layout.labels_shape}: add a Labels layer of the image's size "
                        "(Layers > New Labels layer with the image selected) and paint on it")
                scribbles = scribble_layer.data
            plan = self._plan_line(layer, layout, params)
        except (ValueError, MemoryError) as exc:
            show_error(f"Cannot segment '{layer.name}': {exc}")
            return
        from napari.qt.threading import create_worker

        from .._stack import segment_stack_iter

        spacing = None
        if params.spatial_dims == 3:  # continuity along Z weighted by the layer's voxel size
            scale = np.asarray(layer.scale)
            spacing = tuple(float(scale[a]) for a in layout.yx_axes)
        run = _Run(
            image=layer, layout=layout, params=params, planes=planes,
            keep_preview=self._keep_preview.value,
            name=f"{layer.name} {'regions' if params.regions and scribbles is None else 'clusters'}",
        )
        run.worker = create_worker(
            segment_stack_iter, layer.data, channel_axis=layout.channel_axis if not layer.rgb else None,
            rgb=layer.rgb, planes=planes, warm_start=self._warm_start.value, params=params,
            preview_every=self._preview_every.value, scribbles=scribbles, spacing=spacing,
            init_model=init_model, _start_thread=False, _connect=self._handlers(run),
        )
        run.pbar = progress(total=len(planes) * params.total_iter, desc=f"Segmenting {layer.name}")
        self._start(run, f"starting on {params.device}: {plan}")

    def _handlers(self, run: _Run) -> dict:
        """The worker's handlers, bound to ``run``: a record can only ever touch its own run."""
        return {name: partial(getattr(self, f"_on_{name}"), run)
                for name in ("yielded", "returned", "errored", "aborted", "finished")}

    def _start(self, run: _Run, status: str) -> None:
        self._run = run
        self._set_running(True)
        self._status.value = status
        run.worker.start()

    def apply(self, _=None) -> None:
        """Label the current slice / all slices with the last network, without training."""
        if self._run is not None:
            return
        layer, model = self._image.value, self._model
        if layer is None or model is None:
            show_info("Run a segmentation or load a network first, and select an image layer.")
            return
        try:
            layout = self._plane_layout(model.params.spatial_dims)
            planes = self._planes(layer, layout)
        except ValueError as exc:
            show_error(f"Cannot apply the network to '{layer.name}': {exc}")
            return
        from napari.qt.threading import create_worker

        from .._stack import apply_stack_iter

        run = _Run(image=layer, layout=layout, params=model.params, planes=planes, kind="apply",
                   keep_preview=self._keep_preview.value, name=f"{layer.name} clusters (applied)")
        run.worker = create_worker(
            apply_stack_iter, model, layer.data, channel_axis=layout.channel_axis if not layer.rgb else None,
            rgb=layer.rgb, planes=planes, device=self._device.value, _start_thread=False,
            _connect=self._handlers(run),
        )
        run.pbar = progress(total=len(planes), desc=f"Applying the network to {layer.name}")
        self._start(run, f"applying the network to {len(planes)} plane(s)...")

    def save_model(self, _=None) -> None:
        """Write the last network to the file named in *network file* (never over an existing file)."""
        path = self._model_file.value
        if self._model is None:
            show_info("There is no network to save yet: run a segmentation first.")
            return
        if path is None or str(path) in ("", "."):
            show_info("Choose a file name (.safetensors) under 'network file' first.")
            return
        path = Path(path)
        if path.suffix != ".safetensors":
            path = path.with_name(path.name + ".safetensors")
        try:
            self._model.save(path)
        except (OSError, ValueError) as exc:
            show_error(f"Could not save the network: {exc}")
            return
        self._status.value = f"network saved to {path}"
        show_info(f"Network saved to {path}")

    def load_model(self, _=None) -> None:
        """Read the network in *network file*: then Apply, or Run with *start from the last network*."""
        from .._model_io import load_model

        path = self._model_file.value
        try:
            model = load_model(path)
        except ValueError as exc:
            show_error(f"Could not load the network: {exc}")
            return
        self._set_model(model, f"loaded from {Path(path).name}")
        self._status.value = f"network loaded from {path}"

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

    def _on_yielded(self, run: _Run, sp) -> None:
        if run.cancelled or run.returned:  # queued records after Cancel or the result are dropped
            return
        if isinstance(sp, ApplyProgress):
            self._status.value = f"applied to plane {sp.plane + 1}/{sp.n_planes}"
            layer = self._ensure_layer(run)
            layer.data[run.layout.labels_index(sp.index)] = sp.labels
            layer.refresh()
            done = sp.plane + 1
        else:
            p = sp.progress
            where = f"slice {sp.plane + 1}/{sp.n_planes} · " if sp.n_planes > 1 else ""
            self._status.value = f"{where}iteration {p.iteration}/{p.max_iter} · loss {p.loss:.3f} · {p.n_labels} clusters"
            if p.labels is not None:
                layer = self._ensure_layer(run)
                layer.data[run.layout.labels_index(sp.index)] = p.labels
                layer.refresh()
            done = sp.plane * run.params.total_iter + p.iteration
        # last: napari's progress bar processes Qt events, so later handlers (even the
        # result's) may run inside this call; nothing of this record may follow them
        run.pbar.update(done - run.pbar.n)

    def _on_returned(self, run: _Run, result) -> None:
        run.returned = True
        layer = self._ensure_layer(run)
        if run.kind == "apply":
            layer.data = result
            layer.metadata["inceptseg"] = {"image": run.image.name, "applied": True, "n_iter": 0,
                                           "network": self._model_info.value, "planes": [list(p) for p in run.planes]}
            msg = f"{run.name}: {len(run.planes)} plane(s) labelled with the network, no training"
            self._status.value = msg
            show_info(msg)
            return
        layer.data = result.labels
        layer.metadata["inceptseg"] = {"image": run.image.name, **result.metadata()}
        last = result.results[-1]
        if last.model is not None:
            self._set_model(last.trained_model(), f"trained on '{run.image.name}'")
        kind = "regions" if all(r.regions for r in result.results) else "clusters"
        msg = (f"{run.name}: {result.n_labels} {kind} after {result.n_iter} iterations "
               f"in {result.seconds:.1f} s on {result.results[0].device}; {result.results[0].plan}")
        self._status.value = msg
        show_info(msg)

    def _on_errored(self, run: _Run, exc: BaseException) -> None:
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

    def _on_aborted(self, run: _Run) -> None:
        self._drop_preview(run)
        kept = " (last preview kept)" if run.layer is not None and run.layer in self._viewer.layers else ""
        self._status.value = f"cancelled{kept}"

    def _drop_preview(self, run: _Run) -> None:
        if not run.keep_preview and run.layer is not None and run.layer in self._viewer.layers:
            self._viewer.layers.remove(run.layer)
            run.layer = None

    def _on_finished(self, run: _Run) -> None:
        if run.pbar is not None:
            run.pbar.close()
        if self._run is run:
            self._run = None
            self._set_running(False)
