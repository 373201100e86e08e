"""Per-imaging-type tables of a DSB2018 evaluation (issue 16): the image's colour is its type.

    .venv/bin/python -m napari_inceptseg evaluate --dataset dsb2018 --root ../shared/data/dsb2018 \\
        --method default otsu li kmeans2 kmeans3 felzenszwalb -o bench/dsb
    .venv/bin/python benchmarks/microscopy_types.py bench/dsb [bench/dsb-k2 ...]

Types: ``fluorescence`` (grey, dark background), ``brightfield`` (grey, light
background), ``stained`` (colour, e.g. H&E). Prints one markdown table per type:
every method of every run folder, mean of each score, pooled kim, seconds per image.
"""

from __future__ import annotations

import csv
import json
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

COLUMNS = (
    ("standard_miou", "mIoU"),
    ("standard_nmi", "NMI"),
    ("kim_miou", "kim"),
    ("f1", "F1 @ 0.5"),
    ("matched_iou", "matched IoU"),
    ("n_clusters", "clusters"),
    ("seconds", "s / image"),
)


def imaging_type(path: Path) -> str:
    from napari_inceptseg.io import read_image

    image = read_image(path)[..., :3].astype(np.float64)
    if image.ndim == 3 and np.abs(image - image.mean(-1, keepdims=True)).mean() > 2.0:
        return "stained"
    grey = image.mean(-1) if image.ndim == 3 else image
    return (
        "fluorescence"
        if np.median(grey) < grey.mean() + 1 and np.median(grey) < 100
        else "brightfield"
    )


def main(argv) -> int:
    runs = [Path(a) for a in argv]
    root = Path(json.loads((runs[0] / "config.json").read_text())["root"])
    rows = [
        dict(r, run=run.name)
        for run in runs
        for r in csv.DictReader((run / "results.csv").read_text().splitlines())
    ]
    types = {
        name: imaging_type(root / "images" / f"{name}.png") for name in {r["image"] for r in rows}
    }
    groups = defaultdict(list)
    for r in rows:
        groups[(types[r["image"]], r["run"], r["method"])].append(r)
    for kind in ("fluorescence", "brightfield", "stained"):
        n = sum(1 for t in types.values() if t == kind)
        print(f"\n**{kind}** ({n} images)\n")
        print("| run | method | " + " | ".join(h for _, h in COLUMNS) + " | kim, pooled |")
        print("|---|---|" + "---|" * (len(COLUMNS) + 1))
        for (k, run, method), rs in sorted(groups.items()):
            if k != kind:
                continue
            cells = [f"{np.mean([float(r[c]) for r in rs]):.3f}" for c, _ in COLUMNS]
            pooled = sum(float(r["kim_sum"]) for r in rs) / sum(
                float(r["kim_segments"]) for r in rs
            )
            print(f"| {run} | {method} | " + " | ".join(cells) + f" | {pooled:.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
