"""Speed and memory of the optimisation loop, beside the eager reference loop.

    # both networks, 3 sizes, CPU (+ CUDA if present)
    .venv/bin/python benchmarks/speed.py
    .venv/bin/python benchmarks/speed.py --sizes 321x481 --iters 5 --arch vanilla
    .venv/bin/python benchmarks/speed.py --json out.json

Every configuration runs in a fresh process, so its peak memory is its own:
peak RSS on the CPU (the whole process, PyTorch's libraries included), peak
allocated memory on CUDA. Seconds per iteration are the median over ``--iters``
iterations after one warm-up iteration of the paper preset (``paper-vanilla`` or
``paper-inception``: the reference's settings, full resolution), with the stop rule off
("lean step": the engine chose its memory-lean ``vanilla`` step, see
``engine.plan.use_lean``). Configurations
that the engine's memory check says do not fit are reported as such, not run.
The image is the astronaut photo (scikit-image) resized to each size.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def _image(h: int, w: int):
    import numpy as np
    from skimage import data
    from skimage.transform import resize

    img = resize(data.astronaut(), (h, w, 3), order=1, anti_aliasing=True, preserve_range=True)
    return np.round(img).astype(np.uint8)


def _child(impl: str, arch: str, h: int, w: int, iters: int, device: str) -> dict:
    """Runs in its own process; prints one JSON line."""
    import resource

    import torch

    image = _image(h, w)
    stamps = []
    if impl == "reference":
        sys.path.insert(0, str(HERE))
        from reference_loop import reference_run

        reference_run(
            image,
            arch,
            iters + 1,
            min_labels=1,
            device=device,
            on_iteration=lambda *a: stamps.append(time.perf_counter()),
        )
    else:
        from napari_inceptseg import segment_iter
        from napari_inceptseg.engine.machine.plan import use_lean
        from napari_inceptseg.presets import preset_params

        lean = use_lean(h, w, 3, preset_params(f"paper-{arch}"), device)
        for _ in segment_iter(
            image, preset=f"paper-{arch}", max_iter=iters + 1, min_labels=1, seed=0, device=device
        ):
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            stamps.append(time.perf_counter())
    times = [b - a for a, b in zip(stamps, stamps[1:], strict=False)]
    out = {"s_per_iter": statistics.median(times), "iters": len(times)}
    if impl != "reference":
        out["lean"] = lean
    if device.startswith("cuda"):
        out["peak_gb"] = torch.cuda.max_memory_allocated() / 1e9
    else:
        out["peak_gb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9
    return out


def _run_child(impl, arch, h, w, iters, device, timeout) -> dict:
    cmd = [
        sys.executable,
        __file__,
        "--child",
        impl.split("+")[0],
        arch,
        f"{h}x{w}",
        str(iters),
        device,
    ]
    env = dict(os.environ)
    # the engine turns on PyTorch's transparent-huge-page allocation when it is
    # imported; the published loop runs without it, unless asked ("reference+thp")
    env["THP_MEM_ALLOC_ENABLE"] = "0" if impl == "reference" else "1"
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return {"error": f"over {timeout} s"}
    if proc.returncode != 0:
        lines = (proc.stderr or proc.stdout).strip().splitlines() or [
            f"exit code {proc.returncode}"
        ]
        return {"error": lines[-1][:200]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _fits(arch: str, h: int, w: int, device: str, factor: float = 1.0):
    """(fits, needed GB, available GB) from the engine's own memory model."""
    from napari_inceptseg.engine.machine.plan import MARGIN, estimate_bytes, use_lean
    from napari_inceptseg.engine.machine.runtime import available_bytes
    from napari_inceptseg.presets import preset_params

    params = preset_params(f"paper-{arch}")
    lean = factor == 1.0 and use_lean(h, w, 3, params, device)
    need = estimate_bytes(h, w, 3, params, lean) * factor * MARGIN
    have = available_bytes(device)
    return (have is None or need <= have), need / 1e9, (have or 0) / 1e9


