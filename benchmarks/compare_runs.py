"""Compare `napari-inceptseg evaluate` runs image by image (speed and quality together).

    .venv/bin/python benchmarks/compare_runs.py REF_DIR OTHER_DIR [OTHER_DIR ...] [--metric standard_miou]

For every method present in the reference run and another run, over the images
both scored: mean seconds per image, mean of each standard-protocol metric, and
the paired difference (other - reference) of ``--metric`` with a 95% bootstrap
interval over images. Used for the coarse-to-fine table in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import numpy as np

METRICS = ("standard_miou", "standard_accuracy", "standard_nmi")


def _rows(run: Path):
    with open(run / "results.csv", newline="") as f:
        return {(r["image"], r["method"]): r for r in csv.DictReader(f)}


def _label(run: Path) -> str:
    p = json.loads((run / "config.json").read_text())["params"]
    if p.get("coarse_scale", 1.0) < 1.0:
        return f"coarse {p['coarse_scale']} x {min(p['coarse_iter'], p['max_iter'])} + {p['refine_iter']} full"
    return f"full resolution, max_iter {p['max_iter']}"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("ref", type=Path)
    ap.add_argument("others", type=Path, nargs="+")
    ap.add_argument("--metric", default="standard_miou")
    ap.add_argument("--boot", type=int, default=10000)
    args = ap.parse_args(argv)
    ref = _rows(args.ref)
    rng = np.random.default_rng(0)
    print("| method | run | images | s / image | mIoU | accuracy | NMI | "
          f"{args.metric} - reference (95% CI) |")
    print("|---|---|---|---|---|---|---|---|")
    for method in sorted({m for _, m in ref}):
        for run in [args.ref, *args.others]:
            rows = _rows(run)
            keys = sorted(k for k in rows if k[1] == method and k in ref)
            if not keys:
                continue
            sec = np.mean([float(rows[k]["seconds"]) for k in keys])
            means = [np.mean([float(rows[k][m]) for k in keys]) for m in METRICS]
            diff = "-"
            if run != args.ref:
                d = np.array([float(rows[k][args.metric]) - float(ref[k][args.metric]) for k in keys])
                boot = rng.choice(d, size=(args.boot, d.size)).mean(1)
                lo, hi = np.percentile(boot, [2.5, 97.5])
                diff = f"{d.mean():+.3f} ({lo:+.3f} .. {hi:+.3f})"
            print(f"| {method} | {_label(run)} | {len(keys)} | {sec:.1f} | "
                  + " | ".join(f"{v:.3f}" for v in means) + f" | {diff} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
