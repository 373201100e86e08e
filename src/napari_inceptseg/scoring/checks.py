"""Checks of what is scored: a prediction and its ground truth as integer labels of one
shape, and the ground-truth label to leave out (numpy only).
"""

from __future__ import annotations

import numpy as np

from ..params import as_whole


def checked_pair(pred, gt):
    """``(pred, gt)`` as integer arrays of one shape, or a ValueError that says why not."""
    for name, a in (("prediction", pred), ("ground truth", gt)):
        if np.ma.isMaskedArray(a) and np.ma.getmaskarray(a).any():
            raise ValueError(
                f"the {name} is a masked array, and its mask would be ignored: give the "
                "masked pixels an ignore label of the ground truth (numpy.ma.filled(gt, "
                "255)) and pass ignore_index=255"
            )
    pred = np.asarray(pred)
    gt = np.asarray(gt)
    if pred.shape != gt.shape:
        raise ValueError(
            f"prediction and ground truth differ in shape: {pred.shape} vs {gt.shape}; "
            "score labels of the same image"
        )
    for name, a in (("prediction", pred), ("ground truth", gt)):
        if a.dtype.kind not in "biu":
            if a.dtype.kind == "f" and np.all(np.isfinite(a)) and np.all(a == np.round(a)):
                continue
            raise ValueError(f"the {name} must hold integer labels, got dtype {a.dtype}")
    return (
        pred.astype(np.int64) if pred.dtype.kind == "f" else pred,
        gt.astype(np.int64) if gt.dtype.kind == "f" else gt,
    )


def kept_pixels(pred: np.ndarray, gt: np.ndarray, ignore_index: int | None):
    """Both flattened, without the pixels whose ground truth is ``ignore_index``."""
    pred, gt = pred.ravel(), gt.ravel()
    ignore_index = checked_ignore_index(ignore_index)
    if ignore_index is not None:
        keep = gt != ignore_index
        pred, gt = pred[keep], gt[keep]
    if pred.size == 0:
        raise ValueError("no pixel left to score (is every ground-truth pixel the ignore label?)")
    return pred, gt


def checked_ignore_index(ignore_index) -> int | None:
    """``ignore_index`` as an int (or None), or a ValueError that says what it must be.

    Examples
    --------
    >>> checked_ignore_index(255.0), checked_ignore_index(None)
    (255, None)
    """
    if ignore_index is None:
        return None
    whole = as_whole(ignore_index)
    if whole is None:
        raise ValueError(
            "ignore_index must be a whole number (the ground-truth label to leave out) "
            f"or None, got {ignore_index!r}"
        )
    return whole
