"""Pictures for docs/scribbles.md and docs/reuse.md, from real runs in a real napari window.

xvfb-run -a -s "-screen 0 1280x1024x24" .venv/bin/python docs/_scripts/make_reuse_screenshots.py
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np

OUT = Path(__file__).resolve().parents[1] / "images"
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests"))


def _shot(viewer, name):
    viewer.reset_view()
    viewer.screenshot(str(OUT / name), canvas_only=False, flash=False)


def main() -> int:
    os.environ.setdefault("QT_API", "pyqt6")  # the binding make installs
    import napari

    from napari_inceptseg import apply_stack, score, segment
    from sample_images import moving_shapes, one_stroke_per_region, three_close_regions

    image, gt = three_close_regions()
    image = np.repeat(np.repeat(image, 3, 0), 3, 1)
    gt = np.repeat(np.repeat(gt, 3, 0), 3, 1)
    scr = one_stroke_per_region(gt, ids=(2, 5, 7))
    free = segment(image, arch="vanilla", n_channels=32, max_iter=80, seed=0, device="cpu")
    guided = segment(
        image, arch="vanilla", n_channels=32, max_iter=80, seed=0, device="cpu", scribbles=scr
    )
    print(
        f"scribbles: unguided accuracy {score(free.labels, gt)['accuracy']:.3f} "
        f"({free.n_labels} clusters), guided {score(guided.labels, gt)['accuracy']:.3f} "
        f"({guided.n_labels})"
    )

    viewer = napari.Viewer(show=True)
    viewer.window.resize(1100, 700)
    viewer.add_image(image, name="three close colours", rgb=True)
    viewer.add_labels(scr, name="strokes")
    _, widget = viewer.window.add_plugin_dock_widget(
        "napari-inceptseg", "Unsupervised segmentation"
    )
    widget._scribbles.value = viewer.layers["strokes"]
    _shot(viewer, "scribbles-before.png")
    viewer.add_labels(guided.labels, name="three close colours clusters", opacity=0.7)
    viewer.layers["strokes"].visible = False
    _shot(viewer, "scribbles-after.png")
    viewer.close()

    frames, gts = moving_shapes(n_frames=12, size=96)
    res = segment(
        frames[0], arch="vanilla", n_channels=32, max_iter=60, min_labels=4, seed=0, device="cpu"
    )
    applied = apply_stack(res.trained_model(), frames, rgb=True, device="cpu")
    viewer = napari.Viewer(show=True)
    viewer.window.resize(1100, 700)
    viewer.add_image(frames, name="movie", rgb=True)
    viewer.add_labels(applied, name="movie clusters (applied)", opacity=0.6)
    viewer.dims.set_point(0, 8)
    _, widget = viewer.window.add_plugin_dock_widget(
        "napari-inceptseg", "Unsupervised segmentation"
    )
    widget._set_model(res.trained_model(), "trained on 'movie'")
    widget._slices.value = "all slices"
    _shot(viewer, "stack-applied.png")
    viewer.close()
    print(f"wrote pictures to {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
