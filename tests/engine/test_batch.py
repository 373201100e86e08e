"""Several images side by side give exactly what running them one by one gives."""

from __future__ import annotations

import numpy as np
import pytest

from napari_inceptseg import segment
from napari_inceptseg.engine.workflow.batch import map_side_by_side, segment_batch
from napari_inceptseg.sample_data import synthetic_regions

RUNS = {
    "default": dict(preset="default"),
    "paper-vanilla": dict(preset="paper-vanilla", max_iter=12, n_channels=24),
    "paper-inception": dict(preset="paper-inception", max_iter=4, n_channels=16),
}


@pytest.fixture(scope="module")
def images():
    # different sizes and contents, so that each run stops at its own iteration
    return [
        synthetic_regions(shape, n_regions=2 + k % 3, seed=k)[0]
        for k, shape in enumerate([(40, 56), (48, 40), (40, 56), (36, 44)])
    ]


@pytest.mark.parametrize("method", list(RUNS))
def test_side_by_side_equals_one_by_one(images, method):
    kw = dict(RUNS[method], device="cpu")
    seeds = [11, 5, 0, 7]
    together = segment_batch(images, batch=3, seeds=seeds, **kw)
    for image, seed, res in zip(images, seeds, together, strict=False):
        alone = segment(image, seed=seed, **kw)
        np.testing.assert_array_equal(res.labels, alone.labels)
        assert res.n_iter == alone.n_iter and res.stop_reason == alone.stop_reason
        assert res.history == alone.history and res.seed == seed


def test_results_keep_their_order_and_errors_their_index():
    def fn(k):
        if k == 2:
            raise ValueError("bad image 2")
        return k * k

    got = sorted(map_side_by_side(fn, range(5), batch=2, device="cpu"), key=lambda t: t[0])
    assert [(k, r) for k, r, e in got if e is None] == [(0, 0), (1, 1), (3, 9), (4, 16)]
    (err,) = [e for _, _, e in got if e is not None]
    assert str(err) == "bad image 2"
    with pytest.raises(ValueError, match="seeds for"):
        segment_batch([np.zeros((8, 8))] * 2, seeds=[1], device="cpu")


def test_bad_batch_sizes_and_bad_images_are_named_before_any_run(images, monkeypatch):
    from napari_inceptseg.engine.workflow import batch as loop  # where batch finds segment

    for bad in (-1, 1.5, True, "2"):
        with pytest.raises(ValueError, match="batch must be a whole number >= 0"):
            segment_batch(images[:2], batch=bad, device="cpu")
    monkeypatch.setattr(loop, "segment", lambda *a, **k: pytest.fail("a run started"))
    with pytest.raises(
        ValueError, match=r"image 1: the image is 3 x 3 .*image 3: .*no image was segmented"
    ):
        segment_batch(
            [images[0], np.zeros((3, 3)), images[1], np.zeros((4, 5, 6, 7))], batch=2, device="cpu"
        )


def test_a_failed_run_keeps_the_others_results_with_each_error_by_index(images, monkeypatch):
    from napari_inceptseg import SegmentationError
    from napari_inceptseg.engine.workflow import batch as loop  # where batch finds segment
    from napari_inceptseg.engine.workflow.batch import BatchError

    real = loop.segment

    def diverges_on_image_1(image, **kw):  # as a diverged run fails
        if image is images[1]:
            raise SegmentationError("the optimisation diverged")
        return real(image, **kw)

    monkeypatch.setattr(loop, "segment", diverges_on_image_1)
    kw = dict(preset="paper-vanilla", max_iter=6, n_channels=8, device="cpu")
    with pytest.raises(BatchError) as info:
        segment_batch(images[:3], batch=2, seeds=[1, 2, 3], **kw)
    err = info.value
    assert set(err.errors) == {1} and "image 1: the optimisation diverged" in str(err)
    assert err.results[1] is None
    for k in (0, 2):
        np.testing.assert_array_equal(
            err.results[k].labels, real(images[k], seed=k + 1, **kw).labels
        )


def test_an_interrupted_batch_stops_its_runs_at_their_next_step_and_keeps_what_finished():
    import os
    import signal
    import threading
    import time

    from napari_inceptseg.engine.workflow.progress import RunInterrupted, run_to_end

    started, stopped = [], []

    def endless(k):
        started.append(k)
        try:
            while True:
                time.sleep(0.01)
                yield k
        except KeyboardInterrupt:
            stopped.append(k)
            raise RunInterrupted() from None

    def fn(k):
        return k if k == 0 else run_to_end(endless(k))

    def interrupt_once_both_run():  # Ctrl+C once runs 1 and 2 are under way
        while len(started) < 2:
            time.sleep(0.01)
        os.kill(os.getpid(), signal.SIGINT)

    got = []
    # Ctrl+C as a terminal delivers it (a library imported by another test module may
    # have installed a SIGINT handler of its own)
    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        threading.Thread(target=interrupt_once_both_run, daemon=True).start()
        t0 = time.monotonic()
        with pytest.raises(KeyboardInterrupt):
            for k, res, exc in map_side_by_side(fn, range(4), batch=2, device="cpu"):
                got.append((k, res, exc))
    finally:
        signal.signal(signal.SIGINT, before)
    assert time.monotonic() - t0 < 30  # (the runs would never end by themselves)
    assert got == [(0, 0, None)] and sorted(stopped) == [1, 2]
    assert not [t for t in threading.enumerate() if t.name.startswith("inceptseg-batch")]


def test_an_interrupted_command_stops_runs_whose_generator_was_left_open():
    """A run under way in a generator nobody closed (an interruption that landed outside
    it) stops once the command calls stop_runs_under_way, so the process can exit."""
    import threading
    import time

    from napari_inceptseg.engine.workflow.batch import stop_runs_under_way
    from napari_inceptseg.engine.workflow.progress import RunInterrupted, run_to_end

    started, stopped = threading.Event(), threading.Event()

    def endless(k):
        started.set()
        try:
            while True:
                time.sleep(0.01)
                yield k
        except KeyboardInterrupt:
            stopped.set()
            raise RunInterrupted() from None

    def fn(k):
        return k if k == 0 else run_to_end(endless(k))

    runs = map_side_by_side(fn, range(2), batch=2, device="cpu")
    assert next(runs) == (0, 0, None)  # run 1 is under way; the generator is left open
    assert started.wait(30)
    stop_runs_under_way()
    assert stopped.wait(30)  # (it would never end by itself)
    runs.close()
    assert not [t for t in threading.enumerate() if t.name.startswith("inceptseg-batch")]
