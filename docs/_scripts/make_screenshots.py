"""Regenerate the pictures in docs/images from real runs and a real napari window.

xvfb-run -a -s "-screen 0 1366x768x24" .venv/bin/python docs/_scripts/make_screenshots.py
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import numpy as np

OUT = Path(__file__).resolve().parents[1] / "images"


def main() -> int:
    os.environ.setdefault("QT_API", "pyqt6")  # the binding make installs
    # the dock's defaults, whatever this machine's user saved
    os.environ["NAPARI_INCEPTSEG_CONFIG_DIR"] = tempfile.mkdtemp(prefix="inceptseg-docs-")
    import imageio.v3 as iio
    import napari
    from skimage.transform import resize

    from napari_inceptseg import score, segment
    from napari_inceptseg.io import colour_overlay
    from napari_inceptseg.sample_data import natural_image, synthetic_regions

    OUT.mkdir(parents=True, exist_ok=True)
    photo = natural_image()  # 512 x 512, the sample napari users open
    res = segment(photo, seed=0, device="cpu")  # the default method
    print(f"astronaut 512x512: {res.n_labels} regions, {res.n_iter} it, {res.seconds:.1f} s")
    small = (resize(photo, (256, 256), anti_aliasing=True) * 255).astype(np.uint8)
    labels_small = resize(
        res.labels, (256, 256), order=0, preserve_range=True, anti_aliasing=False
    ).astype(np.int32)
    iio.imwrite(
        OUT / "astronaut-result.png",
        np.concatenate([small, colour_overlay(small, labels_small)], 1),
    )

    image, gt = synthetic_regions()
    syn = segment(image, seed=1, device="cpu")
    s = score(syn.labels, gt)
    print(f"synthetic: {syn.n_labels} regions, one-to-one accuracy {s['accuracy']:.3f}")

    viewer = napari.Viewer(show=True)
    viewer.window.resize(1100, 760)
    viewer.add_image(photo, name="astronaut", rgb=True)
    viewer.add_labels(res.labels, name="astronaut regions", opacity=0.6)
    viewer.reset_view()
    viewer.screenshot(str(OUT / "napari-result.png"), canvas_only=False, flash=False)
    viewer.close()

    widget_screenshots()
    first_session_screenshots()
    print(f"wrote pictures to {OUT}")
    return 0


def _wait(app, condition, timeout=300.0):
    import time

    t0 = time.perf_counter()
    while not condition() and time.perf_counter() - t0 < timeout:
        app.processEvents()
        time.sleep(0.01)


def widget_screenshots() -> None:
    """The two dock widgets on the synthetic sample: during a run, and scored."""
    import napari
    from qtpy.QtWidgets import QApplication

    viewer = napari.Viewer(show=True)
    app = QApplication.instance()
    viewer.window.resize(1366, 768)  # a laptop screen
    viewer.open_sample("napari-inceptseg", "synthetic_regions")
    viewer.layers["synthetic ground truth"].visible = False
    viewer.layers.selection.active = viewer.layers["synthetic"]
    _, seg = viewer.window.add_plugin_dock_widget("napari-inceptseg", "Unsupervised segmentation")
    seg._seed.value = 1
    seg._device.value = "cpu"
    seg._preview_every.value = 1
    _wait(app, lambda: False, timeout=0.5)  # let the dock settle, then fit the image
    viewer.reset_view()
    seg.run()
    _wait(app, lambda: "iteration 8/" in seg._status.value)
    viewer.screenshot(str(OUT / "segment-widget-running.png"), canvas_only=False, flash=False)
    _wait(app, lambda: not seg.running)
    viewer.screenshot(str(OUT / "segment-widget-done.png"), canvas_only=False, flash=False)
    seg._advanced.set_open(True)
    seg._network_section.set_open(True)
    _wait(app, lambda: False, timeout=0.5)
    viewer.screenshot(str(OUT / "segment-widget-advanced.png"), canvas_only=False, flash=False)
    viewer.window.remove_dock_widget(seg.native)
    _, sc = viewer.window.add_plugin_dock_widget("napari-inceptseg", "Score against ground truth")
    sc._pred.value = viewer.layers["synthetic regions"]
    sc._gt.value = viewer.layers["synthetic ground truth"]
    sc.add_matched_layer()
    viewer.layers["synthetic regions"].visible = False
    _wait(app, lambda: False, timeout=0.5)
    viewer.reset_view()
    _wait(app, lambda: False, timeout=0.3)
    viewer.screenshot(str(OUT / "score-widget.png"), canvas_only=False, flash=False)
    print(
        "score:",
        {
            k: round(v, 3)
            for k, v in sc.result.items()
            if k in ("miou", "accuracy", "nmi", "homogeneity")
        },
    )
    viewer.close()


def first_session_screenshots() -> None:
    """docs/first-session.md at a laptop's 1366 x 768: the astronaut's regions, the
    Detail slider moved to fewer regions, and a long run with its cancel buttons."""
    import napari
    from qtpy.QtWidgets import QApplication

    viewer = napari.Viewer(show=True)
    app = QApplication.instance()
    viewer.window.resize(1366, 768)
    viewer.open_sample("napari-inceptseg", "astronaut")
    _, seg = viewer.window.add_plugin_dock_widget("napari-inceptseg", "Unsupervised segmentation")
    seg._seed.value = 0
    seg._device.value = "cpu"
    _wait(app, lambda: False, timeout=0.5)
    viewer.reset_view()
    seg.run()
    _wait(app, lambda: not seg.running)
    viewer.screenshot(str(OUT / "first-session-regions.png"), canvas_only=False, flash=False)
    seg._detail.slider.value = 0.35  # fewer, larger regions
    _wait(app, lambda: False, timeout=0.5)
    viewer.screenshot(str(OUT / "first-session-detail.png"), canvas_only=False, flash=False)
    print("detail:", seg._detail.count.value)
    seg._preset.value = "paper-vanilla"  # minutes on a CPU: time to show cancel
    seg.run()
    _wait(app, lambda: "iteration 3/" in seg._status.value)
    _wait(app, lambda: False, timeout=0.5)
    viewer.screenshot(str(OUT / "first-session-cancel.png"), canvas_only=False, flash=False)
    seg.cancel()
    _wait(app, lambda: not seg.running)
    viewer.close()


if __name__ == "__main__":
    sys.exit(main())
