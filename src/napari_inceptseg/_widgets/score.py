"""The "Score against ground truth" dock widget: a live table of scores."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from magicgui.widgets import ComboBox, Container, Label, LineEdit, PushButton, Table
from napari.layers import Labels
from napari.utils.notifications import show_info
from qtpy.QtCore import QTimer

from ..scoring.metrics import matched_labels, score
from ..scoring.objects import dsb_scores
from .layers import layer_choices

if TYPE_CHECKING:  # pragma: no cover
    import napari

MATCHING = [("one-to-one (Hungarian)", "hungarian"), ("many-to-one (majority)", "majority")]
_LAYER_EVENTS = ("data", "paint", "labels_update")
#: an empty table with its one column (a dict without "index" would be read as two columns)
_EMPTY = {"data": [], "index": [], "columns": ["value"]}


#: the table's rows: a short name (the dock is narrow) and the score's key
_ROWS = (
    ("mIoU", "miou"),
    ("accuracy", "accuracy"),
    ("NMI", "nmi"),
    ("homogeneity", "homogeneity"),
    ("kim mIoU", "kim_miou"),
    ("covering", "covering"),
    ("Rand index", "pri"),
    ("VoI (bits)", "voi"),
    ("clusters", "n_clusters"),
    ("regions", "n_regions"),
    ("classes", "n_classes"),
)
#: what each name means (the row's tooltip)
_MEANING = {
    "mIoU": "mean IoU over the ground-truth classes, clusters matched to classes",
    "accuracy": "pixel accuracy after matching clusters to classes",
    "NMI": "normalised mutual information (arithmetic)",
    "homogeneity": "how much each cluster holds one class only",
    "kim mIoU": "Kim et al.'s mIoU: each ground-truth segment's best IoU with a region, averaged",
    "covering": "segmentation covering: the same best IoUs, weighted by segment area",
    "Rand index": "Rand index (BSDS formula): pairs of pixels grouped alike in both",
    "VoI (bits)": "variation of information in bits: lower is better",
    "clusters": "labels in the prediction",
    "regions": "connected regions of the prediction",
    "classes": "labels in the ground truth",
    "objects": "predicted objects: labels other than 0 (or the border's label, and its pieces)",
    "true objects": "objects of the ground truth: its labels other than 0",
    "DSB mAP": "mean over IoU .50-.95 of TP / (TP + FP + FN): the DSB2018 score",
    "F1 @ .5": "F1 of objects matched at IoU above 0.5",
}


def _object_rows(pred, gt, ignore: int | None) -> list:
    """The object rows, when the ground truth has a background (0) and nothing is ignored:
    the objects counted on both sides, and the DSB2018 scores (shown first when the
    prediction has a background too: objects on a background).
    """
    if ignore is not None or not (gt == 0).any():
        return []
    d = dsb_scores(pred, gt)
    rows = [("objects", d["n_predicted"]), ("true objects", d["n_objects"])]
    return rows + [("DSB mAP", d["map"]), ("F1 @ .5", d["f1_50"])]


def parse_ignore(text: str) -> int | None:
    """'' or 'none' -> None; an integer string -> that integer; else ValueError."""
    text = (text or "").strip().lower()
    if text in ("", "none"):
        return None
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"ignore label must be 'none' or an integer, got {text!r}") from None


class ScoreWidget(Container):
    """Compare a predicted Labels layer with a ground-truth Labels layer."""

    def __init__(self, viewer: napari.viewer.Viewer):
        super().__init__()
        self._viewer = viewer
        self._watched: list[Any] = []
        self.result: dict[str, Any] | None = None
        self._build_controls()
        self._connect(viewer)
        self._guess_layers()
        self._rewatch()

    def _build_controls(self) -> None:
        self._pred = ComboBox(
            label="prediction",
            choices=self._labels_choices,
            nullable=True,
            tooltip="Labels layer to score (e.g. the clusters).",
        )
        self._gt = ComboBox(
            label="ground truth",
            choices=self._labels_choices,
            nullable=True,
            tooltip="Labels layer with the true classes, same shape.",
        )
        self._ignore = LineEdit(
            label="ignore label",
            value="none",
            tooltip="Ground-truth value to leave out of the scores: 'none', 0, 255 or any integer.",
        )
        self._matching = ComboBox(
            label="matching",
            choices=MATCHING,
            value="hungarian",
            tooltip="One-to-one: each class gets at most one cluster (Hungarian). "
            "Many-to-one: each cluster goes to its majority class.",
        )
        self._table = Table(value=_EMPTY)
        self._table.read_only = True
        self._table.min_height = 260
        self._copy_btn = PushButton(text="Copy table as CSV")
        self._matched_btn = PushButton(
            text="Add matched layer",
            tooltip="A Labels layer in which each cluster carries the id of its matched "
            "class, so colours correspond.",
        )
        self._status = Label(value="")
        self.extend(
            [
                self._pred,
                self._gt,
                self._ignore,
                self._matching,
                self._table,
                Container(
                    widgets=[self._copy_btn, self._matched_btn], layout="horizontal", labels=False
                ),
                self._status,
            ]
        )

    def _connect(self, viewer) -> None:
        # debounce: painting emits many events; score once the burst is over
        self._timer = QTimer()
        self._timer.setSingleShot(True)
        self._timer.setInterval(100)
        self._timer.timeout.connect(self.update_scores)

        for w in (self._pred, self._gt):
            w.changed.connect(self._rewatch)
        self._ignore.changed.connect(self.update_scores)
        self._matching.changed.connect(self.update_scores)
        self._copy_btn.changed.connect(self.copy_csv)
        self._matched_btn.changed.connect(self.add_matched_layer)
        for ev in (viewer.layers.events.inserted, viewer.layers.events.removed):
            ev.connect(lambda e=None: self.reset_choices())

    def _labels_choices(self, _widget=None):
        return layer_choices(self._viewer.layers, Labels)

    def _guess_layers(self) -> None:
        """Preselect a layer named like ground truth for ``gt`` and another for ``pred``."""
        layers = [v for _, v in self._labels_choices()]
        truth = [
            lay for lay in layers if any(k in lay.name.lower() for k in ("truth", "gt", "annot"))
        ]
        if truth:
            self._gt.value = truth[0]
            others = [lay for lay in layers if lay is not truth[0]]
            if others:
                self._pred.value = others[-1]

    def _rewatch(self, _=None) -> None:
        for layer in self._watched:
            for name in _LAYER_EVENTS:
                getattr(layer.events, name).disconnect(self._schedule)
        self._watched = [
            lay
            for lay in {
                id(lay): lay for lay in (self._pred.value, self._gt.value) if lay is not None
            }.values()
        ]
        for layer in self._watched:
            for name in _LAYER_EVENTS:
                getattr(layer.events, name).connect(self._schedule)
        self.update_scores()

    def _schedule(self, event=None) -> None:
        self._timer.start()

    def update_scores(self, _=None) -> dict[str, Any] | None:
        """Recompute the table now; returns the score dict (None if not possible)."""
        pred, gt = self._pred.value, self._gt.value
        self.result = None
        if pred is None or gt is None:
            self._show_message("Choose a prediction and a ground-truth Labels layer.")
            return None
        if pred.data.shape != gt.data.shape:
            self._show_message(
                f"'{pred.name}' {pred.data.shape} and '{gt.name}' {gt.data.shape} differ in "
                "shape: pick layers of the same image."
            )
            return None
        try:
            s = score(
                pred.data,
                gt.data,
                ignore_index=parse_ignore(self._ignore.value),
                matching=self._matching.value,
            )
        except ValueError as exc:
            self._show_message(str(exc))
            return None
        objects = _object_rows(pred.data, gt.data, parse_ignore(self._ignore.value))
        rows = [(name, s[key]) for name, key in _ROWS]
        rows = objects + rows if (pred.data == 0).any() else rows + objects  # objects first
        rows += [(f"IoU class {c}", v) for c, v in s["per_class_iou"].items()]
        self._table.value = {
            "data": [[f"{v:.3f}" if isinstance(v, float) else str(v)] for _, v in rows],
            "index": [name for name, _ in rows],
            "columns": ["value"],
        }
        self._fit_columns()
        self._status.value = f"{s['n_pixels']} pixels scored, {s['matching']} matching"
        self.result = s
        return s

    def _fit_columns(self) -> None:
        """Names and values readable at any dock width: names as wide as the longest, the
        values column as wide as its widest value (at least), each name's meaning in its tooltip."""
        from qtpy.QtWidgets import QHeaderView

        table = self._table.native
        table.verticalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        table.horizontalHeader().setStretchLastSection(True)
        table.resizeColumnsToContents()
        for row in range(table.rowCount()):
            item = table.verticalHeaderItem(row)
            if item is not None:
                item.setToolTip(
                    _MEANING.get(
                        item.text(), "IoU of this ground-truth class with its matched cluster"
                    )
                )

    def _show_message(self, text: str) -> None:
        self._table.value = _EMPTY
        self._status.value = text

    def table_csv(self) -> str:
        lines = ["metric,value"]
        for name, row in zip(self._table.row_headers, self._table.data, strict=False):
            lines.append(f"{name},{row[0]}")
        return "\n".join(lines) + "\n"

    def copy_csv(self, _=None) -> None:
        from qtpy.QtWidgets import QApplication

        QApplication.clipboard().setText(self.table_csv())
        show_info("Scores copied to the clipboard as CSV.")

    def add_matched_layer(self, _=None):
        pred, gt = self._pred.value, self._gt.value
        if self.update_scores() is None:
            return None
        data = matched_labels(
            pred.data,
            gt.data,
            ignore_index=parse_ignore(self._ignore.value),
            matching=self._matching.value,
        )
        layer = self._viewer.add_labels(
            data,
            name=f"{pred.name} matched",
            scale=pred.scale,
            translate=pred.translate,
            affine=pred.affine.affine_matrix,
            metadata={"matched_to": gt.name, "matching": self._matching.value},
        )
        if hasattr(gt, "colormap"):
            layer.colormap = gt.colormap
        return layer
