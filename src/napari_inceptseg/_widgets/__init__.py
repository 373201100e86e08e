"""napari dock widgets (Qt side). The engine never imports from here."""

from ._score import ScoreWidget
from ._segment import SegmentWidget

__all__ = ["SegmentWidget", "ScoreWidget"]
