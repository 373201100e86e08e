"""The "Score against ground truth" dock widget."""

from __future__ import annotations

import numpy as np
import pytest

from helpers import GUI_DEADLINE_MS

pytestmark = pytest.mark.gui

GT = np.array([[1, 1, 2, 2], [1, 1, 2, 2], [0, 0, 3, 3]], dtype=np.int32)
PRED = np.array([[5, 6, 7, 7], [5, 6, 7, 7], [8, 8, 7, 7]], dtype=np.int32)


@pytest.fixture
def scored(make_napari_viewer):
    viewer = make_napari_viewer()
    pred = viewer.add_labels(PRED.copy(), name="clusters")
    gt = viewer.add_labels(GT.copy(), name="ground truth")
    _, widget = viewer.window.add_plugin_dock_widget(
        "napari-inceptseg", "Score against ground truth"
    )
    return viewer, widget, pred, gt


def test_picks_layers_and_scores_a_hand_computed_example(scored):
    _, widget, pred, gt = scored
    assert widget._pred.value is pred and widget._gt.value is gt
    s = widget.result
    # Hungarian on counts: 5->1 (2 px), 7->2 or 3 (4 px / 2 px), 8->0 (2 px) => (2 + 4 + 2 + 2?) ...
    # clusters 5,6,7,8 vs classes 0,1,2,3: table rows 5:[0,2,0,0] 6:[0,2,0,0] 7:[0,0,4,2]
    # 8:[2,0,0,0]
    # best one-to-one: 5->1, 7->2, 8->0 (+6 unmatched or ->3 with 0) = 2 + 4 + 2 = 8 of 12
    assert s["accuracy"] == pytest.approx(8 / 12)
    # IoU: class0 8:2/2=1, class1 5: 2/4, class2 7: 4/6, class3 unmatched... (7 is used) -> 0
    assert s["miou"] == pytest.approx((1 + 0.5 + 4 / 6 + 0) / 4)
    table = widget._table.native  # what the dock shows
    rows = {
        table.verticalHeaderItem(r).text(): table.item(r, 0).text() for r in range(table.rowCount())
    }
    assert rows["accuracy"] == f"{8 / 12:.3f}"
    assert rows["IoU class 3"] == "0.000"
    # region scores: best IoU per segment 2/4, 4/6, 1, 2/6 (see test_metrics)
    assert rows["kim mIoU"] == f"{(0.5 + 4 / 6 + 1 + 2 / 6) / 4:.3f}"
    assert rows["covering"] == f"{(2 + 8 / 3 + 2 + 2 / 3) / 12:.3f}"
    assert rows["regions"] == "4"
    csv = widget.table_csv()
    assert csv.startswith("metric,value\nmIoU,") and "NMI," in csv and "homogeneity," in csv


def test_ignore_label_and_majority_matching(scored):
    _, widget, _, _ = scored
    widget._ignore.value = "0"
    s = widget.result
    assert s["n_pixels"] == 10 and 0 not in s["per_class_iou"]
    widget._matching.value = "majority"
    s = widget.result
    # majority: 5->1, 6->1, 7->2 => class 3 pixels (2) wrong: 8/10
    assert s["accuracy"] == pytest.approx(8 / 10)
    widget._ignore.value = "abc"
    assert widget.result is None and "integer" in widget._status.value


def test_updates_after_an_edit(scored, qtbot):
    _, widget, pred, _ = scored
    before = widget.result["accuracy"]
    pred.brush_size = 1
    pred.paint((2, 2), 9)  # the brush tool's call
    pred.paint((2, 3), 9)
    qtbot.waitUntil(
        lambda: widget.result is not None and widget.result["accuracy"] != before,
        timeout=GUI_DEADLINE_MS,
    )
    assert widget.result["accuracy"] == pytest.approx(10 / 12)


