"""Sample images: a synthetic image with known ground truth, and a natural photo.

The functions without a leading ``napari`` return plain numpy arrays (used by
the tests, the demo and the docs); the ``*_sample`` functions are the npe2
sample-data providers and return napari layer-data tuples.
"""

from __future__ import annotations

import numpy as np

#: Region colours of the synthetic image (RGB, 0..255), far enough apart
#: that a per-pixel clustering can separate them under sigma=12 noise.
REGION_COLOURS = np.array(
    [[60, 90, 160], [210, 80, 60], [90, 190, 90], [230, 210, 80]], dtype=np.float64
)


def synthetic_regions(
    shape: tuple[int, int] = (128, 160), n_regions: int = 4, sigma: float = 12.0, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """An RGB uint8 image of ``n_regions`` (2..4) flat coloured regions plus
    Gaussian noise of ``sigma`` (on 0..255), and its ground truth (ids 1..n).

    Regions: left half, right half, the bottom of the left half, and an ellipse
    in the right half (about 28 / 38 / 23 / 11 % of the pixels).
    """
    if not 2 <= n_regions <= 4:
        raise ValueError("n_regions must be between 2 and 4")
    h, w = shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    gt = np.ones((h, w), dtype=np.int32)
    gt[xx > 0.5 * w] = 2
    if n_regions >= 3:
        gt[(yy > 0.55 * h) & (xx <= 0.5 * w)] = 3
    if n_regions >= 4:
        gt[((yy - 0.35 * h) / (0.22 * h)) ** 2 + ((xx - 0.75 * w) / (0.16 * w)) ** 2 <= 1] = 4
    rng = np.random.default_rng(seed)
    img = REGION_COLOURS[gt - 1] + rng.normal(0.0, sigma, size=(h, w, 3))
    return np.clip(np.round(img), 0, 255).astype(np.uint8), gt


def natural_image() -> np.ndarray:
    """The 'astronaut' photo shipped with scikit-image (512 x 512 RGB)."""
    from skimage import data

    return data.astronaut()


# --- npe2 sample-data providers -------------------------------------------------


def synthetic_sample():
    """Sample for napari: a synthetic image of shapes with known regions."""
    image, gt = synthetic_regions()
    return [
        (image, {"name": "synthetic", "rgb": True}, "image"),
        (gt, {"name": "synthetic ground truth"}, "labels"),
    ]


def nuclei_image():
    """``(image, instance map)``: fluorescence nuclei from the 2018 Data Science Bowl
    (256 x 256, 36 nuclei, 0 = background; CC0, see ``data/README.md``).
    """
    from pathlib import Path

    from PIL import Image

    here = Path(__file__).with_name("data")
    with Image.open(here / "nuclei.png") as im, Image.open(here / "nuclei_labels.png") as lab:
        return np.array(im), np.array(lab).astype(np.int32)


def nuclei_sample():
    """Sample for napari: a fluorescence image of nuclei with its labels."""
    image, gt = nuclei_image()
    return [
        (image, {"name": "nuclei", "colormap": "gray"}, "image"),
        (gt, {"name": "nuclei ground truth"}, "labels"),
    ]


def natural_sample():
    """Sample for napari: the astronaut photo (scikit-image)."""
    return [(natural_image(), {"name": "astronaut", "rgb": True}, "image")]
