"""Time of `score` on a 512 x 512 pair with 100 clusters (target: under 50 ms).

.venv/bin/python benchmarks/score_time.py
"""

from __future__ import annotations

import timeit

import numpy as np


def main() -> None:
    from napari_inceptseg import score

    rng = np.random.default_rng(0)
    gt = rng.integers(0, 21, (512, 512)).astype(np.int32)
    pred = rng.integers(1, 101, (512, 512)).astype(np.int32)
    for matching in ("hungarian", "majority"):
        score(pred, gt, matching=matching)  # warm-up (imports scipy)
        runs = timeit.repeat(lambda m=matching: score(pred, gt, matching=m), number=1, repeat=20)
        print(
            f"score 512x512, 100 clusters x 21 classes, {matching:9s}: "
            f"median {1000 * np.median(runs):.1f} ms, max {1000 * max(runs):.1f} ms"
        )


if __name__ == "__main__":
    main()
