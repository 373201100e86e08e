"""Paired comparisons of two methods over the same images: the mean difference and its
95 % bootstrap interval (numpy only). ``benchmarks/compare_runs.py`` and the quality
tests read their intervals from here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

#: resamples of the bootstrap, and the interval's coverage
N_BOOT = 10_000
LEVEL = 0.95


@dataclass(frozen=True)
class Difference:
    """``ours - theirs`` over ``n`` images, with a bootstrap interval ``(lo, hi)``."""

    ours: float
    theirs: float
    diff: float
    lo: float
    hi: float
    n: int


def _indices(n: int, n_boot: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, n, size=(n_boot, n))


def _interval(boot: np.ndarray, level: float):
    tail = 100 * (1 - level) / 2
    lo, hi = np.percentile(boot, [tail, 100 - tail])
    return float(lo), float(hi)


def paired_difference(
    ours: Sequence[float],
    theirs: Sequence[float],
    *,
    n_boot: int = N_BOOT,
    seed: int = 0,
    level: float = LEVEL,
) -> Difference:
    """The mean of ``ours - theirs`` (one value each per image, in the same order) and
    its percentile bootstrap interval: images are drawn with replacement, each keeping
    its pair. Images where either value is undefined (NaN) are left out.

    Examples
    --------
    >>> d = paired_difference([0.5, 0.6, 0.7], [0.4, 0.5, 0.6])
    >>> round(d.diff, 3), round(d.lo, 3), round(d.hi, 3)
    (0.1, 0.1, 0.1)
    """
    a, b = np.asarray(ours, dtype=np.float64), np.asarray(theirs, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(
            f"give one value per image for both methods, got shapes {a.shape} and {b.shape}"
        )
    keep = np.isfinite(a) & np.isfinite(b)
    a, b = a[keep], b[keep]
    if a.size == 0:
        raise ValueError("no image has a defined value for both methods")
    d = a - b
    boot = d[_indices(d.size, n_boot, seed)].mean(1)
    return Difference(
        float(a.mean()), float(b.mean()), float(d.mean()), *_interval(boot, level), int(d.size)
    )


def pooled_difference(
    ours_sum: Sequence[float],
    ours_count: Sequence[float],
    theirs_sum: Sequence[float],
    theirs_count: Sequence[float],
    *,
    n_boot: int = N_BOOT,
    seed: int = 0,
    level: float = LEVEL,
) -> Difference:
    """The difference of two pooled ratios (sum over images / count over images, e.g.
    Kim et al.'s pooled mIoU: every segment of every image together) and its bootstrap
    interval, which draws images with replacement and recomputes both pools.

    Examples
    --------
    >>> d = pooled_difference([3, 1], [4, 1], [2, 1], [4, 1])
    >>> round(d.ours, 3), round(d.theirs, 3), round(d.diff, 3)
    (0.8, 0.6, 0.2)
    """
    arrays = [
        np.asarray(v, dtype=np.float64) for v in (ours_sum, ours_count, theirs_sum, theirs_count)
    ]
    if len({a.shape for a in arrays}) != 1 or arrays[0].ndim != 1 or arrays[0].size == 0:
        raise ValueError("give one sum and one count per image for both methods")
    sa, na, sb, nb = arrays
    idx = _indices(sa.size, n_boot, seed)
    boot = sa[idx].sum(1) / na[idx].sum(1) - sb[idx].sum(1) / nb[idx].sum(1)
    va, vb = sa.sum() / na.sum(), sb.sum() / nb.sum()
    return Difference(float(va), float(vb), float(va - vb), *_interval(boot, level), int(sa.size))
