"""Time of applying a trained network to a 100-frame 256 x 256 RGB stack (no training).

.venv/bin/python benchmarks/apply_stack.py
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from napari_inceptseg import apply_stack, segment  # noqa: E402
from sample_images import moving_shapes  # noqa: E402


def main() -> None:
    frames, _ = moving_shapes(n_frames=100, size=256)
    for arch in ("vanilla", "inception"):
        model = segment(frames[0], arch=arch, max_iter=2, seed=0, device="cpu").trained_model()
        t = time.perf_counter()
        labels = apply_stack(model, frames, rgb=True, device="cpu")
        dt = time.perf_counter() - t
        print(
            f"{arch}: {labels.shape[0]} frames of 256 x 256 in {dt:.1f} s "
            f"({dt / labels.shape[0]:.3f} s/frame)"
        )


if __name__ == "__main__":
    main()
