"""The segmentation dock's controls: one widget per engine parameter, which of them
the dock shows up front, and the sections it folds away (magicgui only, no torch)."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

from magicgui.widgets import CheckBox, ComboBox, Container, FloatSpinBox, Label, PushButton, SpinBox

from ..params import SegmentParams

#: the engine parameters the dock shows up front; every other one is under "Advanced"
BASIC_PARAMS = ("objects", "n_clusters")

#: widget label of each numeric engine parameter (its range is SegmentParams')
_NUMERIC = {
    "n_channels": "channels (max clusters)",
    "n_conv": "depth (n_conv)",
    "max_iter": "max iterations",
    "min_labels": "min clusters",
    "lr": "learning rate",
    "w_sim": "similarity weight",
    "w_con": "continuity weight",
    "w_scr": "scribble weight",
    "tile_size": "tile size (0: auto)",
    "memory_gb": "memory limit GB (0: free)",
    "coarse_scale": "coarse scale",
    "coarse_iter": "coarse steps",
    "refine_iter": "refine steps",
    "train_pixels": "training pixels (0: all)",
    "merge_threshold": "merge threshold",
    "level": "hierarchy level (0: finest)",
    "n_clusters": "at most N labels (0: any)",
}
_CHOICE_LABELS = {
    "arch": "architecture",
    "dims": "dimensions",
    "init": "initialisation",
    "precision": "precision",
    "color_space": "colour space",
}
_BOOL_LABELS = {"regions": "connected regions", "objects": "objects on a background (nuclei)"}


def _param_widgets() -> dict:
    """One magicgui widget per engine parameter, with the default method's value and its help."""
    out = {}
    for f in dataclasses.fields(SegmentParams):
        help_ = f.metadata["help"]
        if f.name in _BOOL_LABELS:
            out[f.name] = CheckBox(text=_BOOL_LABELS[f.name], value=f.default, tooltip=help_)
        elif "choices" in f.metadata:
            out[f.name] = ComboBox(
                label=_CHOICE_LABELS[f.name],
                choices=f.metadata["choices"],
                value=f.default,
                tooltip=help_,
            )
        elif f.name in _NUMERIC:
            label, hi = _NUMERIC[f.name], f.metadata["maximum"]
            if str(f.type) == "float":
                out[f.name] = FloatSpinBox(
                    label=label,
                    min=0.0 if f.name != "coarse_scale" else f.metadata["minimum"],
                    max=hi,
                    step={
                        "coarse_scale": 0.05,
                        "memory_gb": 0.5,
                        "merge_threshold": 0.05,
                        "level": 0.005,
                    }.get(f.name, 0.01),
                    value=f.default,
                    tooltip=help_,
                )
            else:
                out[f.name] = SpinBox(
                    label=label, min=f.metadata["minimum"], max=hi, value=f.default, tooltip=help_
                )
    return out


class Section(Container):
    """A titled group that folds away: a toggle button, then its widgets (hidden while folded)."""

    def __init__(self, title: str, widgets: Iterable, open_: bool = False, tooltip: str = ""):
        self._title = title
        self.toggle = PushButton(text="", tooltip=tooltip or f"Show or hide the {title.lower()}.")
        self.body = Container(widgets=list(widgets))
        super().__init__(widgets=[self.toggle, self.body], labels=False)
        self.margins = (0, 0, 0, 0)
        self.toggle.changed.connect(lambda _=None: self.set_open(not self.body.visible))
        self.set_open(open_)

    @property
    def is_open(self) -> bool:
        return self.body.visible

    def set_open(self, value: bool) -> None:
        self.body.visible = bool(value)
        self.toggle.text = f"{'▾' if value else '▸'} {self._title}"


def wrapping_label(value: str = "") -> Label:
    """A Label whose text wraps and never widens the dock (long statuses and errors)."""
    from qtpy.QtWidgets import QSizePolicy

    label = Label(value=value)
    label.native.setWordWrap(True)
    label.native.setSizePolicy(QSizePolicy.Ignored, QSizePolicy.Preferred)
    label.native.setMinimumWidth(50)
    return label


def scrolling_body(outer: Container, widgets: list) -> Container:
    """Put ``widgets`` in a Container inside a vertical scroll area, inside ``outer``.

    napari docks a magicgui widget's ``native`` (its inner widget), which drops the
    scroll area of ``Container(scrollable=True)``; a scroll area inside the docked
    widget stays, so the dock never forces the window taller than the screen."""
    from qtpy.QtCore import Qt
    from qtpy.QtWidgets import QFrame, QScrollArea

    body = Container(widgets=widgets)
    scroll = QScrollArea()
    scroll.setWidgetResizable(True)
    scroll.setFrameShape(QFrame.NoFrame)
    scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarAlwaysOff)
    scroll.setWidget(body.native)
    scroll.setMinimumWidth(body.native.minimumSizeHint().width() + 40)  # room for the scroll bar
    outer.native.layout().addWidget(scroll)
    outer.margins = (0, 0, 0, 0)
    return body
