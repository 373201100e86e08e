"""The nuclei pictures of docs/widgets.md, in a real napari window: "From clusters to
objects" (the dock's default method, then split into objects) and "Objects on a
background" (objects=True, scored against the ground truth).

    xvfb-run -a -s "-screen 0 1366x768x24" .venv/bin/python docs/_scripts/make_nuclei_screenshot.py
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

OUT = Path(__file__).resolve().parents[1] / "images"


def split_into_objects(napari, QApplication, instance_scores) -> None:
    """nuclei-objects.png: the default method, then Split into objects."""
    viewer = napari.Viewer(show=True)
    viewer.window.resize(1366, 768)
    viewer.open_sample("napari-inceptseg", "nuclei")
    gt = viewer.layers["nuclei ground truth"]
    gt.visible = False
    viewer.layers.selection.active = viewer.layers["nuclei"]
    _, seg = viewer.window.add_plugin_dock_widget("napari-inceptseg", "Unsupervised segmentation")
    seg._seed.value = 0
    seg._device.value = "cpu"
    seg._runs.inline = True
    seg.run()
    result = viewer.layers["nuclei regions"]
    viewer.layers.selection.active = result
    seg._objects_section.set_open(True)
    seg._objects.inline = True
    objects = seg._objects.split()
    result.visible = False
    s = instance_scores(objects.data, gt.data)
    print(
        f"{int(objects.data.max())} objects, {s['n_objects']} nuclei; F1 at IoU 0.5 {s['f1']:.3f}"
    )
    for _ in range(20):
        QApplication.processEvents()
    viewer.reset_view()
    viewer.screenshot(str(OUT / "nuclei-objects.png"), canvas_only=False, flash=False)
    viewer.close()


def objects_on_a_background(napari, QApplication) -> None:
    """nuclei-objects-on-background.png: objects=True, scored against the ground truth."""
    viewer = napari.Viewer(show=True)
    viewer.window.resize(1366, 768)
    viewer.open_sample("napari-inceptseg", "nuclei")
    viewer.layers["nuclei ground truth"].visible = False
    viewer.layers.selection.active = viewer.layers["nuclei"]
    _, seg = viewer.window.add_plugin_dock_widget("napari-inceptseg", "Unsupervised segmentation")
    seg._params["objects"].value = True
    seg._runs.inline = True
    seg.run()
    objects = viewer.layers["nuclei objects"]
    _, score = viewer.window.add_plugin_dock_widget(
        "napari-inceptseg", "Score against ground truth"
    )
    score._pred.value = objects
    score._gt.value = viewer.layers["nuclei ground truth"]
    rows = dict(zip(score._table.row_headers, (r[0] for r in score._table.data), strict=False))
    print(
        f"{rows['objects']} objects, {rows['true objects']} nuclei; DSB mAP {rows['DSB mAP']}, "
        f"F1 at IoU 0.5 {rows['F1 @ .5']}; features: {', '.join(objects.features.columns[:6])}"
    )
    viewer.layers.selection.active = objects
    for _ in range(20):
        QApplication.processEvents()
    viewer.reset_view()
    viewer.screenshot(str(OUT / "nuclei-objects-on-background.png"), canvas_only=False, flash=False)
    viewer.close()


def main() -> int:
    os.environ.setdefault("QT_API", "pyqt6")  # the binding make installs
    os.environ["NAPARI_INCEPTSEG_CONFIG_DIR"] = tempfile.mkdtemp(prefix="inceptseg-docs-")
    import napari
    from qtpy.QtWidgets import QApplication

    from napari_inceptseg.scoring.objects import instance_scores

    split_into_objects(napari, QApplication, instance_scores)
    objects_on_a_background(napari, QApplication)
    return 0


if __name__ == "__main__":
    sys.exit(main())
