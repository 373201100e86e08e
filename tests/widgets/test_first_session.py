"""What a napari user meets in the first ten minutes: a dock that fits a laptop,
settings kept between sessions, cancel from the activity dock, pyramids and lazy
stacks, a network applied to a folder, and the exact call copied from a result."""

from __future__ import annotations

import numpy as np
import pytest

from helpers import GUI_DEADLINE_MS
from napari_inceptseg._widgets.segment import SegmentWidget

pytestmark = pytest.mark.gui


def _dock(viewer, layer=None, **params):
    _, widget = viewer.window.add_plugin_dock_widget(
        "napari-inceptseg", "Unsupervised segmentation"
    )
    if layer is not None:
        widget._image.value = layer
    widget._device.value = "cpu"
    widget._seed.value = 0
    for name, value in params.items():
        widget._params[name].value = value
    return widget


def _wait(qtbot, widget, timeout=GUI_DEADLINE_MS):
    qtbot.waitUntil(lambda: not widget.running, timeout=timeout)


def test_the_dock_fits_a_laptop_screen_and_long_messages_wrap(make_napari_viewer, qtbot, synthetic):
    viewer = make_napari_viewer(show=True)  # (a hidden window never grows)
    window = viewer.window._qt_window
    window.resize(1366, 768)
    viewer.add_image(synthetic[0], name="syn", rgb=True)
    widget = _dock(viewer)
    qtbot.wait(100)
    canvas = viewer.window._qt_viewer.canvas.native
    width = canvas.width()
    hint = widget.native.sizeHint()
    assert hint.height() <= 700 and hint.width() <= 520, hint
    assert width >= 600  # the canvas keeps a good part of the screen
    widget._status.value = "a long error message that goes on and on " * 8  # ~330 characters
    widget._advanced.set_open(True)  # every setting shown: the dock scrolls, the window stays
    widget._network_section.set_open(True)
    qtbot.wait(300)
    assert canvas.width() == width and window.width() == 1366 and window.height() == 768


def test_every_button_says_what_it_does(make_napari_viewer):
    from magicgui.widgets import Container, PushButton

    widget = _dock(make_napari_viewer())

    def buttons(container):
        for w in container:
            if isinstance(w, PushButton):
                yield w
            elif isinstance(w, Container):
                yield from buttons(w)

    found = list(buttons(widget._body))
    assert len(found) >= 9
    assert all(b.tooltip for b in found), [b.text for b in found if not b.tooltip]


def test_settings_persist_between_sessions_and_restore_defaults(make_napari_viewer):
    viewer = make_napari_viewer()
    first = SegmentWidget(viewer)
    first._preset.value = "paper-vanilla"
    first._params["n_channels"].value = 32
    first._params["n_clusters"].value = 5
    first._seed.value = 7
    first._preview_every.value = 3
    first._advanced.set_open(True)
    first._advanced.toggle.changed.emit(True)  # what a click on the toggle sends

    second = SegmentWidget(viewer)  # the next napari session
    assert second._preset.value == "paper-vanilla" and second._params["max_iter"].value == 1000
    assert second._params["n_channels"].value == 32 and second._params["n_clusters"].value == 5
    assert second._seed.value == 7 and second._preview_every.value == 3
    second.restore_defaults()
    third = SegmentWidget(viewer)
    assert third._preset.value == "default" and third._params["n_channels"].value == 48
    assert (
        third._params["max_iter"].value == 15
        and third._seed.value == -1
        and third._preview_every.value == 10
    )


