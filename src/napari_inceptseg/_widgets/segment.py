"""The "Unsupervised segmentation" dock widget.

A thin form over :func:`napari_inceptseg.engine.workflow.stack.segment_stack_iter`: it turns
its controls into :class:`SegmentParams` and a :class:`~.source.RunSource`, and hands
the run to :class:`~.run.RunLifecycle` (the worker, the progress bar and the layer).
torch is imported when the dock is built (the device list) and when a run starts.
Up front: the image, the preset, the number of labels, the seed, the preview rate and
Run / Cancel; every other setting is under "Advanced"; the dock's settings are kept
between sessions (``settings.py``).
"""

from __future__ import annotations

import logging
from functools import partial
from typing import TYPE_CHECKING

from magicgui.widgets import Container
from napari.layers import Image, Labels
from napari.utils.notifications import show_error, show_info

from ..dock.model import SegmentDockModel
from ..params import SegmentParams
from . import segment_controls
from .controls import BASIC_PARAMS, _param_widgets, scrolling_body, wrapping_label
from .detail import DetailPanel
from .layers import layer_choices
from .network import NetworkPanel
from .objects import ObjectsPanel
from .run import Run, RunLifecycle
from .source import layer_layout, plan_line, run_source, scribbles_for
from .whole import WholeImagePanel

if TYPE_CHECKING:  # pragma: no cover
    import napari

log = logging.getLogger(__name__)


def _present_devices() -> list[str]:
    from ..engine.machine.runtime import available_devices  # imports torch: only at construction

    return ["auto", *available_devices()]


