"""The paired bootstrap behind every "interval above zero" claim."""

from __future__ import annotations

import numpy as np
import pytest

from napari_inceptseg.bench.stats import paired_difference, pooled_difference


def test_a_constant_difference_has_a_zero_width_interval():
    ours = np.linspace(0.2, 0.8, 30)
    d = paired_difference(ours, ours - 0.05)
    assert (
        d.diff == pytest.approx(0.05)
        and d.lo == pytest.approx(0.05)
        and d.hi == pytest.approx(0.05)
    )
    assert d.lo > 0 and d.n == 30


def test_the_interval_matches_the_normal_approximation_and_its_coverage():
    """For differences drawn around 0.02 (sd 0.1, 200 images) the percentile interval is
    close to mean +- 1.96 sd / sqrt(n), and over many data sets it covers the true mean
    about 95 % of the time."""
    rng = np.random.default_rng(1)
    widths, covered = [], 0
    for k in range(100):
        theirs = rng.uniform(0.3, 0.7, 200)
        ours = theirs + rng.normal(0.02, 0.1, 200)
        d = paired_difference(ours, theirs, n_boot=2000, seed=k)
        half = 1.96 * np.std(ours - theirs, ddof=1) / np.sqrt(200)
        widths.append((d.hi - d.lo) / (2 * half))
        covered += d.lo <= 0.02 <= d.hi
    assert 0.9 < np.median(widths) < 1.1
    assert 88 <= covered <= 100


def test_pairs_matter_and_undefined_images_are_left_out():
    """Two methods that differ by a small constant on very different images: unpaired,
    the spread of the images would swamp it; paired, the interval is tight."""
    theirs = np.random.default_rng(2).uniform(0, 1, 50)
    ours = theirs + 0.01
    assert paired_difference(ours, theirs).lo > 0
    with_nan = np.append(ours, np.nan)
    d = paired_difference(with_nan, np.append(theirs, 0.3))
    assert d.n == 50 and d.diff == pytest.approx(0.01)
    with pytest.raises(ValueError, match="one value per image"):
        paired_difference([1, 2], [1])


def test_pooled_ratios_weigh_images_by_their_counts():
    # image 1: 10 segments, 8 found by ours and 4 by theirs; image 2: 1 segment, lost by ours
    d = pooled_difference([8, 0], [10, 1], [4, 1], [10, 1])
    assert d.ours == pytest.approx(8 / 11) and d.theirs == pytest.approx(5 / 11)
    assert d.diff == pytest.approx(3 / 11)
    assert d.lo <= d.diff <= d.hi
