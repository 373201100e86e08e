"""Memory and time of the 3D and large-image paths (issue 6).

Runs one configuration per process and reports the engine's plan, seconds per
iteration, prediction time and peak RSS (VmHWM)::

    python benchmarks/large.py volume --shape 64 256 256 --memory-gb 8 --iters 5
    python benchmarks/large.py image --shape 8000 8000 --iters 5

``volume`` segments a synthetic single-channel volume in 3D mode; ``image`` a
synthetic RGB slide-like image (2D). Numbers go to docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from pathlib import Path

import numpy as np

import napari_inceptseg  # noqa: F401  (sets THP before torch)


def peak_rss_gb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024 / 1e9
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("kind", choices=("volume", "image"))
    ap.add_argument("--shape", type=int, nargs="+", required=True)
    ap.add_argument("--arch", default="vanilla")
    ap.add_argument("--iters", type=int, default=5)
    ap.add_argument("--memory-gb", type=float, default=0.0)
    ap.add_argument("--tile-size", type=int, default=0)
    ap.add_argument("--n-channels", type=int, default=100)
    args = ap.parse_args()

    from napari_inceptseg import segment_iter

    rng = np.random.default_rng(0)
    shape = tuple(args.shape)
    if args.kind == "volume":
        image = rng.normal(0.3, 0.1, shape).astype(np.float32)
        z, y, x = (np.arange(s) for s in shape)
        image[
            shape[0] // 4 : 3 * shape[0] // 4, shape[1] // 4 : 3 * shape[1] // 4, : shape[2] // 2
        ] += 0.5
        dims = "3d"
    else:
        image = rng.integers(100, 140, shape + (3,), dtype=np.uint8)
        image[: shape[0] // 2, : shape[1] // 3] = (200, 80, 60)
        dims = "2d"
    t0 = time.perf_counter()
    gen = segment_iter(
        image,
        arch=args.arch,
        dims=dims,
        max_iter=args.iters,
        min_labels=1,
        seed=0,
        device="cpu",
        memory_gb=args.memory_gb,
        tile_size=args.tile_size,
        n_channels=args.n_channels,
    )
    stamps = []
    while True:
        try:
            next(gen)
            stamps.append(time.perf_counter())
        except StopIteration as stop:
            res = stop.value
            break
    t_end = time.perf_counter()
    steps = np.diff([t0] + stamps)
    print(
        json.dumps(
            {
                "kind": args.kind,
                "shape": shape,
                "arch": args.arch,
                "n_channels": args.n_channels,
                "memory_gb": args.memory_gb,
                "plan": res.plan,
                "first_step_s": round(float(steps[0]), 2),
                "s_per_iter": round(
                    float(np.median(steps[1:])) if len(steps) > 1 else float(steps[0]), 2
                ),
                "predict_s": round(t_end - stamps[-1], 1),
                "total_s": round(t_end - t0, 1),
                "peak_rss_gb": round(peak_rss_gb(), 2),
                "n_labels": res.n_labels,
            }
        )
    )


if __name__ == "__main__":
    main()
