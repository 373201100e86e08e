"""The dock's "Detail" slider: the last result recut live, hand edits never overwritten."""

from __future__ import annotations

import numpy as np
import pytest

from helpers import GUI_DEADLINE_MS
from napari_inceptseg import segment
from napari_inceptseg.dock.detail import DetailModel, detail_to_level
from napari_inceptseg.sample_data import synthetic_regions


class _Layer:
    def __init__(self, data):
        self.data = data


def test_the_model_recuts_in_place_until_the_layer_is_edited():
    """(No Qt, no napari: the state behind the slider.)"""
    result = segment(synthetic_regions((48, 64), n_regions=4, seed=0)[0], seed=0, device="cpu")
    layer = _Layer(result.labels.copy())
    model = DetailModel()
    model.attach(layer, result.hierarchy, result.level)
    where, labels = model.recut(detail_to_level(0.0))
    assert where == "replace" and (labels == 1).all()
    layer.data = labels
    assert not model.edited()
    layer.data = labels.copy()
    layer.data[0, 0] = 7  # a stroke of the brush
    where, labels = model.recut(detail_to_level(1.0))
    assert where == "new" and labels.max() == result.hierarchy.n_base and layer.data[0, 0] == 7


def test_the_model_sees_every_edit_after_any_number_of_recuts():
    """A napari Labels layer (no viewer): after recuts, a stroke of the brush, an undo and
    an edit of the array in place followed by a refresh are each seen as an edit."""
    from napari.layers import Labels

    result = segment(synthetic_regions((48, 64), n_regions=4, seed=0)[0], seed=0, device="cpu")
    edits = {
        "brush": lambda layer: layer.paint((5, 5), 97),
        "in place": lambda layer: (layer.data.__setitem__((slice(0, 3), 0), 97), layer.refresh()),
        "new array": lambda layer: setattr(layer, "data", layer.data + 1),
    }
    for name, edit in edits.items():
        layer = Labels(result.labels.copy())
        model = DetailModel()
        model.attach(layer, result.hierarchy, result.level)
        for detail in (0.3, 0.6, 0.9):  # the layer now holds an array the model made
            assert model.recut(detail_to_level(detail))[0] == "replace", name
        shown = np.array(layer.data, copy=True)
        edit(layer)
        edited = np.array(layer.data, copy=True)
        assert (edited != shown).any() and model.edited(), name
        where, labels = model.recut(detail_to_level(0.1))
        assert where == "new", name
        np.testing.assert_array_equal(layer.data, edited)  # the edit is kept
    layer.undo()  # undo is an edit too: the layer no longer shows the last cut
    assert model.edited()


@pytest.fixture
def segmented(make_napari_viewer, synthetic):
    viewer = make_napari_viewer()
    image, gt = synthetic
    layer = viewer.add_image(image, name="syn", rgb=True)
    viewer.add_labels(gt, name="syn ground truth")
    _, widget = viewer.window.add_plugin_dock_widget(
        "napari-inceptseg", "Unsupervised segmentation"
    )
    _, scorer = viewer.window.add_plugin_dock_widget(
        "napari-inceptseg", "Score against ground truth"
    )
    widget._image.value = layer
    widget._seed.value = 0
    widget._device.value = "cpu"
    widget._runs.inline = True
    widget.run()
    result = viewer.layers["syn regions"]
    scorer._pred.value = result
    scorer._gt.value = viewer.layers["syn ground truth"]
    return viewer, widget, scorer, result


@pytest.mark.gui
def test_the_slider_recuts_the_result_and_the_scores_follow(segmented, qtbot):
    viewer, widget, scorer, result = segmented
    detail = widget._detail
    hierarchy = detail.model.hierarchy
    assert detail.slider.enabled and detail.slider.value == pytest.approx(
        1 - widget.parameters().level
    )
    counts = []
    for value in (0.9, 0.5, 0.25, 0.0, 1.0):
        before, shown = scorer.table_csv(), np.array(result.data, copy=True)
        detail.slider.value = value
        np.testing.assert_array_equal(result.data, hierarchy.cut(1 - value))
        counts.append(len(np.unique(result.data)))
        assert detail.count.value == f"{counts[-1]} regions"
        if not np.array_equal(shown, result.data):  # the score dock follows
            qtbot.waitUntil(lambda b=before: scorer.table_csv() != b, timeout=GUI_DEADLINE_MS)
    assert (
        counts[:4] == sorted(counts[:4], reverse=True)
        and counts[3] == 1
        and counts[4] == hierarchy.n_base
    )
    assert result.metadata["inceptseg"]["params"]["level"] == 0.0  # (detail 1: level 0)
    assert len([layer for layer in viewer.layers if "regions" in layer.name]) == 1  # no new layer


@pytest.mark.gui
def test_an_edited_result_is_kept_with_its_undo_and_the_cut_goes_to_a_new_layer(segmented):
    from napari_inceptseg.dock.recipe import as_python

    viewer, widget, _, result = segmented
    before = np.array(result.data, copy=True)
    result.paint((5, 5), 99)  # a hand edit, as the brush makes it
    edited = np.array(result.data, copy=True)
    assert (edited != before).any()
    widget._detail.slider.value = 0.3
    np.testing.assert_array_equal(result.data, edited)  # not overwritten
    new = viewer.layers[-1]
    assert new is not result and new.name.startswith("syn regions (detail 0.3")
    np.testing.assert_array_equal(new.data, widget._detail.model.hierarchy.cut(0.7))
    result.undo()  # napari's undo still works on the edited layer
    np.testing.assert_array_equal(result.data, before)
    widget._detail.slider.value = 0.2  # the new layer, unedited, is recut in place
    assert viewer.layers[-1] is new and len(np.unique(new.data)) == widget._detail.model.n_regions(
        0.8
    )
    # an edit after a recut (the layer then holds the model's array) is kept as well
    new.paint((40, 40), 98)
    painted = np.array(new.data, copy=True)
    widget._detail.slider.value = 0.6
    np.testing.assert_array_equal(new.data, painted)
    newer = viewer.layers[-1]
    assert newer is not new and widget._detail.model.layer.name == newer.name
    newer.data[:4, :4] = 96  # in place, from the console, then shown
    newer.refresh()
    widget._detail.slider.value = 0.4
    assert (newer.data[:4, :4] == 96).all() and viewer.layers[-1] is not newer
    new = viewer.layers[-1]
    scope = {"image": viewer.layers["syn"].data}  # its recipe rebuilds exactly this cut
    exec(as_python(new.metadata["inceptseg"]), scope)  # noqa: S102 - the code a user would paste
    np.testing.assert_array_equal(scope["labels"], new.data)