class SegmentWidget(Container):
    """Segment the selected image layer without labels; the result (regions with the
    default method, clusters with the paper presets) becomes a Labels layer."""

    def __init__(self, viewer: napari.viewer.Viewer):
        super().__init__(labels=False)
        self._viewer = viewer
        self._state = SegmentDockModel(_present_devices())
        self._showing = False  # while the model's values are put in the controls
        self._build_controls()
        self._runs = RunLifecycle(viewer, self._set_status, self._set_model, self._ended)
        self._body = scrolling_body(self, self._sections())
        self._connect(viewer)
        self._restore_settings()
        self._follow_active()
        self._update_nd_controls()

    def _build_controls(self) -> None:
        layers = self._viewer.layers
        choices = {
            "image": lambda _=None: layer_choices(layers, Image),
            "scribbles": lambda _=None: [("none", None)] + layer_choices(layers, Labels),
            "channel_axis": lambda _=None: segment_controls.axis_choices(self._picked()),
            "level": lambda _=None: segment_controls.level_choices(self._picked()),
        }
        made = {
            **segment_controls.choosers(choices),
            **segment_controls.run_options(self._state.devices),
            **segment_controls.buttons(),
        }
        for name, widget in made.items():
            setattr(self, f"_{name}", widget)
        self._params = _param_widgets()
        self._status = wrapping_label()
        self._detail = DetailPanel(self._viewer, self._set_status)
        self._network = NetworkPanel(self._viewer, self.apply, self._set_status)
        self._whole = WholeImagePanel(self._viewer, self.parameters, self._set_status)
        self._objects = ObjectsPanel(self._viewer, self._set_status)

    def _sections(self) -> list:
        advanced = [w for name, w in self._params.items() if name not in BASIC_PARAMS]
        advanced += [self._device, self._scribbles, self._reuse, self._warm_start]
        advanced += [self._keep_preview, self._defaults_btn]
        made = segment_controls.sections(advanced, self._network, self._whole, self._objects)
        for name, section in made.items():
            setattr(self, f"_{name}", section)
        return [
            self._image,
            self._preset,
            *(self._params[n] for n in BASIC_PARAMS),
            self._seed,
            self._preview_every,
            self._channel_axis,
            self._slices,
            self._level,
            Container(widgets=[self._run_btn, self._cancel_btn], layout="horizontal", labels=False),
            self._status,
            self._detail,
            self._advanced,
            self._objects_section,
            self._network_section,
            self._whole_section,
            Container(
                widgets=[self._python_btn, self._command_btn], layout="horizontal", labels=False
            ),
        ]

    def _connect(self, viewer) -> None:
        self._run_btn.changed.connect(self.run)
        self._cancel_btn.changed.connect(self.cancel)
        self._defaults_btn.changed.connect(self.restore_defaults)
        self._python_btn.changed.connect(lambda _=None: self.copy_recipe("python"))
        self._command_btn.changed.connect(lambda _=None: self.copy_recipe("command"))
        self._params["dims"].changed.connect(self._update_nd_controls)
        self._image.changed.connect(self._on_image_changed)
        self._channel_axis.changed.connect(self._update_nd_controls)
        self._slices.changed.connect(self._update_nd_controls)
        for name, widget in self._kept_controls().items():
            widget.changed.connect(partial(self._control_changed, name))
        self._advanced.toggle.changed.connect(
            lambda _=None: self._state.set_advanced_open(self._advanced.is_open)
        )
        self._state.subscribe(self._show)
        for ev in (
            viewer.layers.events.inserted,
            viewer.layers.events.removed,
            viewer.layers.events.reordered,
        ):
            ev.connect(self._refresh_choices)
        viewer.layers.selection.events.active.connect(self._follow_active)

    # --- settings kept between sessions ---------------------------------------------

    def _kept_controls(self) -> dict:
        """The control of each setting the model keeps, by the setting's name."""
        return {
            **self._params,
            **{name: getattr(self, f"_{name}") for name in SegmentDockModel.dock_fields()},
        }

    def _control_changed(self, name: str, value) -> None:
        if not self._showing:
            self._state.set(name, value)

    def _show(self, name: str, value) -> None:
        """Put a value the model set in its control (a control that refuses it keeps its
        own value, and the model takes that)."""
        control = self._kept_controls()[name]
        self._showing = True
        try:
            control.value = value
        except (ValueError, TypeError, KeyError) as exc:
            log.warning("dock setting %s=%r not shown: %s", name, value, exc)
            self._state.values[name] = control.value
        finally:
            self._showing = False

    def _restore_settings(self) -> None:
        problem = self._state.load()
        self._advanced.set_open(self._state.advanced_open)
        if problem:
            from napari.utils.notifications import show_warning

            show_warning(problem)

    def restore_defaults(self, _=None) -> None:
        """Every setting back to the default method's, and saved so."""
        self._state.restore_defaults()
        self._advanced.set_open(False)
        self._set_status("settings restored to the defaults")

    # --- choices and state ---------------------------------------------------------

    def _picked(self):
        """The chosen image layer (None while the dock is being built)."""
        picker = self.__dict__.get("_image")
        return None if picker is None else picker.value

    def reset_choices(self, *_) -> None:
        self._body.reset_choices()

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
        self._warm_start.visible = nd and self._state.all_slices

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
        return self._state.running

    @property
    def _run(self) -> Run | None:
        return self._state.run

    def apply_preset(self, name: str | None = None) -> None:
        """Set every method setting to the preset's value (device, seed and memory stay)."""
        self._state.apply_preset(name)

    def parameters(self) -> SegmentParams:
        """The engine settings of a run with the dock's values."""
        return self._state.parameters()

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
            src = self._source(layer, params)
            scribbles = scribbles_for(
                self._scribbles.value, layer, self._channel_axis.value, params, src.labels_sel
            )
            plan = plan_line(layer, src.layout, params, self._state.device_name(params))
        except (ValueError, MemoryError) as exc:
            show_error(f"Cannot segment '{layer.name}': {exc}")
            return
        from ..engine.workflow.stack import segment_stack_iter

        run = Run(
            image=layer,
            source=src,
            params=params,
            keep_preview=self._state.values["keep_preview"],
            name=self._state.result_name(layer.name, params, scribbles is not None),
        )
        self._begin(run)
        self._runs.start(
            run,
            len(src.planes) * params.total_iter,
            f"Segmenting {layer.name}",
            f"starting on {params.device}: {plan}",
            segment_stack_iter,
            src.data,
            channel_axis=src.channel_axis,
            rgb=layer.rgb,
            planes=src.planes,
            warm_start=self._state.values["warm_start"],
            params=params,
            preview_every=self._state.values["preview_every"],
            scribbles=scribbles,
            spacing=src.spacing() if params.spatial_dims == 3 else None,
            init_model=init_model,
        )

    def _source(self, layer, params: SegmentParams):
        """What a run on ``layer`` reads (the slice on screen, every slice or a level)."""
        return run_source(
            self._viewer,
            layer,
            self._channel_axis.value,
            params,
            device=self._state.device_name(params),
            all_slices=self._state.all_slices,
            level=self._level.value,
        )

    def _begin(self, run: Run) -> None:
        self._state.begin(run)
        self._set_running(True)

    def _ended(self, run: Run) -> None:
        if self._state.end(run):
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
            src = self._source(layer, params)
        except (ValueError, MemoryError) as exc:
            show_error(f"Cannot apply the network to '{layer.name}': {exc}")
            return
        from ..engine.workflow.stack import apply_stack_iter

        run = Run(
            image=layer,
            source=src,
            params=model.params,
            kind="apply",
            network=self._network.info.value,
            keep_preview=self._state.values["keep_preview"],
            name=f"{layer.name} clusters (applied)",
        )
        self._begin(run)
        self._runs.start(
            run,
            len(src.planes),
            f"Applying the network to {layer.name}",
            f"applying the network to {len(src.planes)} plane(s)...",
            apply_stack_iter,
            model,
            src.data,
            channel_axis=src.channel_axis,
            rgb=layer.rgb,
            planes=src.planes,
            device=self._device.value,
        )

    def cancel(self, _=None) -> None:
        """Stop the run after the current iteration (or tile)."""
        if self._run is not None:
            self._runs.cancel(self._run)

    # --- reproduce a result -------------------------------------------------------------

    def _image_file(self, meta) -> str:
        """The file the result's image layer was read from, or a placeholder."""
        from ..dock.recipe import image_argument

        name = meta.get("image")
        image = next(
            (lay for lay in self._viewer.layers if lay.name == name and isinstance(lay, Image)),
            None,
        )
        return image_argument(name, getattr(getattr(image, "source", None), "path", None))

    def copy_recipe(self, kind: str) -> str | None:
        """Copy the Python call (``kind='python'``) or CLI command that rebuilds the
        selected result layer to the clipboard; returns the text."""
        layer = self._viewer.layers.selection.active
        meta = getattr(layer, "metadata", {}).get("inceptseg") if layer is not None else None
        if meta is None:
            show_info("Select a result layer of this dock (a Labels layer it made) first.")
            return None
        try:
            image_file = self._image_file(meta) if kind == "command" else ""
            text = self._state.recipe(kind, meta, image_file)
        except ValueError as exc:
            show_error(f"Cannot rebuild '{layer.name}': {exc}")
            return None
        from qtpy.QtWidgets import QApplication

        QApplication.clipboard().setText(text)
        self._status.value = (
            f"copied to the clipboard: {text.splitlines()[-2] if kind == 'python' else text}"
        )
        return text
