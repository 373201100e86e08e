"""The "Unsupervised segmentation" dock widget, in a real (headless) napari viewer."""

from __future__ import annotations

import numpy as np
import pytest

from helpers import GUI_DEADLINE_MS
from napari_inceptseg import SegmentParams, score
from napari_inceptseg.presets import preset_params

pytestmark = pytest.mark.gui


@pytest.fixture
def viewer_and_widget(make_napari_viewer, synthetic):
    viewer = make_napari_viewer()
    image, gt = synthetic
    layer = viewer.add_image(image, name="syn", rgb=True, scale=(0.5, 2.0), translate=(10.0, -3.0))
    viewer.add_labels(gt, name="syn ground truth")
    _, widget = viewer.window.add_plugin_dock_widget(
        "napari-inceptseg", "Unsupervised segmentation"
    )
    widget._image.value = layer
    widget._params["arch"].value = "vanilla"
    widget._params["n_channels"].value = 32
    widget._seed.value = 0
    widget._device.value = "cpu"
    return viewer, widget


def _wait(qtbot, widget, timeout=GUI_DEADLINE_MS):
    qtbot.waitUntil(lambda: not widget.running, timeout=timeout)


def _run_quick(viewer, widget, qtbot, max_iter):
    """Run to the end with ``max_iter`` iterations, inline (the worker's handlers called
    in this thread, in the worker's order: no waiting); return the new layer."""
    before = set(map(id, viewer.layers))
    widget._params["max_iter"].value = max_iter
    widget._runs.inline = True
    widget.run()
    assert not widget.running
    (new,) = [lay for lay in viewer.layers if id(lay) not in before]
    return new


def test_docked_through_the_manifest(make_napari_viewer):
    viewer = make_napari_viewer()
    _, widget = viewer.window.add_plugin_dock_widget(
        "napari-inceptseg", "Unsupervised segmentation"
    )
    assert type(widget).__name__ == "SegmentWidget"
    # the default method, then each paper preset sets every method control
    assert widget._preset.value == "default"
    assert widget._params["n_channels"].value == 48 and widget._params["max_iter"].value == 15
    assert widget._params["arch"].value == "vanilla" and widget._params["regions"].value
    assert widget.parameters() == SegmentParams(device="auto")
    widget._preset.value = "paper-inception"
    assert widget.parameters() == preset_params("paper-inception", device="auto")
    widget._params["n_clusters"].value = 5
    widget._preset.value = "default"
    assert widget.parameters() == SegmentParams(device="auto")
    assert "clusters" in widget._params["n_channels"].tooltip
    assert "cpu" in widget._device.choices and widget._device.value == "auto"
    assert widget._slices.native.isHidden()  # no image: no slice options


def test_follows_the_active_image(make_napari_viewer):
    viewer = make_napari_viewer()
    _, widget = viewer.window.add_plugin_dock_widget(
        "napari-inceptseg", "Unsupervised segmentation"
    )
    a = viewer.add_image(np.zeros((10, 10)), name="a")
    b = viewer.add_image(np.zeros((10, 10)), name="b")
    viewer.layers.selection.active = a
    assert widget._image.value is a
    viewer.layers.selection.active = b
    assert widget._image.value is b


def test_run_makes_a_labels_layer_with_geometry_metadata_and_quality(
    viewer_and_widget, qtbot, synthetic
):
    viewer, widget = viewer_and_widget
    _, gt = synthetic
    widget._params["max_iter"].value = 60
    widget._preview_every.value = 5
    previews = []
    viewer.layers.events.inserted.connect(lambda e: previews.append(e.value.name))
    assert widget._run_btn.enabled and not widget._cancel_btn.enabled
    widget.run()
    assert widget.running and not widget._run_btn.enabled and widget._cancel_btn.enabled
    _wait(qtbot, widget)
    out = viewer.layers["syn regions"]
    assert previews == ["syn regions"]  # one layer, created at the first preview, then updated
    assert out.data.shape == gt.shape
    np.testing.assert_allclose(out.scale, (0.5, 2.0))
    np.testing.assert_allclose(out.translate, (10.0, -3.0))
    md = out.metadata["inceptseg"]
    assert md["params"]["arch"] == "vanilla" and md["params"]["seed"] == 0
    assert (
        md["device"] == "cpu" and md["n_iter"] == 60 and md["seconds"] > 0 and md["final_loss"] > 0
    )
    assert score(out.data, gt, matching="majority")["accuracy"] >= 0.95
    assert widget._run_btn.enabled and not widget._cancel_btn.enabled
    assert "regions after 60 iterations" in widget._status.value


