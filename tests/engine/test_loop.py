"""The optimisation loop: stop rule, reproducibility, progress records, devices, quality."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_inceptseg import SegmentParams, score, segment, segment_iter
from napari_inceptseg.engine.machine.runtime import resolve_device
from napari_inceptseg.engine.workflow.progress import run_to_end
from napari_inceptseg.labels import consecutive_labels


def _fast(**kw):
    base = dict(arch="vanilla", n_channels=16, max_iter=5, seed=0, device="cpu")
    base.update(kw)
    return base


# --- quality on known ground truth ----------------------------------------------------


@pytest.mark.parametrize("arch", ["vanilla", "inception"])
def test_quality_on_synthetic_regions(arch, quality_runs, synthetic):
    """4 flat regions + noise (sigma 12), 100 iterations: median over three seeds
    of one-to-one accuracy >= 0.85 and of many-to-one accuracy >= 0.95."""
    _, gt = synthetic
    one = [score(r.labels, gt, matching="hungarian")["accuracy"] for r in quality_runs[arch]]
    many = [score(r.labels, gt, matching="majority")["accuracy"] for r in quality_runs[arch]]
    assert np.median(one) >= 0.85, f"{arch}: one-to-one accuracies {np.round(one, 3)}"
    assert np.median(many) >= 0.95, f"{arch}: many-to-one accuracies {np.round(many, 3)}"
    assert min(many) >= 0.9, f"{arch}: many-to-one accuracies {np.round(many, 3)}"


@pytest.mark.parametrize("arch", ["vanilla", "inception"])
def test_result_record(arch, quality_runs, synthetic):
    image, _ = synthetic
    res = quality_runs[arch][0]
    assert res.labels.shape == image.shape[:2]
    assert res.labels.dtype == np.int32
    ids = np.unique(res.labels)
    assert ids[0] == 1 and np.array_equal(ids, np.arange(1, ids.size + 1))  # 1..K, no 0
    assert res.n_labels == ids.size
    assert 1 <= res.n_iter <= 100 and len(res.history["loss"]) == res.n_iter
    for name in ("loss", "loss_sim", "loss_con", "n_labels"):
        assert len(res.history[name]) == res.n_iter
    # the optimisation actually reduces the number of clusters
    assert res.history["n_labels"][-1] < res.history["n_labels"][0]
    md = res.metadata()
    assert md["params"]["arch"] == arch and md["params"]["seed"] == 0 and md["device"] == "cpu"


# --- the loop -------------------------------------------------------------------------


def test_stops_as_soon_as_few_labels(small_rgb):
    """Replaying a run with min_labels set to a count it reaches must stop exactly at
    the first iteration with that few labels, with the same history up to there."""
    full = segment(small_rgb, **_fast(n_channels=40, max_iter=30, min_labels=1))
    counts = full.history["n_labels"]
    assert counts[-1] < counts[0]
    threshold = counts[-1]
    first = next(i for i, c in enumerate(counts, 1) if c <= threshold)
    res = segment(small_rgb, **_fast(n_channels=40, max_iter=30, min_labels=threshold))
    assert res.stop_reason == "min_labels"
    assert res.n_iter == first
    assert res.history["n_labels"] == counts[:first]
    assert res.history["loss"] == full.history["loss"][:first]


def test_runs_to_max_iter_when_labels_stay(small_rgb):
    res = segment(small_rgb, **_fast(max_iter=3, min_labels=1))
    assert res.n_iter == 3 and res.stop_reason == "max_iter"


def test_same_seed_same_labels(small_rgb):
    a = segment(small_rgb, **_fast(seed=7))
    b = segment(small_rgb, **_fast(seed=7))
    c = segment(small_rgb, **_fast(seed=8))
    assert np.array_equal(a.labels, b.labels)
    assert a.history == b.history
    assert a.history["loss"] != c.history["loss"]


def test_unseeded_run_records_its_seed_and_replays(small_rgb):
    from napari_inceptseg.engine.workflow.inputs import drawn_seed

    a = segment(small_rgb, **_fast(seed=None))
    b = segment(small_rgb, **_fast(seed=a.seed))
    assert np.array_equal(a.labels, b.labels)
    # every drawn seed fits the dock's seed box (a 32-bit signed integer), so it can be typed back
    assert 0 <= a.seed < 2**31 and all(0 <= drawn_seed() < 2**31 for _ in range(2000))


def test_two_threads_with_their_own_seeds_get_their_own_labels(small_rgb, monkeypatch):
    """torch's seed is process-wide; two runs at once (two napari docks) must still each
    get the weights of their own seed, even when building the network is slow."""
    import threading
    import time

    from napari_inceptseg.engine.modeling import networks as _models

    alone = {s: segment(small_rgb, **_fast(seed=s)) for s in (7, 8)}
    build = _models.build_model

    def slow_build(*args, **kw):
        time.sleep(0.2)  # the other thread seeds meanwhile, if nothing stops it
        return build(*args, **kw)

    monkeypatch.setattr(_models, "build_model", slow_build)
    together = {}
    threads = [
        threading.Thread(
            target=lambda s=s: together.update({s: segment(small_rgb, **_fast(seed=s))})
        )
        for s in (7, 8)
    ]
    for t in threads:
        t.start()
        time.sleep(0.05)
    for t in threads:
        t.join()
    for s in (7, 8):
        assert together[s].history == alone[s].history
        np.testing.assert_array_equal(together[s].labels, alone[s].labels)


def test_global_torch_rng_untouched(small_rgb):
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    segment(small_rgb, **_fast())
    assert torch.equal(torch.rand(3), expected)


def test_generator_yields_progress_and_previews(small_rgb):
    gen = segment_iter(small_rgb, preview_every=2, **_fast(max_iter=5, min_labels=1))
    records = []
    every = []
    result = run_to_end(gen, every.append)
    records = [p for p in every if p.stage == "training"]
    assert [p.iteration for p in records] == [1, 2, 3, 4, 5]
    # then one record per stage after training, each at the last iteration
    stages = [p.stage for p in every[len(records) :]]
    assert stages == ["full-resolution pass", "regions", "hierarchy"]
    assert all(p.iteration == 5 for p in every[len(records) :])
    assert all(p.max_iter == 5 for p in records)
    with_preview = [p.iteration for p in records if p.labels is not None]
    assert with_preview == [2, 4, 5]  # every 2nd and the last
    for p in records:
        assert p.loss == pytest.approx(p.loss_sim + p.loss_con, rel=1e-5)  # w_sim = w_con = 1
        if p.labels is not None:
            assert p.labels.shape == small_rgb.shape[:2] and p.labels.min() == 1
            assert p.labels.max() == p.n_labels
    assert result.history["loss"] == [p.loss for p in records]


def test_closing_the_generator_cancels(small_rgb):
    gen = segment_iter(small_rgb, **_fast(max_iter=50, min_labels=1))
    first = next(gen)
    gen.close()
    assert first.iteration == 1
    with pytest.raises(StopIteration):
        next(gen)


def test_loss_weights_apply(small_rgb):
    gen = segment_iter(small_rgb, **_fast(max_iter=1, w_sim=2.0, w_con=0.5))
    p = next(gen)
    assert p.loss == pytest.approx(2.0 * p.loss_sim + 0.5 * p.loss_con, rel=1e-5)


def test_params_object_and_keyword_override(small_rgb):
    params = SegmentParams(**_fast(max_iter=2, min_labels=1))
    res = run_to_end(segment_iter(small_rgb, params=params, max_iter=3))
    assert res.n_iter == 3 and res.params.max_iter == 3


def test_consecutive_labels():
    raw = np.array([[5, 5, 9], [0, 9, 5]])
    assert consecutive_labels(raw).tolist() == [[2, 2, 3], [1, 3, 2]]


# --- devices --------------------------------------------------------------------------


def test_auto_device_is_available():
    dev = resolve_device("auto")
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    if (
        not torch.cuda.is_available()
        and getattr(torch.backends, "mps", None)
        and torch.backends.mps.is_available()
    ):
        expected = "mps"
    assert dev.type == expected


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA present")
def test_absent_cuda_is_a_clear_error(small_rgb):
    with pytest.raises(ValueError, match="not available here.*cpu"):
        segment(small_rgb, **_fast(device="cuda"))


@pytest.mark.parametrize("device", ["gpu", "cuda:x", "tpu"])
def test_unknown_device_is_a_clear_error(device, small_rgb):
    with pytest.raises(ValueError, match="unknown device"):
        segment(small_rgb, **_fast(device=device))


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_run_matches_quality(synthetic):
    image, gt = synthetic
    res = segment(image, arch="inception", max_iter=100, seed=0, device="cuda")
    assert res.device.startswith("cuda")
    assert score(res.labels, gt, matching="majority")["accuracy"] >= 0.95


def test_reading_back_every_few_iterations_changes_only_when_the_stop_is_seen(small_rgb):
    """What a GPU run does (sync_every > 1), exercised on the CPU."""
    full = segment(small_rgb, **_fast(n_channels=40, max_iter=30, min_labels=1))
    threshold = full.history["n_labels"][-1]
    kw = _fast(n_channels=40, max_iter=30, min_labels=threshold)
    ref = run_to_end(segment_iter(small_rgb, **kw))
    res = run_to_end(segment_iter(small_rgb, sync_every=4, **kw))
    assert ref.stop_reason == "min_labels"
    # the stop is noticed at the next read-back: at most sync_every - 1 steps later
    assert ref.n_iter <= res.n_iter <= min(ref.n_iter + 3, 30)
    assert res.n_iter % 4 == 0 or res.n_iter == 30
    assert res.history["loss"][: ref.n_iter] == ref.history["loss"]
    assert len(res.history["loss"]) == res.n_iter


def test_sync_every_must_be_positive(small_rgb):
    with pytest.raises(ValueError, match="sync_every"):
        next(segment_iter(small_rgb, max_iter=2, sync_every=0))


# --- coarse-to-fine ----------------------------------------------------------------------


def test_coarse_to_fine_quality_on_synthetic_regions(synthetic):
    """Coarse stage at 1/2 per side, then full resolution: as good as the full-resolution runs."""
    image, gt = synthetic
    accs = []
    for seed in (0, 1, 2):
        res = segment(
            image,
            arch="vanilla",
            coarse_scale=0.5,
            coarse_iter=100,
            refine_iter=3,
            seed=seed,
            device="cpu",
        )
        assert res.labels.shape == gt.shape
        accs.append(score(res.labels, gt, matching="hungarian")["accuracy"])
    assert np.median(accs) >= 0.85, accs


def test_coarse_to_fine_progress_and_record(small_rgb):
    h, w = small_rgb.shape[:2]
    params = SegmentParams(**_fast(coarse_scale=0.5, coarse_iter=4, refine_iter=2, min_labels=1))
    assert params.total_iter == 6
    every = []
    res = run_to_end(segment_iter(small_rgb, params=params, preview_every=1), every.append)
    records = [p for p in every if p.stage == "training"]
    assert [p.iteration for p in records] == [1, 2, 3, 4, 5, 6]
    assert [p.stage for p in every[len(records) :]] == [
        "full-resolution pass",
        "regions",
        "hierarchy",
    ]
    assert all(p.max_iter == 6 for p in records)
    # previews of the coarse stage are upscaled to the image's size
    assert all(p.labels.shape == (h, w) for p in records)
    assert res.n_iter == 6 and res.stop_reason == "refine_iter"
    assert res.labels.shape == (h, w)
    meta = res.metadata()["params"]
    assert meta["coarse_scale"] == 0.5 and meta["refine_iter"] == 2


def test_coarse_stage_is_capped_by_max_iter(small_rgb):
    params = SegmentParams(
        **_fast(coarse_scale=0.5, coarse_iter=50, max_iter=3, refine_iter=1, min_labels=1)
    )
    assert params.total_iter == 4
    assert segment(small_rgb, **{k: v for k, v in params.to_dict().items()}).n_iter == 4


@pytest.mark.parametrize("bad", [0.0, 1.5, -0.25])
def test_coarse_scale_must_be_a_fraction(bad):
    with pytest.raises(ValueError, match="coarse_scale"):
        SegmentParams(coarse_scale=bad)


def test_bfloat16_mixed_precision_segments(small_rgb):
    """Autocast on the CPU (the GPU path is the same code): two regions still come out."""
    res = segment(small_rgb, **_fast(max_iter=30, min_labels=1, precision="bfloat16"))
    ref = segment(small_rgb, **_fast(max_iter=30, min_labels=1))
    gt = np.zeros(small_rgb.shape[:2], dtype=int)
    gt[:, 15:] = 1
    acc = score(res.labels, gt, matching="majority")["accuracy"]
    assert acc >= 0.9 and acc >= score(ref.labels, gt, matching="majority")["accuracy"] - 0.03
    assert res.history["loss"][-1] < 0.5 * res.history["loss"][0]
    assert res.metadata()["params"]["precision"] == "bfloat16"


def test_unknown_precision_is_a_clear_error():
    with pytest.raises(ValueError, match="precision"):
        SegmentParams(precision="float8")


def test_a_diverging_run_stops_with_a_clear_error(overflowing_steps):
    from napari_inceptseg.engine.workflow.progress import SegmentationError

    image = np.random.default_rng(0).integers(0, 255, (32, 40, 3), dtype=np.uint8)
    with pytest.raises(SegmentationError, match="diverged.*lower learning rate") as info:
        segment(image, seed=0, max_iter=10)
    # the last good clusters are kept: those of the last iteration whose loss was finite
    exc = info.value
    assert exc.iteration is not None and exc.iteration >= 1
    assert f"at iteration {exc.iteration + 1};" in str(exc)  # on the CPU every step is read back
    assert exc.labels.shape == image.shape[:2] and exc.labels.min() >= 1
    # they are that iteration's clusters, as its preview showed them
    previews = {}
    with pytest.raises(SegmentationError):
        for p in segment_iter(image, seed=0, max_iter=10, preview_every=1):
            previews[p.iteration] = p.labels
    np.testing.assert_array_equal(exc.labels, previews[exc.iteration])


def test_ctrl_c_hands_over_the_last_good_clusters(small_rgb):
    """Ctrl+C raises RunInterrupted (a KeyboardInterrupt) carrying the clusters so far."""
    from napari_inceptseg import RunInterrupted

    gen = segment_iter(small_rgb, preview_every=1, **_fast(max_iter=20, min_labels=1))
    for p in gen:
        if p.iteration == 5:
            break
    with pytest.raises(RunInterrupted) as info:
        gen.throw(KeyboardInterrupt())
    assert isinstance(info.value, KeyboardInterrupt)
    assert info.value.iteration == 5
    np.testing.assert_array_equal(info.value.labels, p.labels)


def test_the_tiled_final_pass_reports_each_tile_and_can_be_cancelled_within_one():
    image = np.random.default_rng(0).integers(0, 255, (96, 120, 3), dtype=np.uint8)
    kw = dict(preset="paper-vanilla", n_channels=8, max_iter=2, tile_size=32, seed=0, device="cpu")
    # drained to the end (its result is the StopIteration value)
    records = list(segment_iter(image, **kw))
    tiles = [r for r in records if r.stage == "final pass"]
    assert tiles and [r.part[0] for r in tiles] == list(range(1, len(tiles) + 1))
    assert (
        all(r.iteration == 2 and r.labels is None for r in tiles)
        and tiles[-1].part[0] <= tiles[-1].part[1]
    )
    gen = segment_iter(image, **kw)
    for r in gen:
        if r.stage == "final pass":
            break
    # grad mode is per thread: a paused pass must not leave it off (napari reuses its threads)
    assert torch.is_grad_enabled()
    gen.close()  # what napari's worker does on Cancel: stops inside the pass, after one tile
    assert r.part[0] == 1
