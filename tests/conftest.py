"""Shared fixtures. Expensive segmentations run once per session."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from napari_inceptseg import segment
from napari_inceptseg.sample_data import synthetic_regions

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"

#: Quality runs: the issue's protocol (about 128 x 160, sigma 12, 100 iterations).
QUALITY_ITERS = 100


@pytest.fixture(scope="session")
def synthetic():
    """(image, ground truth) of the synthetic sample."""
    return synthetic_regions()


QUALITY_SEEDS = (0, 1, 2)


@pytest.fixture(scope="session")
def quality_runs(synthetic):
    """100-iteration runs of each paper preset on the synthetic sample, one per seed."""
    image, _ = synthetic
    return {
        arch: [segment(image, preset=f"paper-{arch}", max_iter=QUALITY_ITERS, seed=s, device="cpu")
               for s in QUALITY_SEEDS]
        for arch in ("vanilla", "inception")
    }


@pytest.fixture(scope="session")
def small_rgb():
    """A small noisy two-region RGB image for fast engine tests."""
    rng = np.random.default_rng(1)
    img = np.full((24, 30, 3), 40.0)
    img[:, 15:] = (200, 120, 30)
    img += rng.normal(0, 10, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


@pytest.fixture(scope="session")
def shared_data():
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared data folder not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(autouse=True)
def _own_dock_settings(tmp_path_factory, monkeypatch):
    """Each test's docks read and write their settings in a folder of their own, never
    the user's (the dock remembers its settings between sessions)."""
    monkeypatch.setenv("NAPARI_INCEPTSEG_CONFIG_DIR", str(tmp_path_factory.mktemp("config")))
