"""The default method against the classical baselines, the presets, and n_clusters."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from napari_inceptseg import SegmentParams, score, segment
from napari_inceptseg.bench.baselines import BASELINES, run_baseline
from napari_inceptseg.presets import PRESETS, preset_of, preset_params

METRICS = ("miou", "kim_miou", "nmi")


def _scores(labels, gts, ignore_index=None):
    """Each metric, averaged over the annotators."""
    per = [score(labels, gt, ignore_index=ignore_index) for gt in gts]
    return {m: float(np.mean([s[m] for s in per])) for m in METRICS}


@pytest.fixture(scope="module")
def default_on_synthetic(synthetic):
    image, gt = synthetic
    return [_scores(segment(image, seed=s, device="cpu").labels, [gt]) for s in (0, 1, 2)]


@pytest.mark.parametrize("baseline", BASELINES)
def test_default_beats_each_baseline_on_the_synthetic_sample(
    default_on_synthetic, synthetic, baseline
):
    image, gt = synthetic
    theirs = _scores(run_baseline(baseline, image), [gt])
    for m in METRICS:
        ours = float(np.median([s[m] for s in default_on_synthetic]))
        assert ours > theirs[m], f"{m}: default {ours:.3f} vs {baseline} {theirs[m]:.3f}"


#: the README's claim: on BSDS500 val and CamVid val the default is above each of these
#: baselines on these metrics, with the paired 95 % interval of the difference above 0
CLAIMED_BASELINES = ("kmeans3", "kmeans5", "felzenszwalb", "slic")
CLAIMED_METRICS = ("standard_miou", "kim_miou", "standard_nmi")


@pytest.mark.slow
@pytest.mark.parametrize("dataset", ["bsds500", "camvid"])
def test_the_readmes_quality_claim_holds_on_the_whole_dev_set(tmp_path, dataset):
    """Every image of the dev set, through ``evaluate`` as the docs' command runs it;
    the claim holds when every paired bootstrap interval lies above zero."""
    from helpers import SHARED_DATA, need_shared_data
    from napari_inceptseg.bench.datasets import list_items
    from napari_inceptseg.bench.evaluate import run_evaluation
    from napari_inceptseg.bench.stats import paired_difference

    items = list_items(dataset, need_shared_data(SHARED_DATA / dataset), "val")
    methods = ["default", *CLAIMED_BASELINES]
    report = run_evaluation(
        items,
        methods,
        {"seed": 0, "device": "cpu"},
        tmp_path,
        config={"dataset": dataset},
        batch=2,
        progress=False,
        log=lambda *_: None,
    )
    assert report.n_skipped == 0 and report.n_new == len(items) * len(methods)
    with open(tmp_path / "results.csv", newline="") as fh:
        rows = {(r["image"], r["method"]): r for r in csv.DictReader(fh)}
    names = [i.name for i in items]
    failures = []
    for baseline in CLAIMED_BASELINES:
        for metric in CLAIMED_METRICS:
            d = paired_difference(
                [float(rows[(n, "default")][metric]) for n in names],
                [float(rows[(n, baseline)][metric]) for n in names],
            )
            if not d.lo > 0:  # the whole interval above 0
                failures.append(f"{metric} vs {baseline}: {d.diff:+.3f} [{d.lo:+.3f}, {d.hi:+.3f}]")
    assert not failures, f"{dataset}: " + "; ".join(failures)


def test_paper_presets_are_the_published_settings():
    for arch in ("vanilla", "inception"):
        p = preset_params(f"paper-{arch}")
        assert (p.arch, p.n_channels, p.n_conv, p.max_iter, p.min_labels) == (arch, 100, 2, 1000, 3)
        assert (p.lr, p.w_sim, p.w_con, p.init, p.coarse_scale) == (0.1, 1.0, 1.0, "default", 1.0)
        # raw RGB at full resolution, and the clusters as they are
        assert (p.color_space, p.train_pixels, p.regions, p.n_clusters) == ("rgb", 0, False, 0)
        assert preset_of(p) == f"paper-{arch}"
    assert preset_of(SegmentParams()) == "default" and set(PRESETS) == {
        "default",
        "paper-vanilla",
        "paper-inception",
    }
    assert preset_of(SegmentParams(merge_threshold=0.3)) == "custom"
    # run options do not make a preset custom; method settings on top of a preset do
    assert preset_of(preset_params("paper-vanilla", seed=3, device="cpu")) == "paper-vanilla"


def test_a_paper_preset_run_returns_raw_clusters_at_full_resolution(small_rgb):
    res = segment(small_rgb, preset="paper-vanilla", n_channels=8, max_iter=3, seed=0, device="cpu")
    assert not res.regions and res.metadata()["labels"] == "clusters"
    np.testing.assert_array_equal(res.labels, res.label_map[res.channel_ids])
    assert "copy" not in res.plan and res.metadata()["preset"] == "custom"  # 8 channels, 3 steps
    with pytest.raises(ValueError, match="unknown preset"):
        segment(small_rgb, preset="paper")
    with pytest.raises(TypeError, match="unknown parameter"):
        segment(small_rgb, max_iters=3)


def test_default_regions_are_connected_and_trained_on_a_small_copy():
    from skimage.measure import label

    rng = np.random.default_rng(0)
    image = np.zeros((300, 400, 3), np.uint8)  # 120,000 px: trained on a 40,000 px copy
    image[:, :150] = (30, 90, 200)
    image[100:220, 200:330] = (220, 200, 40)
    image = np.clip(image + rng.normal(0, 8, image.shape), 0, 255).astype(np.uint8)
    res = segment(image, seed=0, device="cpu")
    assert res.regions and res.labels.shape == (300, 400) and res.n_iter == SegmentParams().max_iter
    assert "trained on a 173 x 231 copy" in res.plan
    assert label(res.labels, background=0, connectivity=1).max() == res.n_labels  # one piece per id
    gt = np.ones((300, 400), int)
    gt[:, :150] = 2
    gt[100:220, 200:330] = 3
    assert score(res.labels, gt)["miou"] > 0.9


def test_n_clusters_merges_the_most_alike_neighbours(synthetic):
    image, gt = synthetic  # four regions
    for preset in ("default", "paper-vanilla"):
        res = segment(image, preset=preset, n_clusters=4, max_iter=30, seed=0, device="cpu")
        assert res.n_labels <= 4
        assert score(res.labels, gt)["miou"] > 0.85, preset
    few = segment(image, n_clusters=2, seed=0, device="cpu")
    assert few.n_labels == 2


def test_n_clusters_two_gives_nuclei_and_background():
    # the bundled fluorescence sample (36 nuclei): two labels, scored against its masks
    from napari_inceptseg.bench.evaluate import score_row
    from napari_inceptseg.sample_data import nuclei_image

    image, masks = nuclei_image()
    res = segment(image, n_clusters=2, seed=0, device="cpu")
    assert res.n_labels == 2
    row = score_row(res.labels, [masks], None, instances=True)
    assert row["standard_miou"] > 0.68  # nuclei vs background
    assert row["f1"] > 0.35  # nuclei found one by one (IoU >= 0.5)


def test_n_clusters_with_scribbles_is_refused(small_rgb):
    scr = np.zeros(small_rgb.shape[:2], np.int32)
    scr[2, 2] = 1
    with pytest.raises(ValueError, match="n_clusters cannot be combined with scribbles"):
        segment(small_rgb, scribbles=scr, n_clusters=2, device="cpu")


def test_the_stages_after_training_are_announced_and_each_can_be_cancelled(synthetic):
    from napari_inceptseg.engine.workflow.segment import segment_iter

    image, _ = synthetic
    stages = [p.stage for p in segment_iter(image, seed=0, device="cpu") if p.stage != "training"]
    assert stages == ["full-resolution pass", "regions", "hierarchy"]
    for stop_at in stages:
        gen = segment_iter(image, seed=0, device="cpu")
        for p in gen:
            if p.stage == stop_at:
                gen.close()  # what the dock's Cancel does: the run ends there, cleanly
                break
        with pytest.raises(StopIteration):
            next(gen)
