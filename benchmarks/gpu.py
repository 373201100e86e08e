"""GPU numbers for docs/benchmarks.md ("GPU"): per-iteration time, time to result,
batched evaluation throughput and peak GPU memory.

    # on a CUDA machine (about 5 minutes on an H100/H200)
    python benchmarks/gpu.py --out gpu-results
    python benchmarks/gpu.py --device cpu --quick         # the same script, tiny, to check it runs

Images: the astronaut photo (scikit-image) at 481 x 321 for the per-image rows; for
throughput, synthetic images with ground truth at VOC's typical 500 x 375, scored as
``evaluate`` scores (the real VOC and COCO-Stuff sets are not on the benchmark
machines: docs/benchmarks.md gives the commands for them). Writes ``gpu.json`` and
``gpu.md`` to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from napari_inceptseg import segment
from napari_inceptseg.sample_data import synthetic_regions


def _photo(h: int, w: int) -> np.ndarray:
    from skimage import data
    from skimage.transform import resize

    img = resize(data.astronaut(), (h, w, 3), order=1, anti_aliasing=True, preserve_range=True)
    return np.round(img).astype(np.uint8)


def _sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _peak_reset(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()


def _peak_gb(device: str) -> float:
    import torch

    return torch.cuda.max_memory_allocated() / 1e9 if device.startswith("cuda") else float("nan")


def _timed(device: str, **kw):
    _sync(device)
    _peak_reset(device)
    t0 = time.perf_counter()
    res = segment(kw.pop("image"), device=device, seed=0, **kw)
    _sync(device)
    return time.perf_counter() - t0, res, _peak_gb(device)


def per_iteration(device: str, shape, iters: int) -> list:
    """Seconds for ``iters`` iterations (stop rule off), whole call, and per iteration."""
    image = _photo(*shape)
    rows = []
    for arch in ("vanilla", "inception"):
        for precision in ("float32", "bfloat16"):
            kw = dict(image=image, preset=f"paper-{arch}", min_labels=1, precision=precision)
            _timed(device, max_iter=5, **kw)  # warm-up (cuDNN's choices, the allocator)
            short, _, _ = _timed(device, max_iter=10, **kw)
            full, res, peak = _timed(device, max_iter=iters, **kw)
            rows.append(
                {
                    "arch": arch,
                    "precision": precision,
                    "iters": res.n_iter,
                    "seconds": round(full, 3),
                    "s_per_iter": round((full - short) / (iters - 10), 5),
                    "peak_gb": round(peak, 2),
                }
            )
            print(rows[-1], flush=True)
    return rows


def time_to_result(device: str, shape, cap=None) -> list:
    """Image to labels with each preset's own stop rule (``cap``: at most that many iterations)."""
    image = _photo(*shape)
    rows = []
    for preset in ("default", "paper-vanilla", "paper-inception"):
        _timed(device, image=image, preset=preset, max_iter=3)
        secs, res, peak = _timed(
            device, image=image, preset=preset, **({"max_iter": cap} if cap else {})
        )
        rows.append(
            {
                "preset": preset,
                "seconds": round(secs, 3),
                "n_iter": res.n_iter,
                "n_labels": res.n_labels,
                "stop": res.stop_reason,
                "peak_gb": round(peak, 2),
            }
        )
        print(rows[-1], flush=True)
    return rows


def _dataset(folder: Path, n: int, shape):
    from PIL import Image

    from napari_inceptseg.bench.datasets import list_items

    (folder / "img").mkdir(parents=True)
    (folder / "lab").mkdir()
    for k in range(n):
        image, gt = synthetic_regions(shape, n_regions=2 + k % 3, seed=k)
        Image.fromarray(image).save(folder / "img" / f"im{k:03d}.png")
        Image.fromarray(gt.astype(np.uint8), mode="L").save(folder / "lab" / f"im{k:03d}.png")
    return list_items("folder", images=folder / "img", labels=folder / "lab")


def throughput(device: str, n: int, shape, iters: int, batches) -> list:
    """Images per second of ``evaluate`` (segment and score) at the paper's settings
    with ``iters`` iterations, one by one and side by side."""
    from napari_inceptseg.bench.evaluate import evaluation_batch, run_evaluation

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        items = _dataset(Path(tmp) / "data", n, shape)
        for method in ("vanilla", "inception"):
            params = {"device": device, "max_iter": iters}
            for batch in batches:
                b = evaluation_batch(items, [method], params) if batch == 0 else batch
                out = Path(tmp) / f"{method}-{batch}"
                _peak_reset(device)
                t0 = time.perf_counter()
                report = run_evaluation(
                    items,
                    [method],
                    params,
                    out,
                    config={"b": batch},
                    batch=b,
                    progress=False,
                    log=lambda *a: None,
                )
                secs = time.perf_counter() - t0
                s = report.summary["methods"][method]
                rows.append(
                    {
                        "method": method,
                        "batch": b,
                        "auto": batch == 0,
                        "images": report.n_new,
                        "seconds": round(secs, 2),
                        "images_per_s": round(report.n_new / secs, 2),
                        "miou": round(s["standard_miou"]["mean"], 4),
                        "peak_gb": round(_peak_gb(device), 2),
                    }
                )
                print(rows[-1], flush=True)
    return rows


