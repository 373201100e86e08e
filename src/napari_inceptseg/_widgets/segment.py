"""The "Unsupervised segmentation" dock widget.

A thin form over :func:`napari_inceptseg.engine.stack.segment_stack_iter`: it turns
its controls into :class:`SegmentParams` and a :class:`~.source.RunSource`, and hands
the run to :class:`~.run.RunLifecycle` (the worker, the progress bar and the layer).
torch is imported when the dock is built (the device list) and when a run starts.
Up front: the image, the preset, the number of labels, the seed, the preview rate and
Run / Cancel; every other setting is under "Advanced"; the dock's settings are kept
between sessions (``settings.py``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, List, Optional

from magicgui.widgets import CheckBox, ComboBox, Container, PushButton, SpinBox
from napari.layers import Image, Labels
from napari.utils.notifications import show_error, show_info

from ..params import PRESETS, SegmentParams, method_fields, preset_params
from .controls import BASIC_PARAMS, Section, _param_widgets, scrolling_body, wrapping_label
from .source import layer_layout, plan_line, run_source, scribbles_for
from .detail import DetailPanel
from .network import NetworkPanel
from .whole import WholeImagePanel
from .objects import ObjectsPanel
from .run import Run, RunLifecycle
from .settings import KeptSettings, load_settings

if TYPE_CHECKING:  # pragma: no cover
    import napari

CURRENT, ALL = "current slice", "all slices"
#: dock settings kept between sessions besides the engine parameters (widget attribute names)
_KEPT = ("_preset", "_device", "_seed", "_preview_every", "_keep_preview", "_warm_start", "_slices")
_KEPT_DEFAULTS = {"_device": "auto", "_seed": -1, "_preview_every": 10, "_keep_preview": False,
                  "_warm_start": True, "_slices": CURRENT}


def _present_devices() -> List[str]:
    from ..engine.runtime import available_devices  # imports torch: only at construction

    return ["auto", *available_devices()]


class SegmentWidget(Container):
    """Segment the selected image layer without labels; the result (regions with the
    default method, clusters with the paper presets) becomes a Labels layer."""

    def __init__(self, viewer: napari.viewer.Viewer):
        super().__init__(labels=False)
        self._viewer = viewer
        self._run: Optional[Run] = None
        self._build_controls()
        self._runs = RunLifecycle(viewer, self._set_status, self._set_model, self._ended)
        self._body = scrolling_body(self, self._sections())
        self._kept = KeptSettings(self._kept_widgets(), self._advanced)
        self._connect(viewer)
        self._restore_settings(load_settings())
        self._follow_active()
        self._update_nd_controls()

    def _build_controls(self) -> None:
        self._image = ComboBox(label="image", choices=self._image_choices, tooltip="The image layer to segment (follows the selected layer).")
        self._preset = ComboBox(label="preset", choices=list(PRESETS), value="default", tooltip=(
            "default: a short training on a downscaled copy, then connected regions (seconds on a CPU). "
            "paper-vanilla / paper-inception: the papers' exact settings (1000 iterations at full "
            "resolution, raw clusters). Choosing one sets every method setting under Advanced."))
        self._params = _param_widgets()
        self._device = ComboBox(label="device", choices=_present_devices(), value="auto", tooltip=SegmentParams.__dataclass_fields__["device"].metadata["help"])
        self._seed = SpinBox(label="seed", min=-1, max=2**31 - 1, value=-1, tooltip="Seed of the initial weights; -1 draws one (recorded in the layer metadata). The same seed gives the same result on the CPU.")
        self._preview_every = SpinBox(label="preview every", min=0, max=10000, value=10, tooltip="Update the output layer every N iterations while the run goes on (0: only at the end).")
        self._channel_axis = ComboBox(label="channel axis", choices=self._channel_axis_choices, tooltip="Axis holding the channels of a multichannel (non-RGB) image, e.g. 0 for (C, Y, X). RGB layers need none.")
        self._level = ComboBox(label="pyramid level", choices=self._level_choices, tooltip="For a multiscale layer (e.g. OME-Zarr): the level to segment. auto: the largest (finest) level that fits the memory plan; the result carries that level's scale.")
        self._slices = ComboBox(label="slices", choices=[CURRENT, ALL], value=CURRENT, tooltip="For images with Z, T or other leading axes: segment the slice on screen (a result of that slice's size, placed there), or every slice into one Labels layer.")
        self._warm_start = CheckBox(text="warm start from the previous slice", value=True, tooltip="All slices: start each slice from the network trained on the previous one, so that cluster ids stay consistent along the stack (and later slices converge faster).")
        self._keep_preview = CheckBox(text="keep last preview if cancelled or failed", value=False, tooltip="Off: a cancelled or failed run removes its layer, leaving the viewer as it was.")
        self._scribbles = ComboBox(label="scribbles", choices=self._scribble_choices, tooltip="Optional Labels layer of the image's size with a few painted strokes (ids 1, 2, ...; 0 = unpainted): each id becomes one cluster that keeps the id (and colour) in the result.")
        self._reuse = CheckBox(text="start from the last network", value=False, enabled=False, tooltip="Train starting from the network of the last run (or the loaded file), e.g. after adding scribbles: refining is fast. Its architecture, channels and depth are used.")
        self._run_btn = PushButton(text="Run", tooltip="Segment the image with these settings (the result becomes a new Labels layer).")
        self._cancel_btn = PushButton(text="Cancel", enabled=False, tooltip="Stop the run after the current iteration or tile (also from napari's activity dock).")
        self._defaults_btn = PushButton(text="Restore defaults", tooltip="Every setting back to the default method's (the dock remembers your settings between sessions).")
        self._python_btn = PushButton(text="Copy as Python", tooltip="Copy the segment(...) call that reproduces the selected result layer (seed included).")
        self._command_btn = PushButton(text="Copy as command", tooltip="Copy the napari-inceptseg segment command that reproduces the selected result layer.")
        self._status = wrapping_label()
        self._detail = DetailPanel(self._viewer, self._set_status)
        self._network = NetworkPanel(self.apply, self._set_status)
        self._whole = WholeImagePanel(self._viewer, self.parameters, self._set_status)
        self._objects = ObjectsPanel(self._viewer, self._set_status)

    def _sections(self) -> list:
        advanced = [w for name, w in self._params.items() if name not in BASIC_PARAMS]
        self._advanced = Section("Advanced settings", [
            *advanced, self._device, self._scribbles, self._reuse, self._warm_start, self._keep_preview,
            self._defaults_btn], tooltip="Every engine setting, the device, scribbles and what a cancelled run keeps.")
        self._network_section = Section("Network: save, load, apply", [self._network])
        self._whole_section = Section("Whole image: OME-Zarr on a Dask cluster", [self._whole], tooltip=(
            "For layers opened from OME-Zarr or zarr: segment every pixel, block by block, on a cluster or this "
            "machine, into an OME-Zarr label image."))
        self._objects_section = Section("Objects: split clusters into objects", [self._objects],
                                        tooltip="Turn a result into countable objects (nuclei, cells).")
        return [
            self._image, self._preset, *(self._params[n] for n in BASIC_PARAMS), self._seed,
            self._preview_every, self._channel_axis, self._slices, self._level,
            Container(widgets=[self._run_btn, self._cancel_btn], layout="horizontal", labels=False),
            self._status, self._detail, self._advanced, self._objects_section, self._network_section,
            self._whole_section,
            Container(widgets=[self._python_btn, self._command_btn], layout="horizontal", labels=False),
        ]

    def _connect(self, viewer) -> None:
        self._run_btn.changed.connect(self.run)
        self._cancel_btn.changed.connect(self.cancel)
        self._defaults_btn.changed.connect(self.restore_defaults)
        self._python_btn.changed.connect(lambda _=None: self.copy_recipe("python"))
        self._command_btn.changed.connect(lambda _=None: self.copy_recipe("command"))
        self._params["dims"].changed.connect(self._update_nd_controls)
        self._preset.changed.connect(self.apply_preset)
        self._image.changed.connect(self._on_image_changed)
        self._channel_axis.changed.connect(self._update_nd_controls)
        self._slices.changed.connect(self._update_nd_controls)
        for widget in [*self._params.values(), *(getattr(self, a) for a in _KEPT)]:
            widget.changed.connect(self._save_settings)
        self._advanced.toggle.changed.connect(self._save_settings)
        for ev in (viewer.layers.events.inserted, viewer.layers.events.removed, viewer.layers.events.reordered):
            ev.connect(self._refresh_choices)
        viewer.layers.selection.events.active.connect(self._follow_active)

    # --- settings kept between sessions ---------------------------------------------

    def _kept_widgets(self) -> dict:
        return {**{a.lstrip("_"): getattr(self, a) for a in _KEPT}, **self._params}

    def _save_settings(self, _=None) -> None:
        if not self._kept.quiet:
            self._kept.save()

    def _restore_settings(self, saved: dict) -> None:
        self._kept.restore(saved)

    def restore_defaults(self, _=None) -> None:
        """Every setting back to the default method's, and saved so."""
        with self._kept.quietly():
            self._preset.value = "default"
            self.apply_preset("default")
            for a, value in _KEPT_DEFAULTS.items():
                getattr(self, a).value = value
            self._advanced.set_open(False)
        self._kept.save()
        self._set_status("settings restored to the defaults")

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

    def reset_choices(self, *_) -> None:
        self._body.reset_choices()

    def _level_choices(self, _widget=None):
        picker = self.__dict__.get("_image")
        layer = None if picker is None else picker.value
        if layer is None or not layer.multiscale:
            return [("auto", None)]
        return [("auto", None)] + [(f"{i}: {' x '.join(map(str, d.shape))}", i) for i, d in enumerate(layer.data)]

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
        self._level.reset_choices()
        self._update_nd_controls()

    def _update_nd_controls(self, _value=None):
        layer = self._image.value
        self._whole.follow(layer)
        try:
            dims = 3 if self._params["dims"].value == "3d" else 2
            layout = None if layer is None else layer_layout(layer, self._channel_axis.value, dims)
        except ValueError:
            layout = None
        nd = bool(layout and layout.leading_axes)
        self._channel_axis.visible = layer is not None and not layer.rgb and layer.ndim > 2
        self._slices.visible = nd
        self._level.visible = layer is not None and layer.multiscale
        self._warm_start.visible = nd and self._slices.value == ALL

    def _set_running(self, running: bool) -> None:
        self._run_btn.enabled = not running
        self._cancel_btn.enabled = running
        self._network.set_busy(running)

    def _set_status(self, text: str) -> None:
        self._status.value = text

    def _set_model(self, model, where: str) -> None:
        self._network.set_model(model, where)
        self._reuse.enabled = True
        self._set_running(self.running)

    @property
    def running(self) -> bool:
        return self._run is not None

    def apply_preset(self, name: Optional[str] = None) -> None:
        """Set every method control to the preset's value (device, seed and memory stay)."""
        settings = preset_params(name or self._preset.value)
        for field_name in method_fields():
            self._params[field_name].value = getattr(settings, field_name)

    def _device_name(self, params: SegmentParams) -> str:
        """The device a run on ``params`` plans for ("auto": the first one present)."""
        return params.device if params.device != "auto" else self._device.choices[1]

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
        model = self._network.model
        init_model = model if (self._reuse.value and model is not None) else None
        try:
            params = self.parameters()
            if init_model is not None:
                params = init_model.structure_of(params)
            src = run_source(self._viewer, layer, self._channel_axis.value, params, self._device_name(params),
                             all_slices=self._slices.value == ALL, level=self._level.value)
            scribbles = scribbles_for(self._scribbles.value, layer, self._channel_axis.value, params, src.labels_sel)
            plan = plan_line(layer, src.layout, params, self._device_name(params))
        except (ValueError, MemoryError) as exc:
            show_error(f"Cannot segment '{layer.name}': {exc}")
            return
        from ..engine.stack import segment_stack_iter

        run = Run(image=layer, source=src, params=params, keep_preview=self._keep_preview.value,
                  name=f"{layer.name} {'regions' if params.regions and scribbles is None else 'clusters'}")
        self._begin(run)
        self._runs.start(
            run, len(src.planes) * params.total_iter, f"Segmenting {layer.name}", f"starting on {params.device}: {plan}",
            segment_stack_iter, src.data, channel_axis=src.channel_axis, rgb=layer.rgb, planes=src.planes,
            warm_start=self._warm_start.value, params=params, preview_every=self._preview_every.value,
            scribbles=scribbles, spacing=src.spacing() if params.spatial_dims == 3 else None, init_model=init_model,
        )

    def _begin(self, run: Run) -> None:
        self._run = run
        self._set_running(True)

    def _ended(self, run: Run) -> None:
        if self._run is run:
            self._run = None
            self._set_running(False)
        hierarchy = getattr(run.result, "hierarchy", None)
        if run.kind == "train" and run.layer is not None and hierarchy is not None:
            self._detail.attach(run.layer, hierarchy, run.result.level)

    def apply(self, _=None) -> None:
        """Label the current slice / all slices with the last network, without training."""
        layer, model = self._image.value, self._network.model
        if self._run is not None:
            return
        if layer is None or model is None:
            show_info("Run a segmentation or load a network first, and select an image layer.")
            return
        params = model.params.replace(device=self._device.value)
        try:
            src = run_source(self._viewer, layer, self._channel_axis.value, params, self._device_name(params),
                             all_slices=self._slices.value == ALL, level=self._level.value)
        except (ValueError, MemoryError) as exc:
            show_error(f"Cannot apply the network to '{layer.name}': {exc}")
            return
        from ..engine.stack import apply_stack_iter

        run = Run(image=layer, source=src, params=model.params, kind="apply", network=self._network.info.value,
                  keep_preview=self._keep_preview.value, name=f"{layer.name} clusters (applied)")
        self._begin(run)
        self._runs.start(
            run, len(src.planes), f"Applying the network to {layer.name}",
            f"applying the network to {len(src.planes)} plane(s)...",
            apply_stack_iter, model, src.data, channel_axis=src.channel_axis, rgb=layer.rgb, planes=src.planes,
            device=self._device.value,
        )

    def cancel(self, _=None) -> None:
        """Stop the run after the current iteration (or tile)."""
        if self._run is not None:
            self._runs.cancel(self._run)

    # --- reproduce a result -------------------------------------------------------------

    def _image_file(self, meta) -> str:
        """The file the result's image layer was read from, or a placeholder."""
        from ..recipe import image_argument

        name = meta.get("image")
        image = next((lay for lay in self._viewer.layers if lay.name == name and isinstance(lay, Image)), None)
        return image_argument(name, getattr(getattr(image, "source", None), "path", None))

    def copy_recipe(self, kind: str) -> Optional[str]:
        """Copy the Python call (``kind='python'``) or CLI command that rebuilds the
        selected result layer to the clipboard; returns the text."""
        from ..recipe import as_command, as_python

        layer = self._viewer.layers.selection.active
        meta = getattr(layer, "metadata", {}).get("inceptseg") if layer is not None else None
        if meta is None:
            show_info("Select a result layer of this dock (a Labels layer it made) first.")
            return None
        try:
            text = as_python(meta) if kind == "python" else as_command(meta, image=self._image_file(meta))
        except ValueError as exc:
            show_error(f"Cannot rebuild '{layer.name}': {exc}")
            return None
        from qtpy.QtWidgets import QApplication

        QApplication.clipboard().setText(text)
        self._status.value = f"copied to the clipboard: {text.splitlines()[-2] if kind == 'python' else text}"
        return text
