"""The BSDS500 region benchmark (Arbeláez, Maire, Fowlkes & Malik, TPAMI 2011): segmentation
covering, probabilistic Rand index and variation of information of a method that gives
one partition per level, at one level for the whole data set (ODS) and at the best level
per image (OIS). numpy only.

Per image and level, against every annotator (ground-truth pixels labelled
``ignore_index`` left out; BSDS500's maps have no unlabelled pixels, so none are):

- covering: each human region ``R`` of every annotator takes its best IoU with a machine
  region; the image keeps ``cnt_r = sum |R| best IoU(R)`` and ``sum_r = sum |R|``;
- Rand index with the benchmark's formula, ``1 - (sum a^2 / 2 + sum b^2 / 2 - sum n^2) /
  (N (N - 1) / 2)``, its mean over annotators being the PRI;
- variation of information in bits, its mean over annotators.

Over the data set (:func:`ods_ois`): ODS covering is the best over levels of
``sum cnt_r / sum sum_r``, ODS PRI the best mean and ODS VoI the lowest mean; OIS takes each
image's best level. A method with a single partition has ODS = OIS.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..labels import connected_regions, dense_ids
from ..scoring.metrics import pair_iou

#: the per-image, per-level numbers :func:`ods_ois` pools
LEVEL_COLUMNS = ("cnt_r", "sum_r", "pri", "voi")


@dataclass(frozen=True)
class LevelScores:
    """One image at one level: covering's two sums, the PRI and VoI (means over annotators)."""

    cnt_r: float
    sum_r: float
    pri: float
    voi: float

    @property
    def covering(self) -> float:
        """Segmentation covering of the ground truth by the machine's regions."""
        return self.cnt_r / self.sum_r if self.sum_r else 0.0


def _table_scores(tables: Sequence[np.ndarray]) -> LevelScores:
    """The scores from one machine-by-human contingency table per annotator."""
    cnt = tot = 0.0
    ris, vois = [], []
    for t in tables:
        t = t.astype(np.float64)
        a, b = t.sum(1), t.sum(0)
        n = t.sum()
        best = pair_iou(t, a, b).max(0)
        cnt += float((best * b).sum())
        tot += float(b.sum())
        pairs = n * (n - 1) / 2
        ris.append(
            1.0 - (0.5 * (a * a).sum() + 0.5 * (b * b).sum() - (t * t).sum()) / pairs
            if pairs
            else 1.0
        )
        vois.append(_voi_bits(t, a, b, n))
    return LevelScores(cnt, tot, float(np.mean(ris)), float(np.mean(vois)))


def _voi_bits(t: np.ndarray, a: np.ndarray, b: np.ndarray, n: float) -> float:
    """H(machine) + H(human) - 2 I, in bits."""

    def entropy(p):
        p = p[p > 0] / n
        return float(-(p * np.log2(p)).sum())

    nz = t > 0
    joint = t[nz] / n
    mi = float((joint * (np.log2(t[nz] * n) - np.log2(np.outer(a, b)[nz]))).sum())
    return max(entropy(a) + entropy(b) - 2 * mi, 0.0)


def _tables(
    regions: np.ndarray, gts: Sequence[np.ndarray], ignore_index: int | None
) -> list[np.ndarray]:
    """One contingency table (regions x human regions) per annotator."""
    r_ids, r_idx = dense_ids(regions.ravel())
    out = []
    for gt in gts:
        g = np.asarray(gt).ravel()
        keep = np.ones(g.shape, bool) if ignore_index is None else g != ignore_index
        g_ids, g_idx = dense_ids(g[keep])
        rows = r_idx[keep]
        table = np.bincount(rows * g_ids.size + g_idx, minlength=r_ids.size * g_ids.size)
        out.append(table.reshape(r_ids.size, g_ids.size))
    return out


def partition_scores(
    labels, gts: Sequence[np.ndarray], ignore_index: int | None = None
) -> LevelScores:
    """The benchmark's scores of one partition (its connected regions are its segments)
    against every annotator's segmentation ``gts``.
    """
    return _table_scores(_tables(connected_regions(np.asarray(labels)), gts, ignore_index))


def levels_scores(
    base: np.ndarray,
    luts: Sequence[np.ndarray],
    gts: Sequence[np.ndarray],
    ignore_index: int | None = None,
) -> list[LevelScores]:
    """The scores of several partitions that each group the connected regions of
    ``base``: level ``k`` gives region ``i`` of ``base`` the id ``luts[k][i]``. The tables
    are built once from ``base`` and summed per level, so a hierarchy's levels cost little.
    """
    base_tables = _tables(base, gts, ignore_index)
    ids = np.unique(base)
    out = []
    for lut in luts:
        groups = np.asarray(lut)[ids]
        _, row = np.unique(groups, return_inverse=True)
        tables = []
        for t in base_tables:
            merged = np.zeros((row.max() + 1, t.shape[1]), dtype=np.int64)
            np.add.at(merged, row, t)
            tables.append(merged)
        out.append(_table_scores(tables))
    return out


