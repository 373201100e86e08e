"""Event-loop latency of napari while the segmentation widget runs.

A 10 ms QTimer records how late each tick is while the widget segments the
synthetic sample with live preview every 5 iterations. Run under a display:

    xvfb-run -a .venv/bin/python benchmarks/gui_latency.py [--arch inception] [--iters 40]
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--arch", default="inception")
    ap.add_argument("--iters", type=int, default=40)
    ap.add_argument("--preview-every", type=int, default=5)
    ap.add_argument("--preimport", action="store_true", help="import torch._dynamo before the run")
    args = ap.parse_args()

    if args.preimport:
        import torch._dynamo  # noqa: F401
    import napari
    from qtpy.QtCore import QTimer
    from qtpy.QtWidgets import QApplication

    from napari_inceptseg.sample_data import synthetic_regions

    viewer = napari.Viewer(show=True)
    image, _ = synthetic_regions()
    layer = viewer.add_image(image, name="synthetic", rgb=True)
    _, widget = viewer.window.add_plugin_dock_widget(
        "napari-inceptseg", "Unsupervised segmentation"
    )
    widget._image.value = layer
    widget._params["arch"].value = args.arch
    widget._params["max_iter"].value = args.iters
    widget._params["min_labels"].value = 1
    widget._preview_every.value = args.preview_every
    widget._seed.value = 0

    gaps = []
    last = [time.perf_counter()]

    stamps = []

    def tick():
        now = time.perf_counter()
        gaps.append(now - last[0])
        stamps.append(now)
        last[0] = now

    timer = QTimer()
    timer.setInterval(10)
    timer.timeout.connect(tick)
    app = QApplication.instance()
    timer.start()
    t0 = time.perf_counter()
    widget.run()
    while widget.running:
        app.processEvents()
        time.sleep(0.001)
    wall = time.perf_counter() - t0
    timer.stop()
    lat = (np.array(gaps) - 0.010) * 1000
    print(
        f"{args.arch}, {args.iters} iterations, preview every {args.preview_every}: run "
        f"{wall:.1f} s; "
        f"timer lateness median {np.median(lat):.1f} ms, 95th pct {np.percentile(lat, 95):.1f} ms, "
        f"max {lat.max():.1f} ms over {len(lat)} ticks"
    )
    for g, t in zip(gaps, stamps, strict=False):
        if g > 0.1:
            print(f"  stall of {1000 * g:.0f} ms at t = {t - t0:.2f} s")
    viewer.close()


if __name__ == "__main__":
    main()
