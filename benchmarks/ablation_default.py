"""What each part of the default method gives: one variant per run, scored like `evaluate`.

    .venv/bin/python benchmarks/ablation_default.py ROW --dataset bsds500 -o bench/ablation
    .venv/bin/python benchmarks/compare_runs.py bench/ablation/bsds500-default \
        bench/ablation/bsds500-*

Each ROW is the default method with one thing changed (see ROWS below); the output
folder ``OUT/DATASET-ROW`` is an ordinary `evaluate` results folder (method "default",
full resolution, seed 0, per-image seeds as `evaluate` draws them), so
`compare_runs.py` gives the paired differences against the default with intervals.
Rows that change a constant of `napari_inceptseg.labels`, or add a prototype that
is not part of the package (a continuity weight that follows the cluster count,
extra input channels), patch it in this process only.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def _dynamic_continuity(beta: float):
    """DynaSeg (2024): continuity weight = (clusters now) / beta at every step."""
    import torch

    from napari_inceptseg.engine.modeling import loss as loss_module

    plain = loss_module.cluster_loss

    def loss(response, w_sim, w_con, *args, **kwargs):
        with torch.no_grad():
            k = int(torch.bincount(response.argmax(1).reshape(-1)).count_nonzero())
        return plain(response, w_sim, k / beta, *args, **kwargs)

    loss_module.cluster_loss = loss  # (the step imports it when a run starts)


def _extra_inputs(kind: str):
    """More input channels than CIELAB: pixel coordinates, or a blurred copy."""
    from scipy import ndimage as ndi

    from napari_inceptseg.engine.workflow import inputs

    plain = inputs.to_colour_space

    def colour(data, space, rgb):
        out = plain(data, space, rgb)
        if kind == "xy":
            h, w = out.shape[-2:]
            yy, xx = np.mgrid[0:h, 0:w].astype(np.float32) / max(h, w)
            return np.concatenate([out, yy[None], xx[None]])
        blurred = ndi.gaussian_filter(out, (0, 4, 4)).astype(np.float32)
        return np.concatenate([out, blurred])

    inputs.to_colour_space = colour


def _constant(name: str, value, module: str = "regions.pixels"):
    import importlib

    setattr(importlib.import_module(f"napari_inceptseg.{module}"), name, value)


#: row -> (engine overrides, what to patch first)
ROWS = {
    "default": ({}, None),
    "rgb-input": ({"color_space": "rgb"}, None),
    "xy-input": ({}, lambda: _extra_inputs("xy")),
    "blurred-input": ({}, lambda: _extra_inputs("blur")),
    "full-res-training": ({"train_pixels": 0}, None),
    "1-iteration": ({"max_iter": 1}, None),
    "40-iterations": ({"max_iter": 40}, None),
    "100-iterations": ({"max_iter": 100}, None),
    "dynamic-continuity": ({}, lambda: _dynamic_continuity(15.0)),
    "100-channels": ({"n_channels": 100}, None),
    "raw-clusters": ({"regions": False}, None),
    "no-superpixel-vote": (
        {},
        lambda: _constant("superpixel_vote", lambda clusters, image: clusters),
    ),
    "no-small-absorb": (
        {},
        lambda: (_constant("MIN_REGION_FRACTION", 0.0), _constant("MIN_REGION_PIXELS", 1)),
    ),
    "no-border-merge": ({}, lambda: _constant("EDGE_THRESHOLD", 0.0, "regions.merges")),
    "no-mean-merge": ({"merge_threshold": 0.0}, None),
}


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("row", choices=tuple(ROWS))
    ap.add_argument("--dataset", choices=("bsds500", "camvid"), required=True)
    ap.add_argument("-o", "--out", type=Path, required=True)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = ap.parse_args()
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    from napari_inceptseg.bench.datasets import list_items
    from napari_inceptseg.bench.evaluate import run_evaluation

    overrides, patch = ROWS[args.row]
    if patch is not None:
        patch()
    items = list_items(args.dataset, DATA / args.dataset, "val")
    params = {"device": "cpu", "seed": 0, **overrides}
    config = {"dataset": args.dataset, "ablation": args.row, "scale": 1.0, "params": params}
    run_evaluation(
        items,
        ["default"],
        params,
        args.out / f"{args.dataset}-{args.row}",
        config=config,
        progress=False,
        log=lambda *a: None,
    )


if __name__ == "__main__":
    main()
