"""Choose the default method's level (where its region hierarchy is cut) on the dev sets
together: BSDS500 val, CamVid val and DSB2018.

    .venv/bin/python benchmarks/choose_level.py --data ../shared/data -o bench/levels

For every image the default method runs once (seed from the image's name, as in
`evaluate`) and its hierarchy is cut at every level of the region benchmark's grid. The
rule, one setting for all data sets:

1. a level is allowed when every comparison with the baselines that held at the finest
   level still holds there: on BSDS500 and on CamVid, against k-means 3, k-means 5,
   Felzenszwalb and SLIC, on Hungarian mIoU, kim mIoU (per image and pooled) and NMI,
   each paired 95 % bootstrap interval that lay above 0 at level 0 still does, and none
   that did not lie below 0 comes to (pooled kim against Felzenszwalb on BSDS500 was
   never significantly above it);
2. among the allowed levels, the one with the highest mean over the three data sets of
   the benchmark's covering (BSDS500's definition: every ground-truth segment takes its
   best IoU, weighted by its area) is the default.

It prints one line per level (claims, covering per data set, VoI on BSDS500, DSB2018's
pooled kim and object F1, median regions) and the choice. Per-image numbers are kept in
the output folder, so a rerun only redoes what is missing.
"""

from __future__ import annotations

import argparse
import json
import warnings
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from napari_inceptseg.bench.baselines import run_baseline
from napari_inceptseg.bench.datasets import list_items
from napari_inceptseg.bench.evaluate import image_seed
from napari_inceptseg.bench.region_benchmark import HIERARCHY_LEVELS, levels_scores
from napari_inceptseg.bench.stats import paired_difference, pooled_difference
from napari_inceptseg.scoring.metrics import instance_scores, region_scores, score

DATASETS = ("bsds500", "camvid", "dsb2018")
CLAIM_SETS = ("bsds500", "camvid")
BASELINES = ("kmeans3", "kmeans5", "felzenszwalb", "slic")
CLAIM_METRICS = ("miou", "kim", "kim_pooled", "nmi")


def _claim_scores(labels, gts, ignore) -> dict:
    per = [score(labels, gt, ignore_index=ignore) for gt in gts]
    mean = {
        k: float(np.mean([p[m] for p in per]))
        for k, m in (("miou", "miou"), ("kim", "kim_miou"), ("nmi", "nmi"))
    }
    return {
        **mean,
        "kim_sum": float(sum(p["kim_sum"] for p in per)),
        "kim_n": int(sum(p["kim_segments"] for p in per)),
    }


def _dsb_scores(labels, gt) -> dict:
    reg = region_scores(labels, gt)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return {
            "kim_sum": reg["kim_sum"],
            "kim_n": reg["kim_segments"],
            "f1": instance_scores(labels, gt)["f1"],
        }


def one_image(job) -> dict:
    """Every number of one image: the default's at each level, the baselines'."""
    dataset, item, out = job
    cached = out / dataset / f"{item.name}.json"
    if cached.exists():
        return json.loads(cached.read_text())
    from napari_inceptseg import segment

    image, gts = item.load()
    res = segment(image, seed=image_seed(0, item.name), device="cpu")
    h = res.hierarchy
    luts = [np.concatenate([[0], h.region_ids(v)]) for v in HIERARCHY_LEVELS]
    bench = levels_scores(h.base, luts, gts, item.ignore_index)
    levels = []
    for lut, b in zip(luts, bench, strict=False):
        labels = lut[h.base]
        row = {"n": int(lut.max()), "cnt_r": b.cnt_r, "sum_r": b.sum_r, "voi": b.voi}
        row.update(
            _dsb_scores(labels, gts[0])
            if dataset == "dsb2018"
            else _claim_scores(labels, gts, item.ignore_index)
        )
        levels.append(row)
    base = (
        {}
        if dataset == "dsb2018"
        else {
            b: _claim_scores(
                run_baseline(b, image, seed=image_seed(0, item.name)), gts, item.ignore_index
            )
            for b in BASELINES
        }
    )
    record = {"levels": levels, "baselines": base}
    cached.parent.mkdir(parents=True, exist_ok=True)
    cached.write_text(json.dumps(record))
    return record


def _difference(records, k, baseline, metric):
    if metric == "kim_pooled":
        return pooled_difference(
            [r["levels"][k]["kim_sum"] for r in records],
            [r["levels"][k]["kim_n"] for r in records],
            [r["baselines"][baseline]["kim_sum"] for r in records],
            [r["baselines"][baseline]["kim_n"] for r in records],
        )
    return paired_difference(
        [r["levels"][k][metric] for r in records],
        [r["baselines"][baseline][metric] for r in records],
    )


def claims_hold(records, k) -> tuple:
    """(every comparison that held at level 0 holds at level k, and none that was not
    significantly negative there has become so; the lowest lower bound of the claims)."""
    worst, ok = np.inf, True
    for b in BASELINES:
        for m in CLAIM_METRICS:
            d, first = _difference(records, k, b, m), _difference(records, 0, b, m)
            if first.lo > 0:
                worst = min(worst, d.lo)
                ok = ok and d.lo > 0
            elif first.hi > 0:
                ok = ok and d.hi > 0
    return ok, worst


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--data", type=Path, default=Path("../shared/data"), help="the dev sets' folder"
    )
    ap.add_argument(
        "-o", "--out", type=Path, required=True, help="where per-image numbers are kept"
    )
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args(argv)
    jobs = [(d, item, args.out) for d in DATASETS for item in list_items(d, args.data / d, "val")]
    with ProcessPoolExecutor(args.workers) as pool:
        records = list(pool.map(one_image, jobs, chunksize=1))
    by = {d: [r for (dd, _, _), r in zip(jobs, records, strict=False) if dd == d] for d in DATASETS}
    print(
        "| level | claims hold (lowest bound BSDS / CamVid) | covering BSDS / CamVid / DSB | "
        "mean covering "
        "| VoI BSDS | DSB kim pooled / F1 | median regions BSDS |"
    )
    print("|---|---|---|---|---|---|---|")
    best = None
    for k, value in enumerate(HIERARCHY_LEVELS):
        holds = [claims_hold(by[d], k) for d in CLAIM_SETS]
        cover = [
            sum(r["levels"][k]["cnt_r"] for r in by[d])
            / sum(r["levels"][k]["sum_r"] for r in by[d])
            for d in DATASETS
        ]
        dsb = by["dsb2018"]
        kim = sum(r["levels"][k]["kim_sum"] for r in dsb) / sum(
            r["levels"][k]["kim_n"] for r in dsb
        )
        f1 = np.nanmean([r["levels"][k]["f1"] for r in dsb])
        ok = all(h for h, _ in holds)
        if ok and (best is None or np.mean(cover) > best[1]):
            best = (value, float(np.mean(cover)))
        print(
            f"| {value:.3f} | {'yes' if ok else 'no'} ({holds[0][1]:+.3f} / {holds[1][1]:+.3f}) | "
            + " / ".join(f"{c:.3f}" for c in cover)
            + f" | {np.mean(cover):.3f} | "
            f"{np.mean([r['levels'][k]['voi'] for r in by['bsds500']]):.3f} | {kim:.3f} / "
            f"{f1:.3f} | "
            f"{np.median([r['levels'][k]['n'] for r in by['bsds500']]):.0f} |"
        )
    print(
        f"\nchosen level: {best[0]:.3f} (mean covering {best[1]:.3f})"
        if best
        else "\nno level keeps every claim"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
