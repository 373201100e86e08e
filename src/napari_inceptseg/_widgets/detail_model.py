"""The state behind the dock's "Detail" slider, free of Qt and napari: which result
layer a region hierarchy belongs to, and whether that layer still holds the hierarchy's
last cut (so that an edited layer is never overwritten)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


def detail_to_level(detail: float) -> float:
    """The slider shows detail (1: the finest regions, 0: one region); the hierarchy is
    cut at a level (0: the finest regions, 1: one region)."""
    return 1.0 - float(detail)


@dataclass
class DetailModel:
    """A hierarchy and the Labels layer (anything with ``.data``) that shows one of its cuts."""

    hierarchy: Any = None
    layer: Any = None
    level: float = 0.0
    _shown: np.ndarray | None = field(default=None, repr=False)

    @property
    def active(self) -> bool:
        return self.hierarchy is not None and self.layer is not None

    def attach(self, layer, hierarchy, level: float) -> None:
        """``layer`` now shows ``hierarchy`` cut at ``level`` (a fresh result)."""
        self.hierarchy, self.layer, self.level = hierarchy, layer, float(level)
        self._shown = np.array(layer.data, copy=True)

    def detach(self) -> None:
        self.hierarchy = self.layer = self._shown = None

    def edited(self) -> bool:
        """Whether the layer's labels differ from the cut last put there (painted,
        filled, erased or replaced by hand)."""
        data = np.asarray(self.layer.data)
        return (
            self._shown is None
            or data.shape != self._shown.shape
            or not np.array_equal(data, self._shown)
        )

    def n_regions(self, level: float) -> int:
        return self.hierarchy.n_regions(level)

    def recut(self, level: float):
        """The cut at ``level`` and where it goes: ``("replace", labels)`` when the layer
        still shows the last cut (the caller puts ``labels`` in it), ``("new", labels)``
        when it was edited (the caller adds a new layer and then calls :meth:`attach`)."""
        labels = self.hierarchy.cut(level)
        if self.edited():
            return "new", labels
        self.level = float(level)
        self._shown = labels
        return "replace", labels