@pytest.mark.parametrize("trouble", ["unreadable", "deeply_nested", "not_a_mapping", "wrong_types"])
def test_the_dock_opens_with_the_defaults_when_its_settings_cannot_be_read(
    make_napari_viewer, monkeypatch, trouble
):
    from pathlib import Path

    from napari_inceptseg.dock import settings

    path = settings.settings_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        {
            "deeply_nested": "[" * 100_000 + "]" * 100_000,
            "not_a_mapping": "[1, 2]",
            "wrong_types": '{"preset": [1], "n_channels": "many", "seed": {"a": 1}, "device": 3}',
            "unreadable": "{}",
        }[trouble]
    )
    if trouble == "unreadable":  # (root reads any file: make the folder refuse as it would a user)
        is_file = Path.is_file

        def refuse(self):
            if self.parent == path.parent:
                raise PermissionError(13, "Permission denied", str(self))
            return is_file(self)

        monkeypatch.setattr(Path, "is_file", refuse)
    warned = []
    monkeypatch.setattr("napari.utils.notifications.show_warning", warned.append)
    widget = SegmentWidget(make_napari_viewer())
    assert widget._preset.value == "default" and widget._params["n_channels"].value == 48
    assert widget._seed.value == -1
    if trouble != "wrong_types":  # (values of the wrong type are skipped one by one, in the log)
        assert len(warned) == 1 and "could not be read" in warned[0] and "defaults" in warned[0]


def test_cancel_from_the_activity_dock_within_one_tile_of_the_final_pass(
    make_napari_viewer, qtbot, monkeypatch
):
    import time

    from napari_inceptseg.engine.workflow import final_pass as finish

    record = finish.final_record

    # each tile takes 20 ms more: the pass outlasts the main thread's reaction
    def slow_tile(*args):
        time.sleep(0.02)
        return record(*args)

    monkeypatch.setattr(finish, "final_record", slow_tile)
    viewer = make_napari_viewer()
    image = np.random.default_rng(0).integers(0, 255, (160, 200, 3), dtype=np.uint8)
    layer = viewer.add_image(image, name="big", rgb=True)
    widget = _dock(viewer, layer)
    widget._preset.value = "paper-vanilla"
    for name, value in dict(n_channels=8, max_iter=2, tile_size=24).items():
        widget._params[name].value = value
    widget._preview_every.value = 0
    tiles = []

    def cancel_in_the_final_pass(sp):
        part = sp.progress.part
        if part is not None:
            tiles.append(part)
            if len(tiles) == 1:
                widget._run.pbar.cancel()  # the activity dock's cancel button

    n_layers = len(viewer.layers)
    widget.run()
    widget._run.job.worker.yielded.connect(cancel_in_the_final_pass)
    _wait(qtbot, widget)
    assert widget._status.value.startswith("cancelled"), widget._status.value
    assert tiles and tiles[0][1] > 100 and len(tiles) < tiles[0][1] / 2  # stopped early in the pass
    assert len(viewer.layers) == n_layers  # the viewer is as it was


def test_a_pyramid_segments_its_largest_level_that_fits(
    make_napari_viewer, qtbot, monkeypatch, synthetic
):
    from napari_inceptseg.engine.machine import plan as planning

    viewer = make_napari_viewer()
    big = np.kron(synthetic[0], np.ones((16, 16, 1), dtype=np.uint8))  # 2048 x 2560
    levels = [big, big[::8, ::8]]
    layer = viewer.add_image(levels, name="pyramid", rgb=True, multiscale=True, scale=(0.5, 0.5))
    widget = _dock(viewer, layer, n_channels=16)
    widget.run()
    _wait(qtbot, widget)
    out = viewer.layers["pyramid regions"]
    assert out.data.shape == big.shape[:2] and np.allclose(out.scale, (0.5, 0.5))
    # with little memory, level 0's copies alone do not fit: level 1, placed at the same size
    free = planning.available_bytes
    monkeypatch.setattr(planning, "available_bytes", lambda device="cpu": 0.56e9)
    widget.run()
    _wait(qtbot, widget)
    small = [lay for lay in viewer.layers if lay.name.startswith("pyramid regions")][-1]
    assert (
        small is not out
        and small.data.shape == levels[1].shape[:2]
        and np.allclose(small.scale, (4.0, 4.0))
    )
    monkeypatch.setattr(planning, "available_bytes", lambda device="cpu": 1e6)
    n = len(viewer.layers)
    widget.run()  # nothing fits: a notification, the viewer as it was
    assert not widget.running and len(viewer.layers) == n
    # (undo() would also undo the settings folder)
    monkeypatch.setattr(planning, "available_bytes", free)
    assert not widget._level.native.isHidden() and len(widget._level.choices) == 3  # auto, 0, 1
    widget._level.value = 1  # the user's choice
    widget.run()
    _wait(qtbot, widget)
    chosen = [lay for lay in viewer.layers if lay.name.startswith("pyramid regions")][-1]
    assert chosen.data.shape == levels[1].shape[:2] and np.allclose(chosen.scale, (4.0, 4.0))