def test_shape_mismatch_is_a_clear_message(make_napari_viewer):
    viewer = make_napari_viewer()
    viewer.add_labels(np.ones((4, 4), np.int32), name="a")
    viewer.add_labels(np.ones((5, 4), np.int32), name="b ground truth")
    _, widget = viewer.window.add_plugin_dock_widget(
        "napari-inceptseg", "Score against ground truth"
    )
    assert widget.result is None
    assert "differ in shape" in widget._status.value


def test_matched_layer_shares_class_ids(scored):
    viewer, widget, pred, gt = scored
    layer = widget.add_matched_layer()
    assert layer.name == "clusters matched"
    # on IoU: 8 -> 0, 5 -> 1, 7 -> 2; 6 overlaps no class left, so it gets a new id (4)
    assert layer.data[0, 0] == 1 and layer.data[0, 2] == 2
    assert layer.data[0, 1] == 4
    assert layer.data.shape == GT.shape


def test_the_empty_table_has_its_one_column_and_edits_flow_to_csv_and_matched_layer(
    make_napari_viewer, qtbot
):
    viewer = make_napari_viewer()
    _, widget = viewer.window.add_plugin_dock_widget(
        "napari-inceptseg", "Score against ground truth"
    )
    # no "data | columns"
    assert widget._table.column_headers == ("value",) and widget._table.shape == (
        0,
        1,
    )
    pred = viewer.add_labels(PRED.copy(), name="clusters")
    viewer.add_labels(GT.copy(), name="ground truth")
    widget._gt.value = viewer.layers["ground truth"]
    widget._pred.value = pred
    before = widget.table_csv()
    pred.data[2, :2] = 6  # the user fixes... and breaks the bottom-left corner
    pred.events.data()
    qtbot.waitUntil(lambda: widget.table_csv() != before, timeout=GUI_DEADLINE_MS)
    matched = widget.add_matched_layer()
    assert matched is not None and matched.data[2, 0] == matched.data[0, 1]  # follows the edit


def test_every_score_is_readable_at_the_default_dock_width(make_napari_viewer, qtbot):
    """On a 1366 x 768 screen, in the dock as napari opens it: every name whole, every
    value with its three decimals, nothing clipped."""
    viewer = make_napari_viewer(show=True)
    viewer.window._qt_window.resize(1366, 768)
    viewer.add_labels(PRED.copy(), name="clusters")
    viewer.add_labels(GT.copy(), name="ground truth")
    _, widget = viewer.window.add_plugin_dock_widget(
        "napari-inceptseg", "Score against ground truth"
    )
    qtbot.wait(200)
    table = widget._table.native
    metrics = table.fontMetrics()
    assert table.rowCount() >= 11
    for row in range(table.rowCount()):
        name, value = table.verticalHeaderItem(row).text(), table.item(row, 0).text()
        assert metrics.horizontalAdvance(name) <= table.verticalHeader().width(), name
        assert metrics.horizontalAdvance(value) + 6 <= table.columnWidth(0), (
            value,
            table.columnWidth(0),
        )
        assert table.verticalHeaderItem(row).toolTip()
    # the column is on screen, not scrolled off
    assert table.viewport().width() >= table.columnWidth(0)


def test_object_counts_beside_the_truth(make_napari_viewer):
    truth = np.zeros((20, 30), np.int32)
    truth[2:8, 2:8] = 1
    truth[10:18, 4:12] = 2
    truth[10:18, 18:26] = 3
    pred = truth * 5
    pred[10:18, 18:26] = 0  # one object missed
    viewer = make_napari_viewer()
    viewer.add_labels(pred, name="objects")
    viewer.add_labels(truth, name="ground truth")
    _, widget = viewer.window.add_plugin_dock_widget(
        "napari-inceptseg", "Score against ground truth"
    )
    table = widget._table.native
    rows = {
        table.verticalHeaderItem(r).text(): table.item(r, 0).text() for r in range(table.rowCount())
    }
    assert rows["objects"] == "2" and rows["true objects"] == "3"
    assert rows["F1 @ .5"] == f"{2 * 2 / (2 + 3):.3f}"
