"""How far can grouping the default's regions go on nuclei? (issue 16)

For every DSB2018 image the default method segments once (the seed ``evaluate``
uses), then its regions are grouped with the help of the ground truth, which no
method has:

- ``perfect merge``: every region takes the nucleus (or background) most of its
  pixels lie on -- the best any merging of the default's regions can score;
- ``perfect two groups``: every region goes to nuclei or background, whichever most
  of its pixels lie on, and the scores see the face-connected pieces -- the best
  that grouping the regions into two labels (``n_clusters=2``) can score.

When even these fall short of a threshold, the regions' borders, not the merging,
are what holds the default back on nuclei. Usage::

    .venv/bin/python benchmarks/microscopy_ceiling.py --root ../shared/data/dsb2018 [--limit N]
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

from napari_inceptseg.bench.baselines import run_baseline
from napari_inceptseg.bench.datasets import list_items
from napari_inceptseg.bench.evaluate import image_seed, score_row
from napari_inceptseg.labels import dense_ids
from napari_inceptseg.scoring.metrics import contingency_table

COLUMNS = ("standard_miou", "standard_nmi", "kim_miou", "f1")


def perfect_merge(regions: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """Every region takes the ground-truth id most of its pixels have (1 = background)."""
    table, _, gt_ids = contingency_table(regions, gt)
    _, index = dense_ids(regions.ravel())
    return gt_ids[table.argmax(1)][index].reshape(regions.shape) + 1


def perfect_two_groups(regions: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """Every region goes to nuclei (2) or background (1), whichever most of it lies on."""
    return perfect_merge(regions, (gt > 0).astype(np.int64))


def rows_for(item, seed: int):
    from napari_inceptseg import segment

    image, gts = item.load()
    labels = segment(image, seed=image_seed(seed, item.name), device="cpu").labels
    preds = {
        "default": labels,
        "perfect merge": perfect_merge(labels, gts[0]),
        "perfect two groups": perfect_two_groups(labels, gts[0]),
        "otsu": run_baseline("otsu", image),
        "li": run_baseline("li", image),
    }
    return {name: score_row(pred, gts, None, instances=True) for name, pred in preds.items()}


def _interval(diff: np.ndarray, rng, n_boot: int = 10_000):
    means = diff[rng.integers(0, diff.size, (n_boot, diff.size))].mean(1)
    return np.percentile(means, [2.5, 97.5])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--root", required=True, help="the dsb2018 folder (images/, labels/)")
    ap.add_argument("--limit", type=int, default=0, help="only the first N images")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    items = list_items("dsb2018", args.root)
    items = items[: args.limit] if args.limit else items
    per = [rows_for(item, args.seed) for item in items]
    rng = np.random.default_rng(0)
    print(
        f"{len(per)} images; differences against Otsu and Li: mean [95% paired bootstrap "
        "interval]\n"
    )
    print(
        "| grouping of the default's regions | "
        + " | ".join(COLUMNS)
        + " | kim - otsu | F1 - otsu | kim - li | F1 - li |"
    )
    print("|---|" + "---|" * (len(COLUMNS) + 4))
    for name in ("default", "perfect merge", "perfect two groups", "otsu", "li"):
        cells = [f"{np.mean([p[name][c] for p in per]):.3f}" for c in COLUMNS]
        for other in ("otsu", "li"):
            for c in ("kim_miou", "f1"):
                d = np.array([p[name][c] - p[other][c] for p in per])
                lo, hi = _interval(d, rng)
                cells.append(f"{d.mean():+.3f} [{lo:+.3f}, {hi:+.3f}]")
        print(f"| {name} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