def test_a_dask_stack_is_read_plane_by_plane(make_napari_viewer, qtbot, synthetic):
    da = pytest.importorskip("dask.array")
    reads = []

    def plane(block, block_info=None):
        reads.append(block_info[None]["chunk-location"][0])
        return block

    frames = np.stack([synthetic[0]] * 6)
    lazy = da.from_array(frames, chunks=(1, *frames.shape[1:])).map_blocks(
        plane, dtype=frames.dtype
    )
    viewer = make_napari_viewer()
    layer = viewer.add_image(lazy, name="lazy", rgb=True)
    viewer.dims.set_current_step(0, 4)
    widget = _dock(viewer, layer, n_channels=16)
    reads.clear()
    widget.run()
    _wait(qtbot, widget)
    out = viewer.layers["lazy regions"]
    assert out.data.shape == (1, *frames.shape[1:3]) and out.translate[0] == 4
    assert set(reads) <= {4}  # the slice shown (napari's display may read it too), nothing else


def test_apply_to_folder_writes_one_labels_file_per_image_and_never_overwrites(
    make_napari_viewer, qtbot, tmp_path, synthetic
):
    import imageio.v3 as iio

    viewer = make_napari_viewer()
    layer = viewer.add_image(synthetic[0], name="syn", rgb=True)
    widget = _dock(viewer, layer, n_channels=16)
    widget.run()
    _wait(qtbot, widget)
    folder = tmp_path / "plates"
    folder.mkdir()
    for k in range(3):
        iio.imwrite(folder / f"well{k}.png", np.roll(synthetic[0], 10 * k, axis=1))
    (folder / "notes.txt").write_text("not an image")
    net = widget._network
    for expected in ("plates-labels", "plates-labels-2"):
        net.apply_to_folder(folder=str(folder))
        qtbot.waitUntil(lambda: net._folder_job is None, timeout=GUI_DEADLINE_MS)
        out = tmp_path / expected
        assert sorted(p.name for p in out.iterdir()) == [f"well{k}_labels.png" for k in range(3)]
        assert iio.imread(out / "well0_labels.png").shape == synthetic[0].shape[:2]
    assert "3 labels file(s) written" in widget._status.value


def test_copy_as_python_gives_the_same_labels_as_the_dock(make_napari_viewer, qtbot, synthetic):
    import shlex

    from qtpy.QtWidgets import QApplication

    from napari_inceptseg.cli.parser import build_parser
    from napari_inceptseg.cli.parser import params_from_args as _params_from_args

    viewer = make_napari_viewer()
    layer = viewer.add_image(synthetic[0], name="syn", rgb=True)
    widget = _dock(viewer, layer, n_channels=16)
    widget._seed.value = -1  # drawn, and recorded
    widget.run()
    _wait(qtbot, widget)
    out = viewer.layers["syn regions"]
    viewer.layers.selection.active = out
    code = widget.copy_recipe("python")
    assert QApplication.clipboard().text() == code
    scope = {"image": synthetic[0]}
    exec(code, scope)  # noqa: S102 - what the user pastes
    np.testing.assert_array_equal(scope["labels"], out.data)
    line = widget.copy_recipe("command")
    args = build_parser().parse_args(shlex.split(line)[1:])
    meta = out.metadata["inceptseg"]["params"]
    assert _params_from_args(args).to_dict() == {**meta, "seed": meta["seed"]}


