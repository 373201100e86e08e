"""Scores of a clustering against ground truth (numpy/scipy only).

Everything is computed from one contingency table (clusters x classes), built
with a single ``bincount``: no per-label loops over pixels. The region scores
(:func:`region_scores`: Kim et al.'s best-match mIoU, segmentation covering,
probabilistic Rand index, variation of information) first split the prediction
into connected regions, since they compare segments, not clusters.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..labels import connected_regions, dense_ids
from .checks import checked_ignore_index, checked_pair, kept_pixels

MATCHINGS = ("hungarian", "majority")
PROTOCOLS = ("standard", "paper")


def contingency_table(pred, gt, ignore_index: int | None = None):
    """Count the pixels of every (cluster, class) pair.

    Parameters
    ----------
    pred, gt : array_like of int or bool
        Labels of the same shape.
    ignore_index : int, optional
        Pixels whose ground truth is this value are left out.

    Returns
    -------
    table : numpy.ndarray
        ``table[i, j]`` counts pixels of cluster ``pred_ids[i]`` with class ``gt_ids[j]``.
    pred_ids, gt_ids : numpy.ndarray
        The cluster and class ids of the rows and columns.

    Examples
    --------
    >>> import numpy as np
    >>> from napari_inceptseg import contingency_table
    >>> table, p, g = contingency_table(np.array([5, 5, 6]), np.array([0, 1, 1]))
    >>> table.tolist(), p.tolist(), g.tolist()
    ([[1, 1], [0, 1]], [5, 6], [0, 1])
    """
    pred, gt = kept_pixels(*checked_pair(pred, gt), ignore_index)
    p_ids, p_idx = dense_ids(pred)
    g_ids, g_idx = dense_ids(gt)
    table = np.bincount(p_idx * g_ids.size + g_idx, minlength=p_ids.size * g_ids.size)
    return table.reshape(p_ids.size, g_ids.size), p_ids, g_ids


def pair_iou(table: np.ndarray, pred_sizes=None, gt_sizes=None) -> np.ndarray:
    """The IoU of every (cluster, class) pair of a contingency table.

    Parameters
    ----------
    table : numpy.ndarray
        Pixel counts, clusters by classes (see :func:`contingency_table`).
    pred_sizes, gt_sizes : numpy.ndarray, optional
        The clusters' and classes' sizes when the table leaves pixels out;
        default: its row and column sums.

    Returns
    -------
    numpy.ndarray
        float64 IoUs of the table's shape (0 where a pair's union is empty).

    Examples
    --------
    >>> import numpy as np
    >>> pair_iou(np.array([[2, 0], [1, 1]])).round(3).tolist()
    [[0.667, 0.0], [0.25, 0.5]]
    """
    a = table.sum(1) if pred_sizes is None else pred_sizes
    b = table.sum(0) if gt_sizes is None else gt_sizes
    return table / np.maximum(a[:, None] + b[None, :] - table, 1)


def _entropy(counts: np.ndarray) -> float:
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log(p)).sum())


def _mutual_information(table: np.ndarray) -> float:
    n = table.sum()
    pi = table.sum(1, keepdims=True)
    pj = table.sum(0, keepdims=True)
    nz = table > 0
    nij = table[nz].astype(np.float64)
    outer = (pi * pj)[nz].astype(np.float64)
    return float((nij / n * (np.log(nij) + np.log(n) - np.log(outer))).sum())


def match_clusters(table: np.ndarray, matching: str = "hungarian", on: str = "iou") -> np.ndarray:
    """For each cluster (row) the matched class column, or -1 when unmatched.

    ``hungarian``: one-to-one assignment maximising total IoU (``on='iou'``) or
    pixel count (``on='count'``). ``majority``: each cluster to its most common class.
    """
    n_p, n_g = table.shape
    if matching == "majority":
        return table.argmax(1)
    if matching != "hungarian":
        raise ValueError(f"unknown matching {matching!r}: use one of {', '.join(MATCHINGS)}")
    from scipy.optimize import linear_sum_assignment

    weight = pair_iou(table) if on == "iou" else table.astype(np.float64)
    rows, cols = linear_sum_assignment(weight, maximize=True)
    keep = weight[rows, cols] > 0  # a pair that shares no pixel is no match
    out = np.full(n_p, -1, dtype=np.intp)
    out[rows[keep]] = cols[keep]
    return out


def _class_iou(table: np.ndarray, assign: np.ndarray) -> np.ndarray:
    """IoU of each class after merging clusters into their assigned class."""
    n_g = table.shape[1]
    merged = np.zeros((n_g, n_g), dtype=np.int64)
    ok = assign >= 0
    np.add.at(merged, assign[ok], table[ok])  # loop over clusters, not pixels
    inter = np.diag(merged)
    pred_size = merged.sum(1)
    union = pred_size + table.sum(0) - inter
    return inter / np.maximum(union, 1)


def _entropy_scores(table: np.ndarray) -> tuple[float, float]:
    """(NMI with arithmetic normalisation, homogeneity) of a contingency table."""
    h_class = _entropy(table.sum(0))
    h_clust = _entropy(table.sum(1))
    mi = _mutual_information(table)
    denom = 0.5 * (h_class + h_clust)
    nmi = 1.0 if denom == 0 else mi / denom
    homogeneity = 1.0 if h_class == 0 else mi / h_class
    return min(max(nmi, 0.0), 1.0), min(max(homogeneity, 0.0), 1.0)


def _paper_scores(table: np.ndarray, g_ids: np.ndarray) -> tuple[float, float]:
    """MIoU and accuracy exactly as the published evaluation code computes them.

    mIoU: Hungarian matching on 1 - IoU over all classes x clusters, averaged over
    the min(n_classes, n_clusters) matched pairs (zero-IoU pairs included).
    Accuracy: Hungarian matching on pixel counts; every unmatched cluster is
    relabelled 0, so its pixels count as correct where the ground truth is 0.
    """
    from scipy.optimize import linear_sum_assignment

    n = table.sum()
    iou = pair_iou(table)
    rows, cols = linear_sum_assignment(iou, maximize=True)
    miou = float(iou[rows, cols].mean())
    rows, cols = linear_sum_assignment(table, maximize=True)
    correct = table[rows, cols].sum()
    zero = np.flatnonzero(g_ids == 0)
    if zero.size:
        unmatched = np.setdiff1d(np.arange(table.shape[0]), rows)
        correct += table[unmatched, zero[0]].sum()
    return miou, float(correct) / n


def region_scores(pred, gt, *, ignore_index: int | None = None) -> dict[str, float]:
    """Scores that compare the prediction's connected regions with the
    ground-truth segments (pixels whose truth is ``ignore_index`` left out):

    - ``kim_miou``: each ground-truth segment takes its best IoU with any
      predicted region; the mean over segments (Kim, Kanezaki & Tanaka 2020). A
      blank prediction scores the mean segment area fraction. ``kim_sum`` and
      ``kim_segments`` (the sum and the count) let a benchmark pool segments over
      images and annotators, as Kim et al. do;
    - ``covering``: segmentation covering of the truth by the prediction
      (Arbelaez et al. 2011): the same best IoUs, weighted by segment area;
    - ``pri``: Rand index (the BSDS benchmark's formula; its mean over
      annotators is the probabilistic Rand index); higher is better;
    - ``voi``: variation of information in bits (scikit-image); lower is better;
    - ``n_regions``: connected regions of the prediction.
    """
    from skimage.metrics import variation_of_information

    pred, gt = checked_pair(pred, gt)
    regions = connected_regions(pred)
    n_regions = int(regions.max()) if regions.size else 0
    regions, gt = kept_pixels(regions, gt, ignore_index)
    _, r_idx = dense_ids(regions)
    _, g_idx = dense_ids(gt)
    n_g = int(g_idx.max()) + 1
    pairs, inter = np.unique(r_idx.astype(np.int64) * n_g + g_idx, return_counts=True)
    rows, cols = pairs // n_g, pairs % n_g
    r_size = np.bincount(r_idx)
    g_size = np.bincount(g_idx, minlength=n_g)
    iou = inter / (r_size[rows] + g_size[cols] - inter)
    best = np.zeros(n_g)
    np.maximum.at(best, cols, iou)
    n = float(gt.size)
    inter_f = inter.astype(np.float64)
    pair_disagree = (
        (r_size.astype(np.float64) ** 2).sum() / 2
        + (g_size.astype(np.float64) ** 2).sum() / 2
        - (inter_f**2).sum()
    )
    pri = 1.0 - pair_disagree / (n * (n - 1) / 2) if n > 1 else 1.0
    # (scikit-image 0.26 fails when given a precomputed table, so it builds its own)
    voi = float(variation_of_information(g_idx, r_idx).sum())
    return {
        "kim_miou": float(best.mean()),
        "kim_sum": float(best.sum()),
        "kim_segments": int(n_g),
        "covering": float((best * g_size).sum() / n),
        "pri": float(pri),
        "voi": max(voi, 0.0),
        "n_regions": n_regions,
    }


def score(
    pred,
    gt,
    *,
    ignore_index: int | None = None,
    matching: str = "hungarian",
    protocol: str = "standard",
    regions: bool = True,
) -> dict[str, Any]:
    """Score a segmentation ``pred`` against ground truth ``gt``.

    Parameters
    ----------
    pred, gt : array_like of int or bool
        Labels of the same shape.
    ignore_index : int, optional
        Ground-truth value to leave out (``protocol='standard'`` only).
    matching : {'hungarian', 'majority'}
        ``'hungarian'`` matches clusters to classes one-to-one (mIoU on IoU,
        accuracy on pixel counts); ``'majority'`` sends each cluster to its majority
        class (many-to-one). mIoU is averaged over every ground-truth class, a class
        no cluster is matched to counting as 0.
    protocol : {'standard', 'paper'}
        ``'paper'`` reproduces the published evaluation code of the Inception
        backbone's authors [2]_: every ground-truth value is a class (void included,
        ``ignore_index`` is not applied), mIoU is averaged over the Hungarian-matched
        pairs only and accuracy counts unmatched clusters as label 0.
    regions : bool
        Also compute the region scores of :func:`region_scores` (``kim_miou`` [3]_,
        ``covering``, ``pri``, ``voi`` in bits [1]_, ``n_regions``), with the same
        ignored pixels.

    Returns
    -------
    dict
        ``miou``, ``accuracy``, ``accuracy_majority``, ``nmi`` (arithmetic
        normalisation), ``homogeneity``, ``n_clusters``, ``n_classes``,
        ``n_pixels``, ``per_class_iou`` ({class id: IoU}), ``mapping`` ({cluster id:
        class id}) and, with ``regions``, the region scores.

    Raises
    ------
    ValueError
        Shapes differ, labels are not integers, or an unknown matching or protocol.

    References
    ----------
    .. [1] P. Arbelaez, M. Maire, C. Fowlkes and J. Malik, "Contour detection and
           hierarchical image segmentation", IEEE TPAMI 33(5), 898-916 (2011).
           doi:10.1109/TPAMI.2010.161
    .. [2] R. Azad and A. Hamid (2025): the ``inception`` backbone's published
           evaluation code.
    .. [3] W. Kim, A. Kanezaki and M. Tanaka, IEEE Transactions on Image Processing
           29, 8055-8068 (2020).

    Examples
    --------
    >>> import numpy as np
    >>> from napari_inceptseg import score
    >>> gt = np.array([[1, 1, 2, 2]] * 4)
    >>> pred = np.array([[7, 7, 7, 9]] * 4)
    >>> s = score(pred, gt)
    >>> round(s["miou"], 3), round(s["accuracy"], 3), s["mapping"]
    (0.583, 0.75, {7: 1, 9: 2})
    """
    _check_protocol(matching, protocol)
    ignore_index = checked_ignore_index(ignore_index)
    if protocol == "paper":
        ignore_index = None
    table, p_ids, g_ids = contingency_table(pred, gt, ignore_index)
    n = int(table.sum())

    assign_iou = match_clusters(table, matching, on="iou")
    ious = _class_iou(table, assign_iou)
    if protocol == "paper":
        miou, accuracy = _paper_scores(table, g_ids)
    else:
        miou, accuracy = float(ious.mean()), _accuracy(table, assign_iou, matching)
    accuracy_majority = float(table.max(1).sum()) / n
    nmi, homogeneity = _entropy_scores(table)

    mapping = {
        p_ids[i].item(): g_ids[assign_iou[i]].item()
        for i in range(p_ids.size)
        if assign_iou[i] >= 0
    }
    extra = region_scores(pred, gt, ignore_index=ignore_index) if regions else {}
    return {
        **extra,
        "miou": miou,
        "accuracy": accuracy,
        "accuracy_majority": accuracy_majority,
        "nmi": nmi,
        "homogeneity": homogeneity,
        "n_clusters": int(p_ids.size),
        "n_classes": int(g_ids.size),
        "n_pixels": n,
        "matching": matching,
        "protocol": protocol,
        "per_class_iou": {g_ids[j].item(): float(ious[j]) for j in range(g_ids.size)},
        "mapping": mapping,
    }


def _check_protocol(matching: str, protocol: str) -> None:
    if matching not in MATCHINGS:
        raise ValueError(f"unknown matching {matching!r}: use one of {', '.join(MATCHINGS)}")
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}: use one of {', '.join(PROTOCOLS)}")
    if protocol == "paper" and matching != "hungarian":
        raise ValueError("the paper protocol uses Hungarian matching only")


def _accuracy(table: np.ndarray, assign_iou: np.ndarray, matching: str) -> float:
    """Pixel accuracy: Hungarian matching on pixel counts (not IoU), or the majority map."""
    assign = assign_iou if matching == "majority" else match_clusters(table, matching, on="count")
    ok = assign >= 0
    return float(table[np.flatnonzero(ok), assign[ok]].sum()) / int(table.sum())


def matched_labels(
    pred, gt, *, ignore_index: int | None = None, matching: str = "hungarian"
) -> np.ndarray:
    """``pred`` with every cluster renumbered to the ground-truth class it is
    matched to (as in :func:`score`), so that prediction and truth share colours.
    Clusters left unmatched get new ids above the largest class id; pixels that
    were 0 in ``pred`` stay 0.
    """
    pred = np.asarray(pred)
    s = score(pred, gt, ignore_index=ignore_index, matching=matching)
    mapping = s["mapping"]
    ids = np.unique(pred)
    top = max([int(np.max(gt)), *mapping.values()], default=0)
    lut = {}
    nxt = top + 1
    for cid in ids.tolist():
        if cid == 0:
            lut[cid] = 0
        elif cid in mapping:
            lut[cid] = mapping[cid]
        else:
            lut[cid], nxt = nxt, nxt + 1
    keys = np.array(list(lut.keys()))
    vals = np.array(list(lut.values()), dtype=np.int64)
    return vals[np.searchsorted(keys, pred)].astype(np.int32)
