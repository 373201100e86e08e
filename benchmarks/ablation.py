"""Each speed-up of the optimisation loop, measured one at a time.

    .venv/bin/python benchmarks/ablation.py [--size 321x481] [--iters 4] [--arch vanilla inception]

Starts from the engine with every optimisation off (reference forward, autograd
losses, contiguous NCHW tensors, ``torch.optim.SGD``, glibc's default allocator)
and turns them on one after another, each configuration in a fresh process.
Prints seconds per iteration (mean over ``--iters`` after one warm-up step:
with the default allocator iterations alternate between fast and slow, so the
mean, not the median, is the fair figure).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent

STEPS = [
    ("everything off (engine with reference forward, losses, SGD)", {}),
    ("+ fused loss and gradient (ClusterLoss)", {"loss": 1}),
    ("+ fast forward (in-place ReLU, joint 1x1 convolutions)", {"loss": 1, "forward": 1}),
    ("+ foreach momentum SGD", {"loss": 1, "forward": 1, "sgd": 1}),
    ("+ channels-last", {"loss": 1, "forward": 1, "sgd": 1, "cl": 1}),
    ("+ transparent huge pages", {"loss": 1, "forward": 1, "sgd": 1, "cl": 1, "thp": 1}),
    (
        "+ heap allocator (= the engine)",
        {"loss": 1, "forward": 1, "sgd": 1, "cl": 1, "thp": 1, "heap": 1},
    ),
    (
        "the engine in a worker thread, as in napari (no heap allocator there)",
        {"loss": 1, "forward": 1, "sgd": 1, "cl": 1, "thp": 1, "heap": 1, "thread": 1},
    ),
]


def _child(arch: str, h: int, w: int, iters: int, flags: dict) -> dict:
    import torch

    import napari_inceptseg.engine.machine.runtime as runtime
    import napari_inceptseg.engine.modeling.loss as loss
    import napari_inceptseg.engine.modeling.networks as models
    import napari_inceptseg.engine.modeling.optim as optim
    import napari_inceptseg.engine.workflow.segment as engine

    if not flags.get("loss"):

        def reference_loss(response, w_sim, w_con):
            target = response.argmax(1)
            l_sim = loss.similarity_loss(response, target)
            l_con = loss.continuity_loss(response)
            return w_sim * l_sim + w_con * l_con, l_sim.detach(), l_con.detach(), target

        loss.cluster_loss = reference_loss
    if not flags.get("forward"):
        for cls in models.NETWORKS.values():
            cls.fast_forward = cls.forward
    if not flags.get("sgd"):

        class TorchSGD(torch.optim.SGD):
            def __init__(self, params, lr, momentum):
                super().__init__(params, lr=lr, momentum=momentum)

            def zero_grad(self):
                super().zero_grad(set_to_none=True)

        optim.MomentumSGD = TorchSGD
    if not flags.get("cl"):
        runtime.memory_format_for = lambda device, dims=2: torch.contiguous_format

    sys.path.insert(0, str(HERE))
    from speed import _image

    image = _image(h, w)
    stamps = []

    def run():
        for _ in engine.segment_iter(
            image, arch=arch, max_iter=iters + 1, min_labels=1, seed=0, device="cpu"
        ):
            stamps.append(time.perf_counter())

    if flags.get("thread"):
        import threading

        t = threading.Thread(target=run)
        t.start()
        t.join()
    else:
        run()
    times = [b - a for a, b in zip(stamps, stamps[1:], strict=False)]
    return {"mean": statistics.mean(times), "min": min(times), "max": max(times)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--size", default="321x481")
    ap.add_argument("--iters", type=int, default=4)
    ap.add_argument("--arch", nargs="+", default=["vanilla", "inception"])
    ap.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        arch, size, iters, flags = args.child
        h, w = map(int, size.split("x"))
        print(json.dumps(_child(arch, h, w, int(iters), json.loads(flags))))
        return 0

    print(
        f"| step ({args.size.replace('x', ' x ')}, CPU) | "
        + " | ".join(f"{a} s/iter" for a in args.arch)
        + " |"
    )
    print("|---|" + "---|" * len(args.arch), flush=True)
    for label, flags in STEPS:
        cells = []
        for arch in args.arch:
            env = dict(
                os.environ,
                THP_MEM_ALLOC_ENABLE=str(flags.get("thp", 0)),
                NAPARI_INCEPTSEG_HEAP=str(flags.get("heap", 0)),
            )
            cmd = [
                sys.executable,
                __file__,
                "--child",
                arch,
                args.size,
                str(args.iters),
                json.dumps(flags),
            ]
            proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
            if proc.returncode:
                cells.append("failed: " + (proc.stderr.strip().splitlines() or ["?"])[-1][:80])
                continue
            r = json.loads(proc.stdout.strip().splitlines()[-1])
            cells.append(f"{r['mean']:.2f} ({r['min']:.2f}-{r['max']:.2f})")
        print(f"| {label} | " + " | ".join(cells) + " |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
