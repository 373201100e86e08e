"""The picture of docs/widgets.md's "From clusters to objects": the nuclei sample,
segmented by the dock's default method and split into objects, in a real napari window.

    xvfb-run -a -s "-screen 0 1366x768x24" .venv/bin/python docs/_scripts/make_nuclei_screenshot.py
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

    from napari_inceptseg.scoring.objects import instance_scores

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
    return 0


if __name__ == "__main__":
    sys.exit(main())
