"""Scribbles, network reuse (save / load / apply to all slices) and 3D mode in the widget."""

from __future__ import annotations

import numpy as np
import pytest

from helpers import GUI_DEADLINE_MS
from napari_inceptseg import load_model, score

pytestmark = pytest.mark.gui


def _widget(viewer):
    _, widget = viewer.window.add_plugin_dock_widget(
        "napari-inceptseg", "Unsupervised segmentation"
    )
    widget._params["arch"].value = "vanilla"
    widget._params["n_channels"].value = 16
    widget._seed.value = 0
    widget._device.value = "cpu"
    return widget


def _wait(qtbot, widget):
    qtbot.waitUntil(lambda: not widget.running, timeout=GUI_DEADLINE_MS)


def test_scribbles_layer_guides_the_run_and_keeps_its_ids(make_napari_viewer, qtbot, small_rgb):
    viewer = make_napari_viewer()
    img = viewer.add_image(small_rgb, name="img", rgb=True)
    scr = np.zeros(small_rgb.shape[:2], np.int32)
    scr[2:22, 3:6] = 4
    scr[2:22, 22:26] = 7
    strokes = viewer.add_labels(scr.copy(), name="strokes")
    widget = _widget(viewer)
    widget._image.value = img
    widget._scribbles.value = strokes
    widget._params["w_scr"].value = 2.0
    widget._params["max_iter"].value = 30
    widget.run()
    _wait(qtbot, widget)
    out = viewer.layers["img clusters"]
    assert out.data[11, 4] == 4 and out.data[11, 24] == 7
    assert out.metadata["inceptseg"]["scribble_ids"] == [4, 7]
    np.testing.assert_array_equal(strokes.data, scr)  # the user's strokes are untouched
    assert "the whole image at once" in widget._status.value
    # a scribbles layer of the wrong shape is a notification, and no run starts
    viewer.add_labels(np.zeros((5, 5), np.int32), name="wrong")
    widget._scribbles.value = viewer.layers["wrong"]
    n = len(viewer.layers)
    widget.run()
    assert not widget.running and len(viewer.layers) == n


def test_train_on_one_frame_save_load_and_apply_to_all(
    make_napari_viewer, qtbot, tmp_path, monkeypatch
):
    from qtpy.QtWidgets import QFileDialog

    from sample_images import moving_shapes

    frames, gts = moving_shapes(n_frames=6)
    viewer = make_napari_viewer()
    layer = viewer.add_image(frames, name="movie", rgb=True)
    widget = _widget(viewer)
    widget._image.value = layer
    widget._params["max_iter"].value = 60
    widget._params["min_labels"].value = 4
    net = widget._network
    assert not net.apply_btn.enabled
    widget.run()  # current slice: frame 0
    _wait(qtbot, widget)
    assert net.apply_btn.enabled and "trained on 'movie'" in net.info.value
    path = tmp_path / "net.safetensors"
    chosen = [str(path)]  # what the user picks in Qt's dialogs (which confirm a replacement)
    monkeypatch.setattr(QFileDialog, "getSaveFileName", lambda *a, **k: (chosen[0], ""))
    monkeypatch.setattr(QFileDialog, "getOpenFileName", lambda *a, **k: (chosen[0], ""))
    net.save_btn.native.click()
    assert load_model(path).params.arch == "vanilla"
    path.write_bytes(b"an older file")
    net.save_btn.native.click()  # the dialog asked before replacing it: honoured
    assert load_model(path).params.arch == "vanilla"
    mine = tmp_path / "mine"
    (tmp_path / "mine.safetensors").write_bytes(b"the user's file")
    chosen[0] = str(mine)  # no suffix: the dialog confirmed "mine", not "mine.safetensors"
    net.save_btn.native.click()
    assert (tmp_path / "mine.safetensors").read_bytes() == b"the user's file"
    net.model = None
    chosen[0] = str(path)
    net.load_btn.native.click()
    assert net.model is not None and "loaded from net.safetensors" in net.info.value
    widget._slices.value = "all slices"
    widget.apply()
    _wait(qtbot, widget)
    out = viewer.layers["movie clusters (applied)"]
    assert out.data.shape == gts.shape and out.metadata["inceptseg"]["n_iter"] == 0
    for obj in (1, 2, 3, 4):
        ids = {np.bincount(out.data[t][gts[t] == obj]).argmax() for t in range(len(frames))}
        assert len(ids) == 1


def test_3d_mode_from_the_widget(make_napari_viewer, qtbot):
    from sample_images import ellipsoids

    vol, gt = ellipsoids(shape=(10, 32, 32))
    viewer = make_napari_viewer()
    layer = viewer.add_image(vol, name="vol", scale=(3.0, 1.0, 1.0))
    widget = _widget(viewer)
    widget._image.value = layer
    widget._params["dims"].value = "3d"
    widget._params["max_iter"].value = 30
    widget._params["min_labels"].value = 4
    assert not widget._slices.visible  # the whole volume is one run
    widget.run()
    _wait(qtbot, widget)
    out = viewer.layers["vol regions"]
    assert out.data.shape == gt.shape
    md = out.metadata["inceptseg"]
    assert md["params"]["dims"] == "3d" and md["spacing"] == [3.0, 1.0, 1.0]
    np.testing.assert_allclose(out.scale, (3.0, 1.0, 1.0))
    assert score(out.data, gt, matching="majority")["accuracy"] > 0.85