def test_a_drawn_seed_types_back_into_the_box_and_the_command_names_the_real_file(
    make_napari_viewer, qtbot, synthetic, tmp_path
):
    """Every seed a run records fits the seed box; Copy as command names the file the image
    was read from (its own extension), and running it gives the layer's labels."""
    import shlex

    import imageio.v3 as iio

    from napari_inceptseg.cli.main import main

    path = tmp_path / "cells photo.jpeg.png"
    iio.imwrite(path, synthetic[0])
    viewer = make_napari_viewer()
    (layer,) = viewer.open(str(path), plugin="napari")
    widget = _dock(viewer, layer, n_channels=16)
    widget._seed.value = -1
    widget._runs.inline = True
    widget.run()
    first = viewer.layers[-1]
    seed = first.metadata["inceptseg"]["params"]["seed"]
    widget._seed.value = seed
    assert widget._seed.value == seed  # the box takes it
    widget.run()
    np.testing.assert_array_equal(viewer.layers[-1].data, first.data)
    viewer.layers.selection.active = first
    words = shlex.split(widget.copy_recipe("command"))
    assert words[2] == str(path)
    assert main([*words[1:], "-o", str(tmp_path / "out")]) == 0
    np.testing.assert_array_equal(
        iio.imread(tmp_path / "out" / f"{path.stem}_labels.png"), first.data
    )
    memory = viewer.add_image(synthetic[0], name="made in memory", rgb=True)
    widget._image.value = memory
    widget.run()
    viewer.layers.selection.active = viewer.layers[-1]
    placeholder = '<path to the image file of layer "made in memory">'
    assert shlex.split(widget.copy_recipe("command"))[2] == placeholder


def test_cancel_is_on_screen_in_the_dock_and_in_the_activity_dock_at_1366x768(
    make_napari_viewer, qtbot, synthetic
):
    from qtpy.QtCore import QRect
    from qtpy.QtWidgets import QPushButton

    viewer = make_napari_viewer(show=True)
    window = viewer.window._qt_window
    window.resize(1366, 768)
    layer = viewer.add_image(synthetic[0], name="syn", rgb=True)
    widget = _dock(viewer, layer)
    widget._preset.value = "paper-vanilla"
    widget._params["max_iter"].value = 100000  # long enough to look at
    qtbot.wait(100)
    widget.run()
    try:
        qtbot.waitUntil(
            lambda: widget._run is not None and widget._run.pbar is not None,
            timeout=GUI_DEADLINE_MS,
        )
        # a few iterations in, the bar shows its rate and time left: its widest text
        qtbot.waitUntil(lambda: widget._run.pbar.n >= 3, timeout=GUI_DEADLINE_MS)
        qtbot.wait(300)
        screen = QRect(window.mapToGlobal(window.rect().topLeft()), window.size())

        def on_screen(button) -> bool:  # whole, inside the window, and not clipped by a parent
            if not button.isVisible():
                return False
            area = QRect(button.mapToGlobal(button.rect().topLeft()), button.size())
            return (
                screen.contains(area)
                and button.visibleRegion().boundingRect().size() == button.size()
            )

        assert on_screen(widget._cancel_btn.native) and widget._cancel_btn.enabled
        dialog = window._activity_dialog
        buttons = [b for b in dialog.findChildren(QPushButton) if b.text() == "Cancel"]
        assert dialog.isVisible() and buttons and on_screen(buttons[-1])
        buttons[-1].click()  # the activity dock's cancel stops the run
        _wait(qtbot, widget)
        assert widget._status.value.startswith("cancelled")
        assert not dialog.isVisible()  # opened for the run, closed after it: the image is in view
    finally:
        if widget._run is not None:
            widget.cancel()
            _wait(qtbot, widget)
