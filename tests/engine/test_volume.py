"""True 3D mode: Conv3d networks, continuity along Z, tiles for large volumes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_inceptseg import score, segment
from napari_inceptseg.engine.workflow.stack import segment_stack
from sample_images import ellipsoids


def z_consistency(labels, gt):
    """Of the pairs of Z-neighbouring voxels inside the same object, the fraction with one label."""
    same = (gt[1:] == gt[:-1]) & (gt[1:] > 1)
    return float((labels[1:] == labels[:-1])[same].mean())


@pytest.fixture(scope="module")
def volume_runs():
    vol, gt = ellipsoids()
    kw = dict(arch="vanilla", n_channels=16, max_iter=100, min_labels=4, seed=2, device="cpu")
    return vol, gt, segment(vol, dims="3d", **kw), segment_stack(vol, warm_start=False, **kw)


def test_3d_mode_segments_ellipsoids(volume_runs):
    _, gt, res, _ = volume_runs
    assert res.labels.shape == gt.shape
    assert score(res.labels, gt)["accuracy"] >= 0.9  # one-to-one


def test_3d_beats_per_slice_in_z_consistency(volume_runs):
    _, gt, res, per_slice = volume_runs
    assert z_consistency(res.labels, gt) > z_consistency(per_slice.labels, gt) + 0.05
    assert score(res.labels, gt)["accuracy"] > score(per_slice.labels, gt)["accuracy"]


@pytest.mark.parametrize("arch", ["vanilla", "inception"])
def test_3d_networks_are_local_so_tiles_give_the_same_labels(arch):
    from napari_inceptseg.engine.machine.tiles import predict_tiled
    from napari_inceptseg.engine.modeling.networks import build_model
    from napari_inceptseg.engine.workflow.progress import run_to_end

    torch.manual_seed(0)
    net = build_model(arch, 1, 8, 1, dims=3)
    assert isinstance(net.conv1, torch.nn.Conv3d)
    x = torch.randn(1, 1, 10, 30, 26)
    net.train()
    with torch.no_grad():
        net(x)  # some running statistics
    net.eval()
    with torch.no_grad():
        whole = net(x).argmax(1)[0].int()
    tiled = run_to_end(
        predict_tiled(net, x, (10, 24, 24), net.radius, device="cpu", fmt=torch.contiguous_format)
    )
    assert (tiled == whole).float().mean() > 0.999


def test_spacing_weights_the_z_continuity():
    vol, _ = ellipsoids(shape=(6, 24, 24))
    iso = segment(vol, dims="3d", arch="vanilla", n_channels=8, max_iter=3, seed=0, device="cpu")
    aniso = segment(
        vol,
        dims="3d",
        arch="vanilla",
        n_channels=8,
        max_iter=3,
        seed=0,
        device="cpu",
        spacing=(5, 1, 1),
    )
    assert iso.history["loss_con"][0] > aniso.history["loss_con"][0]  # the Z term counts 1/5
    assert aniso.metadata()["spacing"] == [5.0, 1.0, 1.0]
    with pytest.raises(ValueError, match="spacing"):
        segment(vol, dims="3d", max_iter=1, device="cpu", spacing=(1, 1))


def test_tiled_volume_run_and_inception_3d():
    vol, gt = ellipsoids(shape=(8, 40, 40))
    res = segment(
        vol,
        dims="3d",
        arch="inception",
        n_channels=8,
        n_conv=1,
        max_iter=4,
        seed=0,
        device="cpu",
        tile_size=24,
    )
    assert res.plan.startswith("tiles of 8 x 24 x 24") and res.labels.shape == gt.shape
    assert res.labels.min() >= 1


def test_3d_input_errors():
    with pytest.raises(ValueError, match="three spatial"):
        segment(np.zeros((20, 20)), dims="3d", max_iter=1, device="cpu")
    with pytest.raises(ValueError, match="at least 2"):
        segment(np.random.default_rng(0).random((1, 20, 20)), dims="3d", max_iter=1, device="cpu")
