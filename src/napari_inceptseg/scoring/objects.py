"""Object scores against an instance map (one id per object, e.g. per nucleus), as a
microscopist reads them: F1, precision and recall of one-to-one matched objects.
"""

from __future__ import annotations

import math
import warnings

import numpy as np

from ..labels import connected_regions
from .checks import checked_pair
from .metrics import contingency_table, pair_iou


def instance_scores(pred, gt, *, threshold: float = 0.5) -> dict[str, float]:
    """Object scores against an instance map ``gt`` (0 = background, one id per object,
    e.g. one per nucleus), as a microscopist reads them.

    The prediction is split into connected pieces (face connectivity, so that two
    objects touching at a corner stay two). A piece that lies mostly on ground-truth
    background is predicted background, not an object. The others are matched one to
    one to the ground-truth objects (Hungarian, on IoU); a pair counts when its IoU is
    at least ``threshold``. Returns ``f1``, ``precision``, ``recall``, ``matched_iou``
    (the mean IoU of the matched pairs, 0 when none), ``n_objects`` and ``n_predicted``.

    Ground truth without any object leaves the scores undefined: they are NaN, with a
    ``RuntimeWarning`` (benchmark summaries leave such images out and count them).
    """
    from scipy.optimize import linear_sum_assignment

    pieces = connected_regions(pred, connectivity=1)
    table, _, g_ids = contingency_table(pieces, gt)
    size_p, size_g = table.sum(1), table.sum(0)  # every pixel is in the table
    objects = np.ones(table.shape[0], dtype=bool)
    if g_ids[0] == 0:  # background column: pieces mostly on it are not objects
        objects = table[:, 0] * 2 < size_p
        table, size_g = table[:, 1:], size_g[1:]
    size_p, inter = size_p[objects], table[objects]
    iou = pair_iou(inter, size_p, size_g)
    rows, cols = linear_sum_assignment(-iou) if iou.size else (np.array([], int), np.array([], int))
    good = iou[rows, cols] >= threshold
    tp, n_pred, n_gt = int(good.sum()), int(objects.sum()), int(size_g.size)
    if n_gt == 0:
        warnings.warn(
            "the ground truth has no object (all background): object scores are undefined (NaN)",
            RuntimeWarning,
            stacklevel=2,
        )
        return {
            "f1": math.nan,
            "precision": math.nan,
            "recall": math.nan,
            "matched_iou": math.nan,
            "n_objects": 0,
            "n_predicted": n_pred,
        }
    precision = tp / n_pred if n_pred else 0.0
    recall = tp / n_gt if n_gt else 0.0
    f1 = 2 * tp / (n_pred + n_gt)
    return {
        "f1": f1,
        "precision": precision,
        "recall": recall,
        "matched_iou": float(iou[rows, cols][good].mean()) if tp else 0.0,
        "n_objects": n_gt,
        "n_predicted": n_pred,
    }


#: the IoU thresholds of the DSB2018 instance metric: 0.50, 0.55, ..., 0.95
DSB_THRESHOLDS = tuple(round(0.5 + 0.05 * k, 2) for k in range(10))


def border_background(pred: np.ndarray) -> int:
    """The label found on most of the image's border (the background of a region map)."""
    pred = np.asarray(pred)
    faces = [np.take(pred, i, axis=a).ravel() for a in range(pred.ndim) for i in (0, -1)]
    ids, counts = np.unique(np.concatenate(faces), return_counts=True)
    return int(ids[np.argmax(counts)])


def dsb_scores(pred, gt) -> dict[str, float]:
    """The DSB2018 instance metric of one prediction against an instance map ``gt``.

    Label 0 of ``pred`` is the background and every other label one object; a
    prediction without label 0 (a region map) takes the label on most of the image's
    border as its background and each other label's connected pieces as objects. At
    every threshold t of :data:`DSB_THRESHOLDS` a true object is matched when a
    predicted object has IoU > t with it. Returns ``map`` (the mean over t of
    TP / (TP + FP + FN), the challenge's score), ``f1_50`` (F1 at t = 0.5), ``f1_avg``
    (F1 averaged over t; Caicedo et al., Nature Methods 2019), ``n_predicted`` and
    ``n_objects`` (the true objects).
    NaN scores, with a ``RuntimeWarning``, when ``gt`` has no object.

    Examples
    --------
    >>> import numpy as np
    >>> gt = np.zeros((8, 8), int)
    >>> gt[1:4, 1:4] = 1
    >>> gt[5:8, 5:8] = 2
    >>> pred = gt.copy()
    >>> pred[1, 1] = 0  # one pixel missed: IoU 8/9, a match up to t = 0.85
    >>> s = dsb_scores(pred, gt)
    >>> round(s["map"], 3), s["f1_50"], s["n_predicted"]
    (0.867, 1.0, 2)
    """
    from scipy.optimize import linear_sum_assignment
    from skimage.measure import label

    pred, gt = checked_pair(pred, gt)
    if not (pred == 0).any():
        pred = label(pred + 1, background=border_background(pred) + 1, connectivity=pred.ndim)
    table, p_ids, g_ids = contingency_table(pred, gt)
    p_keep, g_keep = p_ids != 0, g_ids != 0
    iou = pair_iou(table[p_keep][:, g_keep], table.sum(1)[p_keep], table.sum(0)[g_keep])
    n_pred, n_gt = int(p_keep.sum()), int(g_keep.sum())
    if n_gt == 0:
        warnings.warn("the ground truth has no object: DSB scores are NaN", RuntimeWarning, 2)
        nan = {"map": math.nan, "f1_50": math.nan, "f1_avg": math.nan}
        return {**nan, "n_predicted": n_pred, "n_objects": 0}
    rows, cols = linear_sum_assignment(-iou) if iou.size else ([], [])
    matched = iou[rows, cols]
    tp = np.array([(matched > t).sum() for t in DSB_THRESHOLDS], dtype=np.float64)
    misses = n_pred + n_gt - 2 * tp  # FP + FN
    f1 = 2 * tp / (2 * tp + misses)
    return {
        "map": float(np.mean(tp / (tp + misses))),
        "f1_50": float(f1[0]),
        "f1_avg": float(f1.mean()),
        "n_predicted": n_pred,
        "n_objects": n_gt,
    }
