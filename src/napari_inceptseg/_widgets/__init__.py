"""napari dock widgets (Qt side). The engine never imports from here."""

from .score import ScoreWidget
from .segment import SegmentWidget

__all__ = ["SegmentWidget", "ScoreWidget"]
