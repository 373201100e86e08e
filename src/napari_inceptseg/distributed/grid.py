"""The grid a whole-image run analyses a plane on, as a run in memory does: a plane of
more than :data:`~napari_inceptseg.regions.method.ANALYSIS_PIXELS` pixels is analysed on
a copy averaged down to that many (the bins of torch's ``interpolate(mode="area")``),
and its labels are scaled up to the plane by nearest neighbour. A block is a window of
this grid; it reads the plane's pixels under it and averages them down itself.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..engine.machine.plan import training_size
from ..regions.method import ANALYSIS_PIXELS


@dataclass(frozen=True)
class Grid:
    """A plane's Y-X shape (``full``) and the shape it is analysed at (``analysis``)."""

    full: tuple[int, int]
    analysis: tuple[int, int]

    @classmethod
    def of(cls, yx) -> Grid:
        """The grid of a plane of shape ``yx``, as a run in memory chooses it."""
        yx = tuple(int(n) for n in yx)
        return cls(yx, tuple(training_size(yx, ANALYSIS_PIXELS)))

    def span(self, axis: int, lo: int, hi: int) -> tuple[int, int]:
        """The plane's pixels along ``axis`` under the grid's pixels ``lo..hi-1``."""
        n, m = self.full[axis], self.analysis[axis]
        return (lo * n) // m, -(-(hi * n) // m)

    def pooled(self, pixels: np.ndarray, y: tuple[int, int], x: tuple[int, int]) -> np.ndarray:
        """``pixels`` (``(C, Y, X)``, the plane's under the grid's window ``y`` by ``x``:
        :meth:`span`) averaged down to that window (float32).
        """
        if self.full == self.analysis:
            return pixels
        ay, ax = self._area(0, *y), self._area(1, *x)
        out = np.einsum("iy,cyx,jx->cij", ay, pixels.astype(np.float64), ax, optimize=True)
        return np.ascontiguousarray(out, dtype=np.float32)

    def _area(self, axis: int, lo: int, hi: int) -> np.ndarray:
        """The matrix that averages the plane's pixels under grid pixels ``lo..hi-1``."""
        start = self.span(axis, lo, hi)[0]
        out = np.zeros((hi - lo, self.span(axis, lo, hi)[1] - start))
        for row, i in enumerate(range(lo, hi)):
            a, b = self.span(axis, i, i + 1)
            out[row, a - start : b - start] = 1.0 / (b - a)
        return out

    def nearest(self, axis: int, lo: int, hi: int) -> np.ndarray:
        """The grid pixel of each of the plane's pixels ``lo..hi-1`` along ``axis``
        (nearest neighbour, as a run in memory scales its labels up).
        """
        n, m = self.full[axis], self.analysis[axis]
        return (np.arange(lo, hi) * m) // n
