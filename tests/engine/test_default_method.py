"""The default method against the classical baselines, the presets, and n_clusters."""

from __future__ import annotations

import numpy as np
import pytest

from napari_inceptseg import SegmentParams, score, segment
from napari_inceptseg.bench.baselines import BASELINES, run_baseline
from napari_inceptseg.params import PRESETS, preset_params, preset_of

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
def test_default_beats_each_baseline_on_the_synthetic_sample(default_on_synthetic, synthetic, baseline):
    image, gt = synthetic
    theirs = _scores(run_baseline(baseline, image), [gt])
    for m in METRICS:
        ours = float(np.median([s[m] for s in default_on_synthetic]))
        assert ours > theirs[m], f"{m}: default {ours:.3f} vs {baseline} {theirs[m]:.3f}"


def _real_sample(shared_data):
    """A fixed sample by rule, not by result: every 5th BSDS500 val image and every
    4th CamVid val frame (sorted by name), with ground truth and ignore label."""
    from napari_inceptseg.bench.datasets import list_items

    items = []
    for name, step in (("bsds500", 5), ("camvid", 4)):
        root = shared_data / name
        if not root.is_dir():
            pytest.skip(f"{root} not found")
        items += list_items(name, root, "val")[::step]
    return items


@pytest.mark.slow
def test_default_beats_each_baseline_on_real_images(shared_data):
    """On 20 BSDS500 and 5 CamVid images the default's mean mIoU, kim mIoU and NMI are
    above every baseline's, on each dataset (the full comparison, with intervals, is in
    docs/benchmarks.md)."""
    items = _real_sample(shared_data)
    totals = {}
    for item in items:
        image, gts = item.load()
        dataset = "camvid" if item.ignore_index == 11 else "bsds500"
        runs = {"default": segment(image, seed=0, device="cpu").labels}
        runs.update({b: run_baseline(b, image) for b in BASELINES})
        for method, labels in runs.items():
            got = _scores(labels, gts, item.ignore_index)
            acc = totals.setdefault((dataset, method), {m: [] for m in METRICS})
            for m in METRICS:
                acc[m].append(got[m])
    for dataset in ("bsds500", "camvid"):
        ours = {m: np.mean(totals[(dataset, "default")][m]) for m in METRICS}
        for b in BASELINES:
            for m in METRICS:
                theirs = np.mean(totals[(dataset, b)][m])
                assert ours[m] > theirs, f"{dataset} {m}: default {ours[m]:.3f} vs {b} {theirs:.3f}"


def test_paper_presets_are_the_published_settings():
    for arch in ("vanilla", "inception"):
        p = preset_params(f"paper-{arch}")
        assert (p.arch, p.n_channels, p.n_conv, p.max_iter, p.min_labels) == (arch, 100, 2, 1000, 3)
        assert (p.lr, p.w_sim, p.w_con, p.init, p.coarse_scale) == (0.1, 1.0, 1.0, "default", 1.0)
        # raw RGB at full resolution, and the clusters as they are
        assert (p.color_space, p.train_pixels, p.regions, p.n_clusters) == ("rgb", 0, False, 0)
        assert preset_of(p) == f"paper-{arch}"
    assert preset_of(SegmentParams()) == "default" and set(PRESETS) == {"default", "paper-vanilla", "paper-inception"}
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
