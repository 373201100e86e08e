"""Object scores against an instance map (one id per object, e.g. per nucleus), as a
microscopist reads them: F1, precision and recall of one-to-one matched objects.
"""

from __future__ import annotations

import math

import numpy as np

from ..labels import connected_regions
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
    import warnings

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
