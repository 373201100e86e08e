"""The dock's whole-image panel: a layer opened from OME-Zarr, segmented on a cluster."""

from __future__ import annotations

import numpy as np
import pytest

from helpers import GUI_DEADLINE_MS, write_ome_zarr

pytestmark = [pytest.mark.gui, pytest.mark.slow]


def test_an_ome_zarr_layer_is_segmented_whole_and_opens_as_a_lazy_pyramid(
    make_napari_viewer, qtbot, tmp_path
):
    zarr = pytest.importorskip("zarr")
    from distributed import LocalCluster

    from test_distributed import disks, one_label_per_disk

    image, truth = disks(512, 128)
    src = write_ome_zarr(
        tmp_path / "cells.ome.zarr", np.moveaxis(image, -1, 0), "cyx", (3, 128, 128)
    )
    viewer = make_napari_viewer()
    (layer,) = viewer.open(str(src), plugin="napari")
    _, widget = viewer.window.add_plugin_dock_widget(
        "napari-inceptseg", "Unsupervised segmentation"
    )
    viewer.layers.selection.active = layer
    panel = widget._whole
    assert panel.run_btn.enabled and str(src) in panel.info.value
    viewer.add_image(np.zeros((20, 20)), name="in memory")
    assert not panel.run_btn.enabled  # only for layers read from zarr
    viewer.layers.selection.active = layer
    widget._seed.value = 0
    with LocalCluster(
        n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None
    ) as cluster:
        panel.scheduler.value = cluster.scheduler_address
        panel.block.value = 128
        panel.run()
        qtbot.waitUntil(lambda: panel._job is None, timeout=GUI_DEADLINE_MS)
    out = tmp_path / "cells.inceptseg.ome.zarr"
    result = viewer.layers[-1]
    assert result.name == out.name and result.multiscale and len(result.data) >= 2
    labels = np.asarray(zarr.open_array(str(out / "0"))[:])
    assert one_label_per_disk(labels, truth)
    np.testing.assert_array_equal(np.asarray(result.data[1]), labels[::2, ::2])
