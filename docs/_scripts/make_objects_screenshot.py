"""The picture of docs/widgets.md's "Objects on a background": the nuclei sample, run
with *objects on a background*, scored against its ground truth, in a real napari window.

    xvfb-run -a -s "-screen 0 1366x768x24" .venv/bin/python docs/_scripts/make_objects_screenshot.py
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

OUT = Path(__file__).resolve().parents[1] / "images"


def main() -> int:
    os.environ.setdefault("QT_API", "pyqt6")  # the binding make installs
    os.environ["NAPARI_INCEPTSEG_CONFIG_DIR"] = tempfile.mkdtemp(prefix="inceptseg-docs-")
    import napari
    from qtpy.QtWidgets import QApplication

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
    return 0


if __name__ == "__main__":
    sys.exit(main())
