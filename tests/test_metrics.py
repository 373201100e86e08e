"""Scores against cases worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from napari_inceptseg import contingency_table, score


def test_perfect_clustering_with_other_ids():
    gt = np.array([[1, 1, 2, 2], [1, 1, 3, 3]])
    pred = np.array([[7, 7, 4, 4], [7, 7, 9, 9]])
    for matching in ("hungarian", "majority"):
        s = score(pred, gt, matching=matching)
        assert s["accuracy"] == 1 and s["miou"] == 1
        assert s["nmi"] == pytest.approx(1) and s["homogeneity"] == pytest.approx(1)
    assert s["mapping"] == {4: 2, 7: 1, 9: 3}
    assert s["n_clusters"] == 3 and s["n_classes"] == 3


def test_split_region_hungarian_vs_majority():
    # class 1 (4 px) split into clusters 1 and 2; class 2 (4 px) = cluster 3
    gt = np.array([[1, 1, 2, 2], [1, 1, 2, 2]])
    pred = np.array([[1, 2, 3, 3], [1, 2, 3, 3]])
    one = score(pred, gt)
    many = score(pred, gt, matching="majority")
    assert one["accuracy"] == pytest.approx(6 / 8)  # one of the halves is unmatched
    assert one["miou"] == pytest.approx((2 / 4 + 1) / 2)
    assert many["accuracy"] == 1 and many["miou"] == 1
    # homogeneity: every cluster is pure -> 1; NMI < 1 because of the split
    assert one["homogeneity"] == pytest.approx(1)
    h_class, h_clust = math.log(2), -(2 * 0.25 * math.log(0.25) + 0.5 * math.log(0.5))
    assert one["nmi"] == pytest.approx(math.log(2) / ((h_class + h_clust) / 2))


def test_merged_classes_and_unmatched_class_counts_zero():
    gt = np.array([1, 1, 2, 2, 3, 3])
    pred = np.array([5, 5, 5, 5, 6, 6])
    s = score(pred, gt)
    assert s["per_class_iou"][3] == 1
    # cluster 5 matches class 1 or 2 with IoU 2/4; the other class is unmatched: 0
    assert sorted([s["per_class_iou"][1], s["per_class_iou"][2]]) == [0, 0.5]
    assert s["miou"] == pytest.approx((1 + 0.5 + 0) / 3)
    assert s["accuracy"] == pytest.approx(4 / 6)
    assert s["homogeneity"] == pytest.approx(1 - (4 / 6 * math.log(2)) / math.log(3))


def test_ignore_index_removes_pixels():
    gt = np.array([1, 1, 255, 255, 2, 2])
    pred = np.array([1, 1, 2, 2, 2, 2])
    assert score(pred, gt)["accuracy"] < 1
    assert score(pred, gt, ignore_index=255)["accuracy"] == 1


def test_contingency_table_counts():
    table, p_ids, g_ids = contingency_table(np.array([3, 3, 8, 8, 8]), np.array([0, 1, 1, 1, 0]))
    assert p_ids.tolist() == [3, 8] and g_ids.tolist() == [0, 1]
    assert table.tolist() == [[1, 1], [1, 2]]


def test_negative_and_huge_ids():
    gt = np.array([-1, -1, 10**9, 10**9])
    pred = np.array([0, 0, 1, 1])
    assert score(pred, gt)["accuracy"] == 1


@pytest.mark.parametrize(
    "pred, gt, kw, match",
    [
        (np.zeros((3, 3), int), np.zeros((3, 4), int), {}, "differ in shape"),
        (np.zeros(4), np.full(4, 255), {"ignore_index": 255}, "no pixel left"),
        (np.full(4, 0.5), np.zeros(4, int), {}, "integer labels"),
        (np.zeros(4, int), np.zeros(4, int), {"matching": "greedy"}, "unknown matching"),
        (np.zeros(4, int), np.zeros(4, int), {"ignore_index": float("nan")}, "ignore_index must"),
        (np.zeros(4, int), np.zeros(4, int), {"ignore_index": "x"}, "ignore_index must"),
        (np.zeros(4, int), np.zeros(4, int), {"ignore_index": 2.5}, "ignore_index must"),
        (np.zeros(4, int), np.ma.masked_equal([0, 1, 2, 3], 2), {}, "masked array"),
        (np.ma.masked_equal([0, 1, 2, 3], 2), np.zeros(4, int), {}, "masked array"),
    ],
)
def test_bad_inputs(pred, gt, kw, match):
    with pytest.raises(ValueError, match=match):
        score(pred, gt, **kw)


@pytest.mark.parametrize("seed", range(5))
def test_nmi_and_homogeneity_match_scikit_learn(seed):
    metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(seed)
    gt = rng.integers(0, rng.integers(2, 8), (40, 50))
    pred = np.where(rng.random(gt.shape) < 0.6, gt * 3 + 1, rng.integers(0, 12, gt.shape))
    s = score(pred, gt)
    assert s["nmi"] == pytest.approx(
        metrics.normalized_mutual_info_score(gt.ravel(), pred.ravel()), abs=1e-9
    )
    assert s["homogeneity"] == pytest.approx(
        metrics.homogeneity_score(gt.ravel(), pred.ravel()), abs=1e-9
    )
    # accuracy after many-to-one matching = purity, from sklearn's contingency matrix
    cm = metrics.cluster.contingency_matrix(gt.ravel(), pred.ravel())
    assert score(pred, gt, matching="majority")["accuracy"] == pytest.approx(
        cm.max(0).sum() / gt.size
    )


# --- the two protocols -------------------------------------------------------------------


def _published_paper_scores(pred, gt):
    """A literal transcription of the published evaluation code (loops and all)."""
    from scipy.optimize import linear_sum_assignment

    g1, p1 = gt.reshape(-1), pred.reshape(-1)
    ug, up = np.unique(g1), np.unique(p1)
    cost = np.zeros((len(ug), len(up)))
    for i, a in enumerate(ug):
        for j, b in enumerate(up):
            gi, pj = np.where(g1 == a)[0], np.where(p1 == b)[0]
            inter, union = len(np.intersect1d(gi, pj)), len(np.union1d(gi, pj))
            cost[i, j] = 1 - (inter / union if union > 0 else 0)
    r, c = linear_sum_assignment(cost)
    miou = np.mean([1 - cost[i, j] for i, j in zip(r, c, strict=False)])
    cost = np.zeros((len(ug), len(up)))
    for i, a in enumerate(ug):
        for j, b in enumerate(up):
            cost[i, j] = -len(np.intersect1d(np.where(g1 == a)[0], np.where(p1 == b)[0]))
    r, c = linear_sum_assignment(cost)
    remap = np.zeros_like(p1)
    for i, j in zip(r, c, strict=False):
        remap[p1 == up[j]] = ug[i]
    return miou, np.mean(remap == g1)


@pytest.mark.parametrize("seed", range(6))
def test_paper_protocol_equals_the_published_code(seed):
    rng = np.random.default_rng(seed)
    n_cls, n_clu = rng.integers(1, 6), rng.integers(1, 9)
    gt = rng.integers(0, n_cls, (12, 15))
    gt[rng.random(gt.shape) < 0.1] = 255  # void stays a class in this protocol
    pred = np.where(rng.random(gt.shape) < 0.5, gt % 7, rng.integers(1, n_clu + 1, gt.shape))
    miou, acc = _published_paper_scores(pred, gt)
    s = score(pred, gt, protocol="paper", ignore_index=255)  # ignore_index is not applied
    assert s["miou"] == pytest.approx(miou, abs=1e-12)
    assert s["accuracy"] == pytest.approx(acc, abs=1e-12)


def test_protocols_on_void():
    gt = np.array([1, 1, 2, 2, 255, 255])
    pred = np.array([1, 1, 2, 2, 3, 3])
    std = score(pred, gt, ignore_index=255)
    assert (
        std["accuracy"] == 1 and std["miou"] == 1 and std["n_classes"] == 2 and std["n_pixels"] == 4
    )
    paper = score(pred, gt, ignore_index=255, protocol="paper")
    # void is a class
    assert paper["n_classes"] == 3 and paper["accuracy"] == 1 and paper["miou"] == 1


def test_protocols_with_more_clusters_than_classes():
    gt = np.array([0, 0, 0, 1, 1, 1])
    pred = np.array([1, 2, 3, 4, 4, 5])
    std, paper = score(pred, gt), score(pred, gt, protocol="paper")
    # best one-to-one: cluster 4 -> class 1 (2 px), one of clusters 1..3 -> class 0 (1 px)
    assert std["accuracy"] == pytest.approx(3 / 6)
    # paper: unmatched clusters are relabelled 0, so clusters 1..3 all count for class 0
    assert paper["accuracy"] == pytest.approx(5 / 6)
    # IoU: class 0 with one single-pixel cluster 1/3, class 1 with cluster 4: 2/3
    assert std["miou"] == pytest.approx((1 / 3 + 2 / 3) / 2)
    assert paper["miou"] == pytest.approx((1 / 3 + 2 / 3) / 2)  # 2 pairs matched = 2 classes


def test_protocols_with_fewer_clusters_than_classes():
    gt = np.array([1, 1, 2, 2, 3, 3])
    pred = np.array([7, 7, 7, 7, 8, 8])
    std, paper = score(pred, gt), score(pred, gt, protocol="paper")
    # standard: mean over the 3 classes, an unmatched class counts 0
    assert std["miou"] == pytest.approx((0.5 + 1 + 0) / 3)
    # paper: mean over the 2 matched pairs only
    assert paper["miou"] == pytest.approx((0.5 + 1) / 2)
    assert std["accuracy"] == paper["accuracy"] == pytest.approx(4 / 6)


def test_protocols_with_a_single_class():
    gt = np.full(8, 5)
    pred = np.array([1, 1, 1, 1, 1, 1, 2, 2])
    std, paper = score(pred, gt), score(pred, gt, protocol="paper")
    assert std["miou"] == paper["miou"] == pytest.approx(6 / 8)
    assert std["accuracy"] == paper["accuracy"] == pytest.approx(6 / 8)
    assert std["homogeneity"] == 1.0 and std["accuracy_majority"] == 1.0


def test_paper_protocol_only_hungarian():
    with pytest.raises(ValueError, match="Hungarian"):
        score(np.zeros(4, int), np.zeros(4, int), protocol="paper", matching="majority")
    with pytest.raises(ValueError, match="unknown protocol"):
        score(np.zeros(4, int), np.zeros(4, int), protocol="coco")


# --- region scores: Kim et al.'s best-match mIoU, covering, Rand index, VOI ------------


def test_kim_and_covering_by_hand():
    # prediction regions (8-connected): A = 5 (2 px), B = 6 (2 px), C = 7 (6 px), D = 8 (2 px)
    gt = np.array([[1, 1, 2, 2], [1, 1, 2, 2], [0, 0, 3, 3]])
    pred = np.array([[5, 6, 7, 7], [5, 6, 7, 7], [8, 8, 7, 7]])
    s = score(pred, gt)
    # best IoU per segment: 1 -> A or B: 2/4; 2 -> C: 4/6; 0 -> D: 1; 3 -> C: 2/6
    best = [0.5, 4 / 6, 1.0, 2 / 6]
    assert s["kim_miou"] == pytest.approx(np.mean(best))
    assert s["kim_sum"] == pytest.approx(sum(best)) and s["kim_segments"] == 4
    assert s["covering"] == pytest.approx((4 * 0.5 + 4 * 4 / 6 + 2 * 1 + 2 * 2 / 6) / 12)
    assert s["n_regions"] == 4


def test_kim_splits_clusters_into_connected_regions():
    # one cluster in two separate pieces: each piece is its own segment for kim
    gt = np.array([[1, 1, 2, 2, 1, 1]])
    pred = np.array([[3, 3, 4, 4, 3, 3]])
    s = score(pred, gt)
    assert s["miou"] == 1  # as clusters, a perfect match
    assert s["n_regions"] == 3
    # gt 1 (4 px) best matches one 2-px piece: 2/4; gt 2 matches exactly
    assert s["kim_miou"] == pytest.approx((0.5 + 1) / 2)


def test_blank_prediction_scores_one_over_the_number_of_segments():
    from napari_inceptseg.scoring.metrics import region_scores

    gt = np.repeat(np.repeat(np.arange(1, 6), 6)[None, :], 20, 0)  # 20 x 30, five vertical bands
    blank = np.zeros_like(gt)
    r = region_scores(blank, gt)
    assert r["kim_miou"] == pytest.approx(1 / 5) and r["kim_segments"] == 5
    assert r["voi"] == pytest.approx(np.log2(5))  # H(gt) bits, nothing explained
    perfect = region_scores(gt, gt)
    assert perfect["kim_miou"] == 1 and perfect["covering"] == 1 and perfect["pri"] == 1
    assert perfect["voi"] == pytest.approx(0, abs=1e-9)


def test_rand_index_and_voi_by_hand():
    from sklearn.metrics import rand_score

    from napari_inceptseg.scoring.metrics import region_scores

    gt = np.repeat(np.repeat(np.array([[1, 2], [3, 3]]), 8, 0), 8, 1)  # 16 x 16: 64, 64, 128 px
    pred = np.repeat(np.repeat(np.array([[1, 1], [2, 3]]), 8, 0), 8, 1)  # 128, 64, 64 px
    r = region_scores(pred, gt)
    # four overlaps of 64 px: H(gt) = H(pred) = 1.5 bits, H(joint) = 2 bits,
    # VoI = 2 H(joint) - H(gt) - H(pred) = 1 bit
    assert r["voi"] == pytest.approx(1.0)
    # pairs that disagree: (128² + 2 x 64²) / 2 twice, less 4 x 64², out of 256 x 255 / 2
    assert r["pri"] == pytest.approx(1 - (12288 + 12288 - 16384) / 32640)
    # an independent implementation
    assert r["pri"] == pytest.approx(rand_score(gt.ravel(), pred.ravel()))
    # swapping the two is the same distance
    assert region_scores(gt, pred)["voi"] == pytest.approx(1.0)


def test_region_scores_leave_out_ignored_pixels():
    gt = np.array([[1, 1, 255, 2, 2]])
    pred = np.array([[4, 4, 4, 5, 5]])
    assert score(pred, gt)["kim_miou"] < 1
    assert score(pred, gt, ignore_index=255)["kim_miou"] == 1


def test_instance_scores_by_hand():
    from napari_inceptseg.scoring.objects import instance_scores

    gt = np.zeros((4, 6), int)
    gt[0:2, 0:2] = 1  # nucleus 1, 4 px
    gt[0:2, 4:6] = 2  # nucleus 2, 4 px
    pred = np.ones((4, 6), int)
    pred[0:2, 0:2] = 2  # nucleus 1 exactly
    pred[0:2, 3:6] = 2  # nucleus 2 and two background pixels: IoU 4/6
    pred[3, 0] = 2  # a speck on the background: background, not an object
    s = instance_scores(pred, gt)
    assert s["n_objects"] == 2 and s["n_predicted"] == 2
    assert s["f1"] == 1.0 and s["precision"] == 1.0 and s["recall"] == 1.0
    assert s["matched_iou"] == pytest.approx((1 + 4 / 6) / 2)
    # one piece over both nuclei and the gap: an object (8 of its 12 px on nuclei) that
    # matches neither (IoU 1/3 each)
    merged = np.ones((4, 6), int)
    merged[0:2, :] = 2
    s = instance_scores(merged, gt)
    assert (s["f1"], s["precision"], s["recall"], s["matched_iou"]) == (0.0, 0.0, 0.0, 0.0)
    assert s["n_predicted"] == 1
    # corner-touching pieces stay two objects (face connectivity)
    diag = np.zeros((4, 4), int)
    diag[0:2, 0:2], diag[2:4, 2:4] = 1, 2
    s = instance_scores(np.where(diag > 0, 5, 0), diag)
    assert s["n_predicted"] == 2 and s["f1"] == 1.0


def test_instance_scores_are_undefined_without_any_object():
    from napari_inceptseg.scoring.objects import instance_scores

    pred = np.zeros((6, 6), int)
    pred[1:3, 1:3] = 1
    with pytest.warns(RuntimeWarning, match="no object"):
        s = instance_scores(pred, np.zeros((6, 6), int))
    assert all(np.isnan(s[k]) for k in ("f1", "precision", "recall", "matched_iou"))
    assert s["n_objects"] == 0 and s["n_predicted"] == 0  # pieces on background are background


def test_boolean_masks_score_as_two_labels():
    gt = np.zeros((10, 12), bool)
    gt[2:6, 3:9] = True
    pred = gt.copy()
    pred[2, 3] = False
    s = score(pred, gt)
    assert s["n_clusters"] == 2 and s["accuracy"] == pytest.approx(119 / 120)
    assert s["kim_miou"] == pytest.approx((23 / 24 + 96 / 97) / 2)
    assert score(gt.astype(np.uint8), gt)["miou"] == 1.0
