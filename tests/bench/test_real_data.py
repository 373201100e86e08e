"""One real BSDS500 image, downscaled, end to end (skipped without ../shared/data, failed in CI)."""

from __future__ import annotations

import numpy as np
import pytest

from helpers import need_shared_data
from napari_inceptseg import score, segment
from napari_inceptseg.io import read_image


@pytest.mark.slow
def test_bsds500_image_end_to_end(shared_data):
    from scipy.io import loadmat
    from skimage.transform import resize

    img_path = shared_data / "bsds500" / "images" / "val" / "101085.jpg"
    gt_path = shared_data / "bsds500" / "groundTruth" / "val" / "101085.mat"
    need_shared_data(img_path)
    image = read_image(img_path)
    small = (
        resize(image, (image.shape[0] // 4, image.shape[1] // 4), anti_aliasing=True) * 255
    ).astype(np.uint8)
    res = segment(small, arch="vanilla", max_iter=40, seed=0, device="cpu")
    assert res.labels.shape == small.shape[:2]
    assert 2 <= res.n_labels <= 100

    gts = loadmat(gt_path)["groundTruth"]
    full = resize(
        res.labels, image.shape[:2], order=0, preserve_range=True, anti_aliasing=False
    ).astype(np.int32)
    # A content-blind partition with as many clusters (horizontal bands) as a floor:
    # the segmentation must agree better with every annotator than the bands do.
    h, w = image.shape[:2]
    bands = np.repeat((np.arange(h) * res.n_labels // h + 1)[:, None], w, axis=1)
    for k in range(gts.shape[1]):
        human = gts[0, k]["Segmentation"][0, 0].astype(np.int32)
        ours, floor = (
            score(full, human, matching="majority"),
            score(bands, human, matching="majority"),
        )
        assert ours["nmi"] > floor["nmi"] + 0.05
        assert ours["accuracy"] > floor["accuracy"] + 0.05
