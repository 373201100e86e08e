"""The dock's "Detail" slider: the last result's region hierarchy, recut live (no
retraining). An edited result layer is never overwritten: the new cut goes to a new
layer, and the edited one keeps its labels and its undo history (edits are seen by the
layer's own signals, see :mod:`napari_inceptseg.dock.detail`)."""

from __future__ import annotations

from collections.abc import Callable

from magicgui.widgets import Container, FloatSlider, Label
from napari.utils.notifications import show_info

from ..dock.detail import DetailModel, detail_to_level


class DetailPanel(Container):
    """A slider from one region (0) to the finest regions (1) for the last result."""

    def __init__(self, viewer, status: Callable[[str], None]):
        self._viewer, self._status = viewer, status
        self.model = DetailModel()
        self.slider = FloatSlider(
            label="detail",
            min=0.0,
            max=1.0,
            step=0.025,
            value=1.0,
            enabled=False,
            tooltip=(
                "Fewer, larger regions to the left, more to the right: the last result's "
                "region hierarchy cut again, no retraining. An edited result is kept: the "
                "new cut goes to a new layer."
            ),
        )
        self.count = Label(value="")
        # a line of text however long the status above it wraps on a small screen
        metrics = self.count.native.fontMetrics()
        self.count.native.setMinimumSize(
            metrics.horizontalAdvance("00000 regions") + 8, metrics.height() + 4
        )
        super().__init__(widgets=[self.slider, self.count], labels=True)
        self.margins = (0, 0, 0, 0)
        self.slider.changed.connect(self.set_detail)

    def attach(self, layer, hierarchy, level: float) -> None:
        """Follow ``layer``, the result of a run whose labels are ``hierarchy`` cut at ``level``."""
        if hierarchy is None:
            self.model.detach()
            self.slider.enabled = False
            self.count.value = ""
            return
        self.model.attach(layer, hierarchy, level)
        with self.slider.changed.blocked():
            self.slider.value = 1.0 - level
        self.slider.enabled = True
        self.count.value = f"{hierarchy.n_regions(level)} regions"

    def set_detail(self, detail: float) -> None:
        """Recut the hierarchy at the slider's ``detail``."""
        model = self.model
        if not model.active:
            return
        if model.layer not in self._viewer.layers:  # the result layer was deleted: start a new one
            model.layer = None
        level = detail_to_level(detail)
        if model.layer is None:
            self._new_layer(level, model.hierarchy.cut(level), "its layer was deleted")
            return
        where, labels = model.recut(level)
        if where == "replace":  # (the model put the cut in the layer)
            _record_level(model.layer, level)
            self.count.value = f"{model.n_regions(level)} regions"
            return
        self._new_layer(
            level, labels, f"'{model.layer.name}' was edited by hand and is kept as it is"
        )

    def _new_layer(self, level: float, labels, why: str) -> None:
        old = self.model.layer
        name = f"{old.name if old is not None else 'regions'} (detail {1 - level:.3f})"
        geometry = (
            {}
            if old is None
            else {"scale": old.scale, "translate": old.translate, "affine": old.affine}
        )
        layer = self._viewer.add_labels(labels, name=name, **geometry)
        if old is not None and "inceptseg" in old.metadata:
            layer.metadata["inceptseg"] = {**old.metadata["inceptseg"]}
            _record_level(layer, level)
        self.model.attach(layer, self.model.hierarchy, level)
        self.count.value = f"{self.model.n_regions(level)} regions"
        msg = f"{why}: the cut at detail {1 - level:.3f} is the new layer '{name}'"
        self._status(msg)
        show_info(msg)


def _record_level(layer, level: float) -> None:
    """The layer's run record says which cut it shows, so that Copy as Python / command
    rebuild exactly these labels."""
    meta = layer.metadata.get("inceptseg")
    if isinstance(meta, dict) and isinstance(meta.get("params"), dict):
        meta["params"] = {**meta["params"], "level": round(float(level), 6), "n_clusters": 0}
