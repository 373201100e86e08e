"""Paired comparisons of `napari-inceptseg evaluate` results, image by image.

Two uses:

    # one method against every other method (e.g. the default against the baselines),
    # over the images both scored; more runs add their methods as "name@scale"
    .venv/bin/python benchmarks/compare_runs.py --method default RUN_DIR [MORE_RUN_DIRS ...]

    # the same methods in several runs (e.g. an ablation) against the first
    .venv/bin/python benchmarks/compare_runs.py REF_DIR OTHER_DIR [OTHER_DIR ...]

Differences are (method - other) per image, with a 95% paired bootstrap interval over
images (10,000 resamples, seeded; ``napari_inceptseg.bench.stats``). The pooled kim
mIoU (every ground-truth segment of every image and annotator together, as Kim et al.
report it) is a ratio of sums; its interval resamples images and recomputes both pools.
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import numpy as np

from napari_inceptseg.bench.stats import paired_difference, pooled_difference

#: the metrics of the method comparison: (column, label); "kim_pooled" is computed
AGAINST = (
    ("standard_miou", "mIoU (Hungarian)"),
    ("kim_miou", "kim mIoU (per image)"),
    ("kim_pooled", "kim mIoU (pooled)"),
    ("standard_nmi", "NMI"),
    ("f1", "object F1 at IoU 0.5"),
    ("map", "DSB mAP"),
    ("f1_50", "DSB F1 at IoU .5"),
    ("f1_avg", "DSB F1 averaged"),
)


def _rows(run: Path):
    with open(run / "results.csv", newline="") as f:
        return {(r["image"], r["method"]): r for r in csv.DictReader(f)}


def _label(run: Path) -> str:
    config = json.loads((run / "config.json").read_text())
    if "ablation" in config:
        return config["ablation"]
    p = config["params"]
    if p.get("coarse_scale", 1.0) < 1.0:
        return (
            f"coarse {p['coarse_scale']} x {min(p['coarse_iter'], p['max_iter'])} + "
            f"{p['refine_iter']} full"
        )
    return f"full resolution, max_iter {p.get('max_iter', 'preset')}"


def paired(a: dict[str, dict[str, str]], b: dict[str, dict[str, str]], column: str, n_boot: int):
    """``(mean a, mean b, difference, (lo, hi))`` over the images both have
    (``napari_inceptseg.bench.stats``; images where either value is undefined are left out)."""
    images = sorted(set(a) & set(b))
    if column == "kim_pooled":
        d = pooled_difference(
            *[
                [float(rows[i][c]) for i in images]
                for rows in (a, b)
                for c in ("kim_sum", "kim_segments")
            ],
            n_boot=n_boot,
        )
    else:
        d = paired_difference(
            [float(a[i][column]) for i in images],
            [float(b[i][column]) for i in images],
            n_boot=n_boot,
        )
    return d.ours, d.theirs, d.diff, (d.lo, d.hi)


def _by_method(runs: list[Path]) -> dict[str, dict[str, dict[str, str]]]:
    """method name -> image -> row; methods of the second and later runs are named
    ``name@scale`` (their config's --scale)."""
    out: dict[str, dict[str, dict[str, str]]] = {}
    for k, run in enumerate(runs):
        scale = json.loads((run / "config.json").read_text()).get("scale", 1.0)
        for (image, method), row in _rows(run).items():
            name = method if k == 0 else f"{method}@{scale:g}"
            out.setdefault(name, {})[image] = row
    return out


def _present(metrics, rows) -> list:
    """The metrics that ``rows`` (image -> row) have (object F1 only with instance ground truth)."""
    first = next(iter(rows.values()))
    return [(c, label) for c, label in metrics if c == "kim_pooled" or c in first]


def against(method: str, runs: list[Path], n_boot: int) -> int:
    """One method against every other method of ``runs``: a markdown table."""
    table = _by_method(runs)
    if method not in table:
        raise SystemExit(
            f"no method {method!r} in {', '.join(map(str, runs))} (have {', '.join(table)})"
        )
    print(f"| {method} vs | metric | {method} | other | difference (95% CI) | images |")
    print("|---|---|---|---|---|---|")
    worst = []
    for other in table:
        if other == method:
            continue
        for column, label in _present(AGAINST, table[method]):
            ours, theirs, diff, (lo, hi) = paired(table[method], table[other], column, n_boot)
            n = len(set(table[method]) & set(table[other]))
            print(
                f"| {other} | {label} | {ours:.3f} | {theirs:.3f} | {diff:+.3f} ({lo:+.3f} "
                f".. {hi:+.3f}) | {n} |"
            )
            worst.append((lo, other, label))
    lo, other, label = min(worst)
    print(
        f"\nLowest lower bound: {lo:+.3f} ({label} against {other}); "
        f"{'every interval lies above 0' if lo > 0 else 'NOT every interval lies above 0'}."
    )
    return 0


def between_runs(ref: Path, others: list[Path], n_boot: int) -> int:
    """The same methods in several runs, each against the first run: seconds per image,
    then each metric of the comparison with its difference from the reference."""
    ref_rows = _rows(ref)
    metrics = _present(AGAINST, ref_rows)
    print(
        "| method | run | images | s / image | labels / image | "
        + " | ".join(f"{label} (difference, 95% CI)" for _, label in metrics)
        + " |"
    )
    print("|---|---|---|---|---|" + "---|" * len(metrics))
    for method in sorted({m for _, m in ref_rows}):
        mine = {i: r for (i, m), r in ref_rows.items() if m == method}
        for run in [ref, *others]:
            rows = {i: r for (i, m), r in _rows(run).items() if m == method and i in mine}
            if not rows:
                continue
            sec = np.mean([float(r["seconds"]) for r in rows.values()])
            n_labels = np.mean([float(r["n_clusters"]) for r in rows.values()])
            cells = []
            for column, _ in metrics:
                value, _, d, (lo, hi) = paired(rows, mine, column, n_boot)
                cells.append(
                    f"{value:.3f}"
                    if run == ref
                    else f"{value:.3f} ({d:+.3f}, {lo:+.3f} .. {hi:+.3f})"
                )
            print(
                f"| {method} | {_label(run)} | {len(rows)} | {sec:.2f} | {n_labels:.0f} | "
                + " | ".join(cells)
                + " |"
            )
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("runs", type=Path, nargs="+", help="evaluate output folders")
    ap.add_argument("--method", help="compare this method with every other method of the runs")
    ap.add_argument("--boot", type=int, default=10000, help="bootstrap resamples")
    args = ap.parse_args(argv)
    if args.method:
        return against(args.method, args.runs, args.boot)
    if len(args.runs) < 2:
        ap.error("give a reference run and at least one other, or --method")
    return between_runs(args.runs[0], args.runs[1:], args.boot)


if __name__ == "__main__":
    raise SystemExit(main())
