"""What each step of ``objects=True`` adds on nuclei, from the classical recipe up.

Every DSB2018 image is labelled four ways, and each row is scored with the DSB2018
metric (``scoring.objects.dsb_scores``) and compared with the recipe (paired 95 %
bootstrap intervals over the images):

- ``recipe``: Otsu + distance watershed, h = 2 px (the ``otsu-watershed`` baseline);
- ``+ contrast``: the same on the channels' first principal component, objects bright
  (``objects.find.object_intensity``);
- ``+ borders``: each object's border at its own half maximum (``refine_borders``);
- ``+ scaled depth``: the split's depth scaled to the objects: ``find_objects``.

Usage::

    .venv/bin/python benchmarks/objects_ablation.py --root ../shared/data/dsb2018
"""

from __future__ import annotations

import argparse

import numpy as np
from scipy import ndimage as ndi
from skimage.filters import threshold_otsu

from napari_inceptseg.bench.baselines import run_baseline
from napari_inceptseg.bench.datasets import list_items
from napari_inceptseg.bench.stats import paired_difference
from napari_inceptseg.image import prepare_image
from napari_inceptseg.objects.find import (
    distance_split,
    find_objects,
    object_intensity,
    refine_borders,
)
from napari_inceptseg.scoring.objects import dsb_scores

METRICS = ("map", "f1_50", "f1_avg")


def with_borders(data: np.ndarray) -> np.ndarray:
    """The recipe on the contrast, then each object's border at its half maximum."""
    grey = object_intensity(data)
    threshold = threshold_otsu(grey)
    seeds = distance_split(grey > threshold)
    background = float(np.median(grey[grey <= threshold]))
    return refine_borders(ndi.gaussian_filter(grey, 1.0), seeds, (background, threshold))


def steps(image) -> dict[str, np.ndarray]:
    """The four labellings of one image."""
    data = prepare_image(image)
    grey = object_intensity(data)
    return {
        "recipe": run_baseline("otsu-watershed", image),
        "+ contrast": distance_split(grey > threshold_otsu(grey)),
        "+ borders": with_borders(data),
        "+ scaled depth": find_objects(data),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default="../shared/data/dsb2018")
    args = parser.parse_args()
    scores: dict[str, list[dict]] = {}
    for item in list_items("dsb2018", args.root):
        image, gts = item.load()
        for name, labels in steps(image).items():
            scores.setdefault(name, []).append(dsb_scores(labels, gts[0]))
    print("| step | " + " | ".join(f"{m} (vs recipe)" for m in METRICS) + " |")
    print("|---|" + "---|" * len(METRICS))
    for name, rows in scores.items():
        cells = []
        for m in METRICS:
            d = paired_difference(
                [r[m] for r in rows], [r[m] for r in scores["recipe"]], n_boot=10_000
            )
            cells.append(f"{d.ours:.3f} ({d.diff:+.3f} [{d.lo:+.3f}, {d.hi:+.3f}])")
        print(f"| {name} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
