"""The state behind the dock's "Detail" slider, free of Qt and napari: which result
layer a region hierarchy belongs to, and whether that layer still shows the hierarchy's
last cut, so that an edited layer is never overwritten.

An edit is seen by the layer's own signals (napari's ``paint``, ``labels_update`` and
``data`` events: the brush, the fill, undo, a new array), and, for code that changes
the array in place and then refreshes the layer, by a digest of the labels last put
there (the model keeps no copy of them, and never shares an array it compares).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np

#: the layer's events that mean its labels were changed
EDIT_EVENTS = ("paint", "labels_update", "data")


def detail_to_level(detail: float) -> float:
    """The slider shows detail (1: the finest regions, 0: one region); the hierarchy is
    cut at a level (0: the finest regions, 1: one region).
    """
    return 1.0 - float(detail)


def labels_digest(data) -> str:
    """A digest of a label array's shape, type and values."""
    array = np.ascontiguousarray(np.asarray(data))
    digest = hashlib.blake2b(repr((array.shape, array.dtype.str)).encode(), digest_size=16)
    digest.update(array.view(np.uint8).reshape(-1) if array.size else b"")
    return digest.hexdigest()


@dataclass
class DetailModel:
    """A hierarchy and the Labels layer (anything with ``.data``; its ``.events``, when
    it has them, are followed) that shows one of its cuts.
    """

    hierarchy: Any = None
    layer: Any = None
    level: float = 0.0
    _digest: str | None = field(default=None, repr=False)
    _edited: bool = field(default=False, repr=False)
    _writing: bool = field(default=False, repr=False)

    @property
    def active(self) -> bool:
        """Whether a result's hierarchy and its labels layer are followed."""
        return self.hierarchy is not None and self.layer is not None

    def attach(self, layer, hierarchy, level: float) -> None:
        """``layer`` now shows ``hierarchy`` cut at ``level`` (a fresh result)."""
        self._follow(None)
        self.hierarchy, self.layer, self.level = hierarchy, layer, float(level)
        self._digest, self._edited = labels_digest(layer.data), False
        self._follow(layer)

    def detach(self) -> None:
        """Stop following the layer, and forget the hierarchy."""
        self._follow(None)
        self.hierarchy = self.layer = self._digest = None

    def edited(self) -> bool:
        """Whether the layer's labels were changed since the cut last put there
        (painted, filled, erased, undone, replaced, or changed in place).
        """
        return self._edited or labels_digest(self.layer.data) != self._digest

    def n_regions(self, level: float) -> int:
        """The number of regions of the cut at ``level``."""
        return self.hierarchy.n_regions(level)

    def recut(self, level: float):
        """The cut at ``level``, and where it went: ``("replace", labels)`` when the
        layer still showed the last cut (the labels are now in it), ``("new", labels)``
        when it was edited and is left as it is (the caller adds a new layer and then
        calls :meth:`attach`).
        """
        labels = self.hierarchy.cut(level)
        if self.edited():
            return "new", labels
        self._writing = True
        try:
            self.layer.data = labels
        finally:
            self._writing = False
        self.level, self._digest = float(level), labels_digest(labels)
        return "replace", labels

    def _on_edit(self, event=None) -> None:
        if not self._writing:
            self._edited = True

    def _follow(self, layer) -> None:
        """Listen to ``layer``'s edit events (None: stop listening to the current one)."""
        target = self.layer if layer is None else layer
        events = getattr(target, "events", None)
        for name in EDIT_EVENTS:
            emitter = getattr(events, name, None)
            if emitter is None:
                continue
            if layer is None:
                emitter.disconnect(self._on_edit)
            else:
                emitter.connect(self._on_edit)