def machine() -> str:
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (
        f"{cpu}, {os.cpu_count()} cores, {torch.get_num_threads()} threads, PyTorch "
        f"{torch.__version__}"
    )


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--sizes", nargs="+", default=["321x481", "1024x1024", "2048x2048"])
    ap.add_argument("--arch", nargs="+", default=["vanilla", "inception"])
    ap.add_argument("--iters", type=int, default=3, help="timed iterations per configuration")
    ap.add_argument(
        "--devices", nargs="+", default=None, help="default: cpu, and cuda when present"
    )
    ap.add_argument("--no-reference", action="store_true", help="time only the engine")
    ap.add_argument(
        "--reference-thp",
        action="store_true",
        help="also time the reference loop with transparent huge pages on",
    )
    ap.add_argument("--timeout", type=float, default=1800, help="seconds per configuration")
    ap.add_argument("--json", type=Path, help="also write the results here")
    ap.add_argument("--child", nargs=5, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args.child:
        impl, arch, size, iters, device = args.child
        h, w = map(int, size.split("x"))
        print(json.dumps(_child(impl, arch, h, w, int(iters), device)))
        return 0

    import torch

    devices = args.devices or (["cpu"] + (["cuda"] if torch.cuda.is_available() else []))
    device_names = {"cpu": machine()}
    if "cuda" in devices:
        device_names["cuda"] = torch.cuda.get_device_name(0)
    thp = " | reference + THP s/iter" if args.reference_thp else ""
    print(
        "| device | network | size | engine s/iter | engine peak GB | reference s/iter | "
        f"reference peak GB | speed-up{thp} |"
    )
    print("|---|---|---|---|---|---|---|---|" + ("---|" if thp else ""), flush=True)
    rows = []
    for device in devices:
        for arch in args.arch:
            for size in args.sizes:
                h, w = map(int, size.lower().split("x"))
                row = {"device": device, "arch": arch, "size": f"{h}x{w}"}
                impls = ["engine"] + ([] if args.no_reference else ["reference"])
                impls += ["reference+thp"] if args.reference_thp else []
                for impl in impls:
                    # the reference keeps about twice the engine's activations alive
                    fits, need, have = _fits(arch, h, w, device, 1.0 if impl == "engine" else 2.0)
                    if not fits:
                        row[impl] = {"error": f"needs ~{need:.0f} GB, {have:.0f} GB available"}
                        continue
                    row[impl] = _run_child(impl, arch, h, w, args.iters, device, args.timeout)
                rows.append(row)
                print(_format(row), flush=True)
    print(f"\n{devices and ', '.join(f'{d}: {device_names[d]}' for d in devices)}")
    if args.json:
        args.json.write_text(json.dumps({"machine": device_names, "rows": rows}, indent=2))
    return 0


def _format(row: dict) -> str:
    def cell(r, key, fmt):
        if r is None:
            return "-"
        if "error" in r:
            return r["error"] if key == "s_per_iter" else "-"
        return fmt.format(r[key])

    eng, ref = row.get("engine"), row.get("reference")
    ratio = "-"
    if eng and ref and "error" not in eng and "error" not in ref:
        ratio = f"{ref['s_per_iter'] / eng['s_per_iter']:.1f}x"
    return (
        f"| {row['device']} | {row['arch']} | {row['size'].replace('x', ' x ')} | "
        f"{cell(eng, 's_per_iter', '{:.3f}')}{' (lean step)' if eng and eng.get('lean') else ''} | "
        f"{cell(eng, 'peak_gb', '{:.2f}')} | "
        f"{cell(ref, 's_per_iter', '{:.3f}')} | {cell(ref, 'peak_gb', '{:.2f}')} | {ratio} |"
        + (
            f" {cell(row['reference+thp'], 's_per_iter', '{:.3f}')} |"
            if "reference+thp" in row
            else ""
        )
    )


if __name__ == "__main__":
    sys.exit(main())
