"""The dock's "split into objects" panel: a segmentation's clusters -> one Labels layer
of objects (e.g. nuclei) that napari can count and measure."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np
from magicgui.widgets import CheckBox, Container, PushButton
from napari.layers import Image, Labels
from napari.utils.notifications import show_error, show_info

from .jobs import Job
from .layers import measure


class ObjectsPanel(Container):
    """Splits the selected Labels layer (a result of this dock, or any other) into objects."""

    def __init__(self, viewer, status: Callable[[str], None]):
        self._viewer, self._status = viewer, status
        self.separate = CheckBox(
            text="separate touching objects",
            value=True,
            tooltip=(
                "Cut touching round objects (nuclei) apart along a watershed of the distance "
                "to the "
                "background; off: every connected piece is one object."
            ),
        )
        self.split_btn = PushButton(
            text="Split into objects",
            tooltip=(
                "The selected Labels layer's clusters, except the largest (the background), "
                "become objects "
                "numbered 1..N in a new Labels layer (the selected one is left as it is)."
            ),
        )
        self.save_btn = PushButton(
            text="Save measurements (CSV)...",
            tooltip=(
                "The selected Labels layer's objects, one row each (area, mean intensity, "
                "centroid, bounding box, solidity, eccentricity): its features, or measured "
                "from its labels when it has none."
            ),
        )
        super().__init__(widgets=[self.separate, self.split_btn, self.save_btn], labels=False)
        self.margins = (0, 0, 0, 0)
        self.split_btn.changed.connect(self.split)
        self.save_btn.changed.connect(self._ask_and_save)

    #: split in the calling thread (tests, scripts); otherwise in a worker thread with
    #: a progress line per step and a cancel button in the activity dock
    inline = False

    def split(self, _=None) -> Labels | None:
        """Split the selected Labels layer into ``'<name> objects'`` (a new layer); with
        :attr:`inline` the layer is returned, otherwise the split runs in the background."""
        from ..objects.split import OBJECT_STEPS, split_objects_iter

        layer = self._viewer.layers.selection.active
        if not isinstance(layer, Labels) or layer.multiscale:
            show_info("Select a Labels layer (e.g. a result of this dock) to split into objects.")
            return None
        data = np.asarray(layer.data)
        if data.ndim not in (2, 3):
            show_info(
                f"'{layer.name}' has {data.ndim} axes: objects are split in 2D or 3D labels only."
            )
            return None
        added: list[Labels] = []  # the new layer, once the split has returned
        work = partial(split_objects_iter, data, separate_touching=self.separate.value)
        on = {
            "yielded": lambda step: self._step(job.pbar, layer, step),
            "returned": lambda objects: added.append(self._add(layer, objects)),
            "errored": lambda exc: show_error(f"Cannot split '{layer.name}': {exc}"),
            "aborted": lambda: self._status(f"{layer.name}: splitting cancelled, nothing added"),
            "finished": lambda: setattr(self.split_btn, "enabled", True),
        }
        job = Job(
            self._viewer, work, desc=f"Objects of {layer.name}", total=len(OBJECT_STEPS), on=on
        )
        self.split_btn.enabled = False
        job.start(self.inline)
        return added[0] if added else None

    def _step(self, pbar, layer, step: str) -> None:
        self._status(f"{layer.name}: objects · {step}...")
        pbar.update(1)

    def _add(self, layer, objects) -> Labels:
        out = self._viewer.add_labels(
            objects,
            name=f"{layer.name} objects",
            scale=layer.scale,
            translate=layer.translate,
            metadata={
                "inceptseg": {
                    "objects_of": layer.name,
                    "n_objects": int(objects.max()),
                    "separate_touching": self.separate.value,
                }
            },
        )
        self._status(f"{layer.name}: {int(objects.max())} objects")
        return out

    def save_measurements(self, path) -> Path | None:
        """Measure the selected Labels layer's objects as they are now (after any edit),
        keep the table as its ``features`` and write it to ``path`` as CSV (replacing a
        file there: the save dialog has asked); the path, or None when nothing was done.
        The intensity is that of the image the layer was made from, when it is open.
        """
        from ..objects.features import write_features_csv

        layer = self._viewer.layers.selection.active
        if not isinstance(layer, Labels) or layer.multiscale:
            show_info("Select a Labels layer of objects to save its measurements.")
            return None
        meta = layer.metadata.get("inceptseg", {})
        source = self._source_image(meta.get("image"))
        planes = meta.get("params", {}).get("dims") == "2d"
        features = measure(layer.data, source, planes and np.ndim(layer.data) > 2)
        layer.features = features
        try:
            out = write_features_csv(features, path, overwrite=True)
        except (OSError, ValueError) as exc:
            show_error(f"Cannot save the measurements of '{layer.name}': {exc}")
            return None
        self._status(f"{layer.name}: {len(next(iter(features.values())))} objects -> {out}")
        return out

    def _source_image(self, name):
        """The open Image layer of that name, if there is one."""
        found = [lay for lay in self._viewer.layers if lay.name == name]
        return found[0] if found and isinstance(found[0], Image) else None

    def _ask_and_save(self, _=None) -> None:
        from qtpy.QtWidgets import QFileDialog

        layer = self._viewer.layers.selection.active
        name = f"{getattr(layer, 'name', 'objects')}.csv"
        path, _ = QFileDialog.getSaveFileName(None, "Save measurements", name, "CSV (*.csv)")
        if path:
            self.save_measurements(path)