def identity(device: str, shape, iters: int) -> list:
    """Are side-by-side runs the same as one-by-one runs on this device (and are two
    one-by-one runs the same as each other: cuDNN may pick nondeterministic kernels)?"""
    from napari_inceptseg.engine.workflow.batch import segment_batch

    images = [_photo(*shape)[::s1, ::s2] for s1, s2 in ((1, 1), (-1, 1), (1, -1), (-1, -1))]
    rows = []
    for preset in ("default", "paper-vanilla", "paper-inception"):
        kw = dict(preset=preset, device=device, max_iter=iters)
        seeds = [3, 1, 4, 1]
        one = [segment(im, seed=sd, **kw).labels for im, sd in zip(images, seeds, strict=False)]
        again = [segment(im, seed=sd, **kw).labels for im, sd in zip(images, seeds, strict=False)]
        side = [r.labels for r in segment_batch(images, batch=4, seeds=seeds, **kw)]
        rows.append(
            {
                "preset": preset,
                "iters": iters,
                "one_by_one_repeatable": all(
                    np.array_equal(a, b) for a, b in zip(one, again, strict=False)
                ),
                "side_by_side_identical": all(
                    np.array_equal(a, b) for a, b in zip(one, side, strict=False)
                ),
            }
        )
        print(rows[-1], flush=True)
    return rows


def _machine(device: str) -> dict:
    import torch

    info = {"python": platform.python_version(), "torch": torch.__version__, "device": device}
    if device.startswith("cuda"):
        p = torch.cuda.get_device_properties(0)
        info.update(
            gpu=p.name,
            memory_gb=round(p.total_memory / 1e9, 1),
            capability=f"{p.major}.{p.minor}",
            cuda=torch.version.cuda,
            cudnn=torch.backends.cudnn.version(),
            tf32_conv=torch.backends.cudnn.allow_tf32,
        )
    return info


def _markdown(res: dict) -> str:
    m = res["machine"]
    lines = [
        f"Machine: {m.get('gpu', m['device'])}, torch {m['torch']}, CUDA {m.get('cuda')}, "
        f"cuDNN {m.get('cudnn')} (TF32 convolutions: {m.get('tf32_conv')})",
        "",
        "| network | precision | iterations | seconds | s / iteration | peak GPU GB |",
        "|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {r['arch']} | {r['precision']} | {r['iters']} | {r['seconds']} | "
        f"{r['s_per_iter']} | {r['peak_gb']} |"
        for r in res["per_iteration"]
    ]
    lines += [
        "",
        "| preset | seconds | iterations | labels | stop | peak GPU GB |",
        "|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {r['preset']} | {r['seconds']} | {r['n_iter']} | {r['n_labels']} | {r['stop']} | "
        f"{r['peak_gb']} |"
        for r in res["time_to_result"]
    ]
    lines += [
        "",
        "| method | batch | images | seconds | images / s | mIoU | peak GPU GB |",
        "|---|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {r['method']} | {r['batch']}{' (auto)' if r['auto'] else ''} | {r['images']} | "
        f"{r['seconds']} | "
        f"{r['images_per_s']} | {r['miou']} | {r['peak_gb']} |"
        for r in res["throughput"]
    ]
    lines += [
        "",
        "| preset | iterations | one by one, repeated: identical | side by side vs one by "
        "one: identical |",
        "|---|---|---|---|",
    ]
    lines += [
        f"| {r['preset']} | {r['iters']} | {r['one_by_one_repeatable']} | "
        f"{r['side_by_side_identical']} |"
        for r in res["identity"]
    ]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--out", type=Path, default=Path("gpu-results"))
    parser.add_argument(
        "--quick", action="store_true", help="tiny sizes: check that the script runs"
    )
    parser.add_argument(
        "--images", type=int, default=24, help="images per throughput row (default: %(default)s)"
    )
    args = parser.parse_args(argv)
    quick = args.quick
    shape = (64, 96) if quick else (321, 481)
    res = {
        "machine": _machine(args.device),
        "per_iteration": [],
        "time_to_result": [],
        "throughput": [],
        "identity": [],
    }
    print(res["machine"], flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    sections = [
        ("identity", lambda: identity(args.device, shape, 5 if quick else 40)),
        ("per_iteration", lambda: per_iteration(args.device, shape, 14 if quick else 150)),
        ("time_to_result", lambda: time_to_result(args.device, shape, 5 if quick else None)),
        (
            "throughput",
            lambda: throughput(
                args.device,
                4 if quick else args.images,
                (48, 64) if quick else (375, 500),
                3 if quick else 150,
                (1, 2) if quick else (1, 8, 0),
            ),
        ),
    ]
    for (
        key,
        run,
    ) in sections:  # written after each section, so a run cut short keeps what it measured
        res[key] = run()
        (args.out / "gpu.json").write_text(json.dumps(res, indent=1))
        (args.out / "gpu.md").write_text(_markdown(res))
    print(_markdown(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