def ods_ois(per_image: dict[str, list[LevelScores]]) -> dict[str, float]:
    """Covering, PRI and VoI at ODS and OIS from each image's scores at every level (the
    same level list for every image), and the ODS level's index.
    """
    images = sorted(per_image)
    n_levels = {len(per_image[i]) for i in images}
    if len(n_levels) != 1:
        raise ValueError(f"every image needs the same levels, found {sorted(n_levels)} levels")
    cnt = np.array([[s.cnt_r for s in per_image[i]] for i in images])
    tot = np.array([[s.sum_r for s in per_image[i]] for i in images])
    pri = np.array([[s.pri for s in per_image[i]] for i in images])
    voi = np.array([[s.voi for s in per_image[i]] for i in images])
    cov_levels = cnt.sum(0) / tot.sum(0)
    best = (cnt / np.maximum(tot, 1)).argmax(1)
    rows = np.arange(len(images))
    return {
        "covering_ods": float(cov_levels.max()),
        "covering_ois": float(cnt[rows, best].sum() / tot[rows, best].sum()),
        "pri_ods": float(pri.mean(0).max()),
        "pri_ois": float(pri.max(1).mean()),
        "voi_ods": float(voi.mean(0).min()),
        "voi_ois": float(voi.min(1).mean()),
        "ods_level": int(cov_levels.argmax()),
        "n_images": len(images),
    }


# -- the benchmark in ``evaluate``: one row per image, method and level -----------------------

#: the levels at which ``evaluate`` cuts a method's hierarchy (ODS picks one of them)
HIERARCHY_LEVELS = tuple(float(v) for v in np.round(np.linspace(0.0, 1.0, 41), 3))
#: the columns of ``region_levels.csv``; ``level`` is the level's index, or ``cut`` for
#: the method's own labels (its default cut)
LEVEL_FILE_COLUMNS = ("image", "method", "level", "value", "n_regions", *LEVEL_COLUMNS)
OWN_CUT = "cut"


def _row(image: str, method: str, s: LevelScores, *, level, value, n_regions: int) -> dict:
    return {
        "image": image,
        "method": method,
        "level": level,
        "value": value,
        "n_regions": n_regions,
        "cnt_r": s.cnt_r,
        "sum_r": s.sum_r,
        "pri": s.pri,
        "voi": s.voi,
    }


def level_rows(
    image: str,
    method: str,
    labels: np.ndarray,
    levels,
    gts: Sequence[np.ndarray],
    *,
    ignore_index: int | None = None,
) -> list[dict[str, object]]:
    """The rows of ``region_levels.csv`` for one image and method: its own labels (the
    default cut), then, when it has levels, each of them. ``levels`` is a hierarchy (cut
    at :data:`HIERARCHY_LEVELS`), a list of partitions (a classical method swept over a
    parameter) or None; everything at the ground truth's shape.
    """
    rows = [
        _row(
            image,
            method,
            partition_scores(labels, gts, ignore_index),
            level=OWN_CUT,
            value=-1,
            n_regions=int(np.unique(labels).size),
        )
    ]
    if levels is None:
        return rows
    if isinstance(levels, (list, tuple)):
        for k, part in enumerate(levels):
            rows.append(
                _row(
                    image,
                    method,
                    partition_scores(part, gts, ignore_index),
                    level=k,
                    value=k,
                    n_regions=int(np.unique(part).size),
                )
            )
        return rows
    luts = [np.concatenate([[0], levels.region_ids(v)]) for v in HIERARCHY_LEVELS]
    for k, (v, lut, s) in enumerate(
        zip(
            HIERARCHY_LEVELS,
            luts,
            levels_scores(levels.base, luts, gts, ignore_index),
            strict=False,
        )
    ):
        rows.append(_row(image, method, s, level=k, value=v, n_regions=int(lut.max())))
    return rows


def summarise_levels(rows: Sequence[dict[str, str]]) -> dict[str, dict[str, float]]:
    """Per method: the benchmark at ODS and OIS over its levels (methods without levels:
    their own labels, ODS = OIS), its own labels' figures (``cut_*``) and, with levels,
    the ODS level's value and median regions there.
    """
    by: dict[str, dict[str, dict[str, dict[str, str]]]] = {}
    for r in rows:  # (the last row of a repeated image, method and level wins)
        by.setdefault(r["method"], {}).setdefault(r["image"], {})[r["level"]] = r
    out = {}
    for method, images in by.items():
        own = {i: [_scores(lv[OWN_CUT])] for i, lv in images.items() if OWN_CUT in lv}
        graded = {
            i: [_scores(lv[k]) for k in sorted((k for k in lv if k != OWN_CUT), key=int)]
            for i, lv in images.items()
        }
        if own:
            out[method] = {f"cut_{k}": v for k, v in ods_ois(own).items() if k.endswith("_ods")}
        if graded and all(graded.values()):
            summary = ods_ois(graded)
            k = summary["ods_level"]
            values = [float(images[i][str(k)]["value"]) for i in images if str(k) in images[i]]
            counts = [int(images[i][str(k)]["n_regions"]) for i in images if str(k) in images[i]]
            out.setdefault(method, {}).update(
                summary, ods_value=values[0], ods_median_regions=float(np.median(counts))
            )
    return out


def _scores(row: dict[str, str]) -> LevelScores:
    return LevelScores(*(float(row[c]) for c in LEVEL_COLUMNS))
