"""Seconds per optimisation iteration of both networks on a BSDS500-sized image.

    .venv/bin/python benchmarks/time_per_iteration.py [--iters 5] [--device cpu]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np


def main() -> None:
    from napari_inceptseg import segment_iter

    ap = argparse.ArgumentParser()
    ap.add_argument("--iters", type=int, default=5)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--shape", type=int, nargs=2, default=(321, 481))
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (*args.shape, 3), dtype=np.uint8)
    for arch in ("vanilla", "inception"):
        gen = segment_iter(image, arch=arch, max_iter=args.iters + 1, min_labels=1, seed=0, device=args.device)
        next(gen)  # warm-up iteration
        times = []
        t = time.perf_counter()
        for _ in gen:
            now = time.perf_counter()
            times.append(now - t)
            t = now
        print(f"{arch:9s} {args.shape[0]}x{args.shape[1]} {args.device}: "
              f"{statistics.median(times):.2f} s/iteration (median of {len(times)})", flush=True)


if __name__ == "__main__":
    main()
