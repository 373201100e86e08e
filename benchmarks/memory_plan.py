"""The memory plan against the measured peak: each case runs in a fresh process whose
resident memory is polled every 2 ms, per phase (training, then the final pass).

    .venv/bin/python benchmarks/memory_plan.py            # the calibration cases (~4 min)
    # + a 12000 x 12000 RGB image (~2 min, 15 GB)
    .venv/bin/python benchmarks/memory_plan.py --large

Prints one row per case: the plan's peak (``plan_image(...).peak_bytes``, made before
the run), the measured peak of each phase and of the whole process, and their ratio.
``heap`` says whether the CPU's fast heap was used (NAPARI_INCEPTSEG_HEAP=0 turns it
off). Run on a machine with a few GB free; nothing else should start meanwhile.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

CASES = [  # (name, (h, w), preset, overrides, fast heap)
    ("default, BSDS size", (321, 481), "default", {}, True),
    ("default, 1.5 MP", (1000, 1500), "default", {}, True),
    ("default, 16 MP", (4000, 4000), "default", {}, True),
    (
        "paper-vanilla, 40 steps",
        (321, 481),
        "paper-vanilla",
        {"max_iter": 40, "min_labels": 1},
        True,
    ),
    (
        "paper-vanilla, 40 steps",
        (321, 481),
        "paper-vanilla",
        {"max_iter": 40, "min_labels": 1},
        False,
    ),
    ("paper-vanilla 768², 2 steps", (768, 768), "paper-vanilla", {"max_iter": 2}, False),
    (
        "paper-inception, 20 steps",
        (321, 481),
        "paper-inception",
        {"max_iter": 20, "min_labels": 1},
        True,
    ),
    (
        "paper-inception, 20 steps",
        (321, 481),
        "paper-inception",
        {"max_iter": 20, "min_labels": 1},
        False,
    ),
    ("paper-inception 512², 2 steps", (512, 512), "paper-inception", {"max_iter": 2}, False),
]
LARGE = [("default, 144 MP", (12000, 12000), "default", {}, True)]

_CHILD = r"""
import json, sys, threading, time
import numpy as np

def rss():
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * 4096

(h, w), preset, kw = json.loads(sys.argv[1])
rng = np.random.default_rng(0)
blocks = rng.integers(0, 255, (h // max(1, h // 8) + 1, w // max(1, w // 8) + 1, 3), dtype=np.uint8)
image = np.repeat(np.repeat(blocks, max(1, h // 8), 0), max(1, w // 8), 1)[:h, :w]
for r in range(0, h, 512):  # some noise, in bands (no float copy of the whole image)
    noise = rng.integers(-10, 10, image[r:r + 512].shape, dtype=np.int16)
    band = image[r:r + 512].astype(np.int16) + noise
    image[r:r + 512] = np.clip(band, 0, 255).astype(np.uint8)
state = {"phase": "training", "peak": {}}  # the training phase includes preparing the image

def poll():
    while state["phase"] != "done":
        state["peak"][state["phase"]] = max(state["peak"].get(state["phase"], 0), rss())
        time.sleep(0.002)

from napari_inceptseg import segment_iter
from napari_inceptseg.engine.machine.plan import plan_image
from napari_inceptseg.presets import preset_params

plan = plan_image((h, w), 3, preset_params(preset, device="cpu", seed=0, **kw), "cpu")
threading.Thread(target=poll, daemon=True).start()
t0 = time.perf_counter()
gen = segment_iter(np.ascontiguousarray(image), preset=preset, device="cpu", seed=0, **kw)
for record in gen:
    if record.iteration == record.max_iter:
        state["phase"] = "final pass"
state["phase"] = "done"
print(json.dumps({"plan": plan.peak_bytes, "heap": plan.heap, "peak": state["peak"],
                  "seconds": time.perf_counter() - t0}))
"""


def measure(shape, preset, kw, heap):
    env = {**os.environ, "NAPARI_INCEPTSEG_HEAP": "1" if heap else "0"}
    out = subprocess.run(
        [sys.executable, "-c", _CHILD, json.dumps([shape, preset, kw])],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--large", action="store_true", help="add a 12000 x 12000 RGB image (needs ~15 GB)"
    )
    args = parser.parse_args(argv)
    print("| case | image | fast heap | plan (GB) | measured peak (GB) | plan / peak | s |")
    print("|---|---|---|---|---|---|---|")
    for name, shape, preset, kw, heap in CASES + (LARGE if args.large else []):
        got = measure(shape, preset, kw, heap)
        peak = max(got["peak"].values())
        print(
            f"| {name} | {shape[0]} x {shape[1]} | {'yes' if got['heap'] else 'no'} | "
            f"{got['plan'] / 1e9:.2f} "
            f"| {peak / 1e9:.2f} | {got['plan'] / peak:.2f} | {got['seconds']:.0f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
