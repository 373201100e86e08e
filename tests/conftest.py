"""Shared fixtures. Expensive segmentations run once per session."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess

import numpy as np
import pytest

from helpers import PROCESS_DEADLINE, need_shared_data
from napari_inceptseg import segment
from napari_inceptseg.sample_data import synthetic_regions

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
        arch: [
            segment(image, preset=f"paper-{arch}", max_iter=QUALITY_ITERS, seed=s, device="cpu")
            for s in QUALITY_SEEDS
        ]
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


@pytest.fixture
def overflowing_steps(monkeypatch):
    """Optimisation steps that overflow, as a learning rate of 1e30 would (far above the
    largest that SegmentParams accepts): every run in the test diverges after its first
    step or so."""
    from napari_inceptseg.engine.modeling import optim

    class Overflowing(optim.MomentumSGD):
        def __init__(self, params, lr: float, momentum: float = 0.9):
            super().__init__(params, lr=1e30, momentum=momentum)

    monkeypatch.setattr(optim, "MomentumSGD", Overflowing)


@pytest.fixture(scope="session")
def shared_data():
    return need_shared_data()


@pytest.fixture
def spawn():
    """``spawn(cmd, **popen_kw)`` starts a process in a session of its own; whatever
    the test's outcome, the process and its children are killed when it ends."""
    procs = []

    def start(cmd, **kw):
        proc = subprocess.Popen(cmd, start_new_session=True, **kw)
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=PROCESS_DEADLINE)
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


@pytest.fixture(autouse=True)
def _own_dock_settings(tmp_path_factory, monkeypatch):
    """Each test's docks read and write their settings in a folder of their own, never
    the user's (the dock remembers its settings between sessions)."""
    monkeypatch.setenv("NAPARI_INCEPTSEG_CONFIG_DIR", str(tmp_path_factory.mktemp("config")))
