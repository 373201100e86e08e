"""Wall time from image to labels: the default method (or a preset) on BSDS500 val.

    .venv/bin/python benchmarks/time_to_result.py [--preset default] [--limit 100] [--device cpu]
    xvfb-run -a .venv/bin/python benchmarks/time_to_result.py --widget   # the napari dock
    .venv/bin/python benchmarks/time_to_result.py --stages --limit 20   # where the time goes

Without ``--widget``: every BSDS500 val image (481 x 321 RGB, read beforehand) goes
through ``segment(image, preset=..., seed=0)`` in this process, after one warm-up
run that pays for importing torch; prints the median, the 90th percentile and the
slowest, and the cold first run. Needs ../shared/data/bsds500 (see its README).

With ``--widget``: napari opens (use Xvfb without a display), the "Unsupervised
segmentation" dock runs with its defaults on the astronaut sample (512 x 512), and the
time from pressing Run to the result layer is printed, three times.
Run on a quiet machine: other processes on the same cores lengthen every number.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "bsds500"


def images(limit: int):
    from napari_inceptseg.bench.datasets import list_items

    if not DATA.is_dir():
        raise SystemExit(f"{DATA} not found: this benchmark reads BSDS500 val from ../shared/data")
    return [item.load()[0] for item in list_items("bsds500", DATA, "val")[:limit]]


def engine(preset: str, limit: int, device: str) -> None:
    from napari_inceptseg import segment

    imgs = images(limit)
    t0 = time.perf_counter()
    segment(imgs[0], preset=preset, seed=0, device=device)
    cold = time.perf_counter() - t0
    times, regions = [], []
    for img in imgs:
        t0 = time.perf_counter()
        res = segment(img, preset=preset, seed=0, device=device)
        times.append(time.perf_counter() - t0)
        regions.append(res.n_labels)
    t = np.array(times)
    print(
        f"preset {preset}, {len(t)} BSDS500 val images ({imgs[0].shape[1]} x {imgs[0].shape[0]} or "
        f"transposed), device {res.device}"
    )
    print(f"first run in this process (imports torch): {cold:.2f} s")
    print(
        f"median {np.median(t):.2f} s, 90th percentile {np.percentile(t, 90):.2f} s, "
        f"slowest {t.max():.2f} s; {np.mean(regions):.0f} labels per image on average"
    )


def stages(preset: str, limit: int, device: str) -> None:
    """Median seconds of each stage: training (up to the first stage record), then each
    stage after training up to the next record (the last up to the result)."""
    from napari_inceptseg.engine.workflow.segment import segment_iter

    imgs = images(limit)
    spans: dict = {}
    for img in [imgs[0], *imgs]:  # the first run again, warm: imports paid
        gen, marks, t0 = (
            segment_iter(img, preset=preset, seed=0, device=device),
            [],
            time.perf_counter(),
        )
        try:
            while True:
                record = next(gen)
                if record.stage != "training":
                    marks.append((record.stage, time.perf_counter()))
        except StopIteration:
            pass
        ends = [t for _, t in marks[1:]] + [time.perf_counter()]
        spans.setdefault("training", []).append(marks[0][1] - t0)
        for (name, start), end in zip(marks, ends, strict=False):
            spans.setdefault(name, []).append(end - start)
    for name, values in spans.items():
        print(f"{name}: median {np.median(values[1:]):.3f} s over {len(values) - 1} images")


def widget(repeats: int) -> None:
    import os
    import tempfile

    # the dock's defaults, whatever this machine's user saved
    os.environ["NAPARI_INCEPTSEG_CONFIG_DIR"] = tempfile.mkdtemp(prefix="inceptseg-bench-")
    import napari
    from qtpy.QtWidgets import QApplication

    from napari_inceptseg.sample_data import natural_image

    viewer = napari.Viewer(show=True)
    layer = viewer.add_image(natural_image(), name="astronaut", rgb=True)
    _, dock = viewer.window.add_plugin_dock_widget("napari-inceptseg", "Unsupervised segmentation")
    dock._image.value = layer
    for k in range(repeats):
        n_before = len(viewer.layers)
        t0 = time.perf_counter()
        dock.run()
        while dock.running:
            QApplication.processEvents()
            time.sleep(0.005)
        took = time.perf_counter() - t0
        out = viewer.layers[-1]
        assert len(viewer.layers) == n_before + 1
        print(
            f"widget run {k + 1}: {took:.2f} s from Run to '{out.name}' "
            f"({out.metadata['inceptseg']['n_labels']} labels, preset "
            f"{out.metadata['inceptseg']['preset']})"
        )
    viewer.close()


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--preset", default="default")
    ap.add_argument("--limit", type=int, default=100)
    ap.add_argument("--device", default="cpu")
    ap.add_argument(
        "--widget", action="store_true", help="time the napari dock on the astronaut sample"
    )
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--stages", action="store_true", help="the median time of each stage instead")
    args = ap.parse_args()
    if args.widget:
        widget(args.repeats)
    elif args.stages:
        stages(args.preset, args.limit, args.device)
    else:
        engine(args.preset, args.limit, args.device)


if __name__ == "__main__":
    main()