def test_every_engine_parameter_has_a_control(viewer_and_widget):
    import dataclasses

    from napari_inceptseg import SegmentParams

    _, widget = viewer_and_widget
    names = {f.name for f in dataclasses.fields(SegmentParams)} - {"device", "seed"}
    assert names <= set(widget._params)
    widget._params["coarse_scale"].value = 0.5
    widget._params["precision"].value = "bfloat16"
    p = widget.parameters()
    assert p.coarse_scale == 0.5 and p.precision == "bfloat16"


def test_coarse_to_fine_from_the_widget(viewer_and_widget, qtbot, synthetic):
    viewer, widget = viewer_and_widget
    _, gt = synthetic
    widget._preset.value = "paper-vanilla"  # coarse-to-fine of the papers' full-resolution method
    widget._params["n_channels"].value = 32
    widget._params["coarse_scale"].value = 0.5
    widget._params["coarse_iter"].value = 60
    widget._params["refine_iter"].value = 2
    widget._preview_every.value = 10
    widget.run()
    _wait(qtbot, widget)
    out = viewer.layers["syn clusters"]
    assert out.data.shape == gt.shape
    md = out.metadata["inceptseg"]
    assert md["n_iter"] == 62 and md["params"]["coarse_scale"] == 0.5
    assert score(out.data, gt, matching="majority")["accuracy"] >= 0.95


def test_rerun_makes_a_new_layer_and_leaves_the_edited_one(viewer_and_widget, qtbot):
    viewer, widget = viewer_and_widget
    first = _run_quick(viewer, widget, qtbot, 3)
    assert first.name == "syn regions"
    first.data[:5, :5] = 42  # the user edits the result
    before = first.data.copy()
    second = _run_quick(viewer, widget, qtbot, 3)
    assert np.array_equal(first.data, before)
    assert second.name == "syn regions [1]"


@pytest.mark.parametrize("keep", [False, True])
def test_cancel_in_the_middle(viewer_and_widget, qtbot, keep):
    viewer, widget = viewer_and_widget
    widget._params["max_iter"].value = 5000
    widget._params["min_labels"].value = 1
    widget._preview_every.value = 1
    widget._keep_preview.value = keep
    names_before = [lay.name for lay in viewer.layers]
    widget.run()
    qtbot.waitUntil(
        lambda: "syn regions" in [lay.name for lay in viewer.layers], timeout=GUI_DEADLINE_MS
    )
    widget.cancel()
    _wait(qtbot, widget, timeout=GUI_DEADLINE_MS)
    names = [lay.name for lay in viewer.layers]
    if keep:
        assert names == names_before + ["syn regions"]
        assert viewer.layers["syn regions"].data.min() >= 1  # a real preview
    else:
        assert names == names_before
    assert widget._status.value.startswith("cancelled"), widget._status.value
    assert widget._run_btn.enabled and not widget._cancel_btn.enabled


def test_bad_input_is_a_notification_and_the_widget_recovers(
    make_napari_viewer, qtbot, monkeypatch
):
    viewer = make_napari_viewer()
    layer = viewer.add_image(np.full((20, 20), np.nan, dtype=np.float32), name="broken")
    _, widget = viewer.window.add_plugin_dock_widget(
        "napari-inceptseg", "Unsupervised segmentation"
    )
    errors = []
    import napari_inceptseg._widgets.run as run
    import napari_inceptseg._widgets.segment as seg

    monkeypatch.setattr(seg, "show_error", errors.append)  # refused before the run
    monkeypatch.setattr(run, "show_error", errors.append)  # or failed in it
    widget._image.value = layer
    widget._params["max_iter"].value = 2
    widget._preview_every.value = 1
    widget._runs.inline = True
    widget.run()
    assert len(errors) == 1 and "NaN" in errors[0] and "nan_to_num" in errors[0]
    assert [lay.name for lay in viewer.layers] == ["broken"]
    assert widget._run_btn.enabled and not widget._cancel_btn.enabled


