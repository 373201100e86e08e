"""Classical baselines run in the same harness as the networks (no torch).

Parameters (also in docs/benchmarks.md):

- ``kmeans2`` / ``kmeans3`` / ``kmeans5``: k-means (k-means++ seeding, scipy's
  ``kmeans2``) on the normalised colour of every pixel, k = 2, 3 or 5.
- ``otsu`` / ``li``: scikit-image's ``threshold_otsu`` / ``threshold_li`` of the grey
  image (the mean of the normalised channels): two classes, the microscopist's first try.
- ``otsu-watershed`` / ``li-watershed``: the nuclei recipe of every image-analysis
  course. The grey image (``skimage.color.rgb2gray`` for RGB, the mean of the normalised
  channels otherwise) is thresholded (Otsu or Li), the objects are the minority side,
  and touching objects are split by a watershed of the distance to the background from
  its h-maxima (``objects.find.distance_split``: smoothed 1 px, h = 2 px); 0 is the
  background.
- ``voronoi-otsu``: Voronoi-Otsu labelling as napari-segment-blobs-and-things-with-
  membranes makes it, with its default sigmas (``spot_sigma=2``, ``outline_sigma=2``):
  the local maxima of the grey image blurred by ``spot_sigma`` inside Otsu's mask of it
  blurred by ``outline_sigma``, flooded over the mask; 0 is the background. The grey
  image is that of the watershed rows, objects made bright (the minority side).
- ``felzenszwalb``: ``skimage.segmentation.felzenszwalb(image, scale=100,
  sigma=0.5, min_size=50)``, the settings of scikit-image's segmentation gallery.
- ``slic``: ``skimage.segmentation.slic(image, n_segments=250, compactness=10,
  sigma=1)`` on RGB (``compactness=0.1``, channel-last, for other channel counts).
- ``felzenszwalb-sweep``: the BSDS500 region benchmark's classical row, Felzenszwalb's
  method swept over its scale (:data:`SWEEP_SCALES`, ``sigma=0.8``,
  ``min_size=scale / 4``), one partition per scale; alone it is its scale-100 partition.
"""

from __future__ import annotations

import numpy as np

from ..image import prepare_image
from ..labels import consecutive_labels
from ..objects.find import distance_split

BASELINES = (
    "kmeans3",
    "kmeans5",
    "felzenszwalb",
    "slic",
    "kmeans2",
    "otsu",
    "li",
    "felzenszwalb-sweep",
    "otsu-watershed",
    "li-watershed",
    "voronoi-otsu",
)
#: the baselines whose labels are objects on a background (0)
OBJECT_BASELINES = ("otsu-watershed", "li-watershed", "voronoi-otsu")
#: the scales of ``felzenszwalb-sweep`` (the levels of the region benchmark)
SWEEP_SCALES = (25, 50, 100, 200, 400, 800, 1600, 3200)


def baseline_levels(
    name: str, image: np.ndarray, *, channel_axis: int | None = None, seed: int = 0
) -> tuple[np.ndarray, list[np.ndarray] | None]:
    """``(labels, levels)``: a baseline's labels 1..K and, for ``felzenszwalb-sweep``, its
    partition at every scale of :data:`SWEEP_SCALES` (None for the others).
    """
    if name != "felzenszwalb-sweep":
        return run_baseline(name, image, channel_axis=channel_axis, seed=seed), None
    from skimage.segmentation import felzenszwalb

    data = prepare_image(image, channel_axis=channel_axis)
    feats = np.moveaxis(data if data.shape[0] in (1, 3) else data[:3], 0, -1)
    levels = [
        consecutive_labels(
            felzenszwalb(feats, scale=s, sigma=0.8, min_size=int(s / 4), channel_axis=-1)
        )
        for s in SWEEP_SCALES
    ]
    return levels[SWEEP_SCALES.index(100)], levels


def run_baseline(
    name: str, image: np.ndarray, *, channel_axis: int | None = None, seed: int = 0
) -> np.ndarray:
    """Labels 1..K of a baseline on a 2D image."""
    if name == "felzenszwalb-sweep":
        return baseline_levels(name, image, channel_axis=channel_axis, seed=seed)[0]
    data = prepare_image(image, channel_axis=channel_axis)  # (C, H, W) float32
    if name in OBJECT_BASELINES:
        return object_baseline(name, _grey(image, data, channel_axis))
    feats = np.moveaxis(data, 0, -1)
    if name in ("otsu", "li"):  # the thresholds a microscopist tries first, on the grey image
        from skimage import filters

        grey = data.mean(0)
        if np.all(grey == grey.flat[0]):
            return np.ones(grey.shape, dtype=np.int32)
        cut = filters.threshold_otsu(grey) if name == "otsu" else filters.threshold_li(grey)
        return (grey > cut).astype(np.int32) + 1
    if name in ("kmeans2", "kmeans3", "kmeans5"):
        from scipy.cluster.vq import kmeans2

        k = int(name[-1])
        flat = feats.reshape(-1, feats.shape[-1]).astype(np.float64)
        if np.all(flat == flat[0]):
            return np.ones(data.shape[1:], dtype=np.int32)
        _, lab = kmeans2(flat, k, minit="++", seed=np.random.default_rng(seed))
        return consecutive_labels(lab.reshape(data.shape[1:]))
    if name == "felzenszwalb":
        from skimage.segmentation import felzenszwalb

        lab = felzenszwalb(
            feats if feats.shape[-1] in (1, 3) else feats[..., :3],
            scale=100,
            sigma=0.5,
            min_size=50,
            channel_axis=-1,
        )
        return consecutive_labels(lab)
    if name == "slic":
        from skimage.segmentation import slic

        rgb = feats.shape[-1] == 3
        lab = slic(
            feats,
            n_segments=250,
            compactness=10 if rgb else 0.1,
            sigma=1,
            start_label=0,
            channel_axis=-1,
            convert2lab=rgb,
        )
        return consecutive_labels(lab)
    raise ValueError(f"unknown baseline {name!r}: choose one of {', '.join(BASELINES)}")


def _grey(image, data: np.ndarray, channel_axis: int | None) -> np.ndarray:
    """The grey image of the object baselines: ``rgb2gray`` of an RGB(A) image, else the
    mean of the normalised channels.
    """
    from skimage.color import rgb2gray

    image = np.asarray(image)
    if channel_axis is None and image.ndim == 3 and image.shape[-1] in (3, 4):
        return rgb2gray(image[..., :3])
    return data.mean(0)


def object_baseline(name: str, grey: np.ndarray) -> np.ndarray:
    """Objects (0 = background) of one of :data:`OBJECT_BASELINES` on a grey image."""
    from scipy import ndimage as ndi
    from skimage import filters
    from skimage.measure import label
    from skimage.morphology import local_maxima
    from skimage.segmentation import watershed

    grey = np.asarray(grey, dtype=np.float64)
    if np.ptp(grey) == 0:
        return np.zeros(grey.shape, dtype=np.int32)
    threshold = filters.threshold_li if name == "li-watershed" else filters.threshold_otsu
    mask = grey > threshold(grey)
    if mask.mean() > 0.5:  # the objects are the minority side
        mask, grey = ~mask, grey.max() - grey
    if name != "voronoi-otsu":
        return distance_split(mask)
    spots = local_maxima(ndi.gaussian_filter(grey, 2.0))
    outline = ndi.gaussian_filter(grey, 2.0)
    mask = outline > filters.threshold_otsu(outline)
    return watershed(mask, label(spots & mask), mask=mask).astype(np.int32)