def test_all_slices_of_a_stack(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    rng = np.random.default_rng(0)
    gt = np.ones((3, 32, 40), dtype=np.int32)
    for z in range(3):
        gt[z, 8:24, 5 + 6 * z : 20 + 6 * z] = 2
    stack = (np.where(gt == 2, 0.8, 0.2) + rng.normal(0, 0.03, gt.shape)).astype(np.float32)
    layer = viewer.add_image(stack, name="stack", scale=(3.0, 1.0, 1.0))
    _, widget = viewer.window.add_plugin_dock_widget(
        "napari-inceptseg", "Unsupervised segmentation"
    )
    widget._image.value = layer
    assert not widget._slices.native.isHidden()  # shown for nD images
    widget._slices.value = "all slices"
    widget._preset.value = "paper-vanilla"  # warm start keeps cluster ids along the stack
    widget._params["n_channels"].value = 16
    widget._params["max_iter"].value = 40
    widget._params["min_labels"].value = 2
    widget._seed.value = 0
    widget.run()
    _wait(qtbot, widget)
    out = viewer.layers["stack clusters"]
    assert out.data.shape == gt.shape
    np.testing.assert_allclose(out.scale, (3.0, 1.0, 1.0))
    assert score(out.data, gt, matching="majority")["accuracy"] >= 0.95
    # warm start: the stack scored at once is as good as its slices one by one
    per_slice = np.mean([score(out.data[z], gt[z])["accuracy"] for z in range(3)])
    assert score(out.data, gt)["accuracy"] >= per_slice - 0.01
    assert len(out.metadata["inceptseg"]["n_iter_per_plane"]) == 3


def test_current_slice_of_a_multichannel_stack(make_napari_viewer, qtbot):
    """A "current slice" run gives a result of that slice's size, placed at that slice
    (not a layer of the whole stack's size for each run)."""
    viewer = make_napari_viewer()
    data = np.random.default_rng(1).random((4, 2, 16, 20)).astype(np.float32)  # (Z, C, Y, X)
    layer = viewer.add_image(data, name="zc", scale=(3.0, 1.0, 0.5, 0.5), translate=(10.0, 0, 0, 0))
    viewer.dims.set_current_step(0, 2)
    _, widget = viewer.window.add_plugin_dock_widget(
        "napari-inceptseg", "Unsupervised segmentation"
    )
    widget._image.value = layer
    widget._channel_axis.value = 1
    widget._params["arch"].value = "vanilla"
    widget._params["n_channels"].value = 8
    widget._params["max_iter"].value = 2
    widget.run()
    _wait(qtbot, widget)
    out = viewer.layers["zc regions"]
    assert out.data.shape == (1, 16, 20) and out.data.min() >= 1
    np.testing.assert_allclose(out.scale, (3.0, 0.5, 0.5))
    assert out.translate[0] == 10.0 + 2 * 3.0  # world z of slice 2
    assert np.array_equal(out.world_to_data((16.0, 0, 0)), (0, 0, 0))


def test_painting_and_undo_work_on_the_output(viewer_and_widget, qtbot):
    viewer, widget = viewer_and_widget
    out = _run_quick(viewer, widget, qtbot, 2)
    before = out.data.copy()
    out.paint((20, 20), 99)
    assert out.data[20, 20] == 99
    out.undo()
    assert np.array_equal(out.data, before)


def test_demo_opens_napari_with_results_and_both_widgets(make_napari_viewer, monkeypatch, tmp_path):
    import napari

    from napari_inceptseg.cli import demo as _cli_demo
    from napari_inceptseg.cli import main as _cli_main

    made = []
    monkeypatch.setattr(
        napari, "Viewer", lambda **kw: made.append(make_napari_viewer()) or made[-1]
    )
    monkeypatch.setattr(napari, "run", lambda: None)
    monkeypatch.setattr(_cli_demo, "_has_display", lambda: True)
    assert _cli_main.main(["demo", "--max-iter", "2", "-o", str(tmp_path), "--device", "cpu"]) == 0
    (viewer,) = made
    names = [lay.name for lay in viewer.layers]
    assert "synthetic regions" in names and "astronaut regions" in names
    docks = viewer.window.dock_widgets  # public mapping of dock widget names
    assert any("Unsupervised segmentation" in k for k in docks)
    assert any("Score against ground truth" in k for k in docks)


def test_a_progress_bar_that_processes_events_cannot_put_a_preview_over_the_result(
    viewer_and_widget, qtbot, monkeypatch
):
    """napari's progress bar may run Qt's event loop inside a ``yielded`` handler, so the
    result's handlers can run inside it; the preview of that record must not land after them."""
    import time

    from napari.utils import progress
    from qtpy.QtWidgets import QApplication

    plain = progress.update
    calls = []

    def nesting_update(self, n=1):
        calls.append(n)
        if len(calls) == 1:  # the first record's update runs every later record, the result too
            deadline = time.monotonic() + 20
            while widget.running and time.monotonic() < deadline:
                QApplication.processEvents()
                time.sleep(0.01)
        return plain(self, n)

    monkeypatch.setattr(progress, "update", nesting_update)
    viewer, widget = viewer_and_widget
    widget._preview_every.value = 1
    out = _run_quick(viewer, widget, qtbot, max_iter=12)
    meta = out.metadata["inceptseg"]
    assert len(np.unique(out.data)) == meta["n_labels"]
    assert widget._status.value.startswith(
        f"syn regions: {meta['n_labels']} regions after 12 iterations"
    )


def test_two_docks_running_at_once_each_end_with_their_own_result(
    make_napari_viewer, qtbot, synthetic, monkeypatch
):
    """Two docks run side by side on two images, three times, with a progress bar that
    runs Qt's event loop (so handlers of both runs interleave and nest); every output
    layer ends with exactly its own run's final labels, status and metadata."""
    import time

    from napari.utils import progress
    from qtpy.QtWidgets import QApplication

    from napari_inceptseg._widgets.run import RunLifecycle
    from napari_inceptseg._widgets.segment import SegmentWidget

    plain = progress.update

    def nesting_update(self, n=1):
        deadline = time.monotonic() + 0.05  # let queued records of both runs through
        while time.monotonic() < deadline:
            QApplication.processEvents()
        return plain(self, n)

    monkeypatch.setattr(progress, "update", nesting_update)
    finals = {}  # each dock's results, as its own handler received them
    returned = RunLifecycle._on_returned

    def recording_returned(self, *args):  # (run, result); self: a dock's RunLifecycle
        finals.setdefault(id(self), []).append(args[-1])
        return returned(self, *args)

    monkeypatch.setattr(RunLifecycle, "_on_returned", recording_returned)
    viewer = make_napari_viewer()
    image, _ = synthetic
    layers = [
        viewer.add_image(data, name=f"img{i}", rgb=True)
        for i, data in enumerate((image, np.ascontiguousarray(image[::-1, ::-1])))
    ]
    docks = []
    for i, layer in enumerate(layers):
        widget = SegmentWidget(viewer)
        viewer.window.add_dock_widget(widget, name=f"seg{i}")
        widget._image.value = layer
        widget._params["n_channels"].value = 16
        widget._params["max_iter"].value = 8 + 4 * i
        widget._preview_every.value = 1
        widget._seed.value = i
        widget._device.value = "cpu"
        docks.append(widget)
    for repeat in range(3):
        before = set(map(id, viewer.layers))
        for widget in docks:
            widget.run()
        assert all(w.running for w in docks)
        qtbot.waitUntil(lambda: not any(w.running for w in docks), timeout=GUI_DEADLINE_MS)
        new = [lay for lay in viewer.layers if id(lay) not in before]
        assert len(new) == 2
        for i, widget in enumerate(docks):
            (layer,) = [lay for lay in new if lay.name.startswith(f"img{i} ")]
            result = finals[id(widget._runs)][repeat]
            # the same seed gives the same labels, whatever the other dock does meanwhile
            np.testing.assert_array_equal(result.labels, finals[id(widget._runs)][0].labels)
            np.testing.assert_array_equal(layer.data, result.labels)
            meta = layer.metadata["inceptseg"]
            assert meta["image"] == f"img{i}" and meta["n_labels"] == result.n_labels == len(
                np.unique(layer.data)
            )
            assert widget._status.value.startswith(
                f"img{i} regions: {result.n_labels} regions after {result.n_iter} iterations"
            )


def test_split_into_objects_counts_touching_discs(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    yy, xx = np.mgrid[0:60, 0:90]
    clusters = np.ones((60, 90), np.int32)
    for cy, cx in ((30, 22), (30, 40), (30, 70)):  # two touching discs and one apart
        clusters[(yy - cy) ** 2 + (xx - cx) ** 2 <= 10**2] = 2
    seg = viewer.add_labels(clusters, name="nuclei clusters", scale=(0.5, 0.5))
    _, widget = viewer.window.add_plugin_dock_widget(
        "napari-inceptseg", "Unsupervised segmentation"
    )
    viewer.layers.selection.active = seg
    statuses = []
    widget._objects._status = lambda text: statuses.append(text)
    assert widget._objects.split() is None  # in the background, a line per step
    qtbot.waitUntil(
        lambda: viewer.layers[-1].name == "nuclei clusters objects", timeout=GUI_DEADLINE_MS
    )
    out = viewer.layers[-1]
    assert (
        out.data.max() == 3
        and any("watershed" in s for s in statuses)
        and statuses[-1].endswith("3 objects")
    )
    widget._objects.inline = True
    np.testing.assert_allclose(out.scale, (0.5, 0.5))
    np.testing.assert_array_equal(seg.data, clusters)  # the user's layer is left as it was
    widget._objects.separate.value = False
    assert widget._objects.split().data.max() == 2


def test_nuclei_sample_opens_with_its_ground_truth(make_napari_viewer):
    viewer = make_napari_viewer()
    viewer.open_sample("napari-inceptseg", "nuclei")
    image, gt = viewer.layers["nuclei"], viewer.layers["nuclei ground truth"]
    assert image.data.shape == gt.data.shape == (256, 256)
    assert len(np.unique(gt.data)) == 37  # 36 nuclei and the background
    # the nuclei are the bright objects of a fluorescence image
    assert image.data[gt.data > 0].mean() > 3 * image.data[gt.data == 0].mean()


def test_objects_choice_adds_measured_objects(make_napari_viewer, tmp_path):
    from napari_inceptseg.sample_data import nuclei_image

    viewer = make_napari_viewer()
    image, truth = nuclei_image()
    layer = viewer.add_image(image, name="nuclei")
    _, widget = viewer.window.add_plugin_dock_widget(
        "napari-inceptseg", "Unsupervised segmentation"
    )
    widget._image.value = layer
    widget._params["objects"].value = True
    widget._runs.inline = True
    widget.run()
    out = viewer.layers[-1]
    n_true = len(np.unique(truth)) - 1
    assert out.name == "nuclei objects" and out.data.min() == 0
    assert abs(int(out.data.max()) - n_true) <= 0.15 * n_true
    assert len(out.features) == out.data.max() and out.features["area"].min() > 0
    assert "intensity_mean" in out.features and widget._status.value.startswith("nuclei objects: ")
    viewer.layers.selection.active = out
    gone = int(out.data[out.data > 0][0])
    out.data = np.where(out.data == gone, 0, out.data)  # a hand edit: one object erased
    saved = widget._objects.save_measurements(tmp_path / "nuclei.csv")
    rows = saved.read_text().splitlines()
    assert len(rows) == len(np.unique(out.data)) and "intensity_mean" in rows[0]  # + header
    assert gone not in out.features["label"].tolist()
