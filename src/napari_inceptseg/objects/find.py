"""Objects on a background, with no training data: the pipeline behind
``segment(image, objects=True)`` and the classical recipes it is compared with.

One level of detail per function: :func:`find_objects` takes the image's contrast
(:func:`object_intensity`), thresholds it (Otsu), splits touching objects
(:func:`distance_split`) and moves each object's border to where its own intensity
falls off (:func:`refine_borders`).
"""

from __future__ import annotations

import numpy as np

#: a distance maximum starts an object of its own when it stands at least this many
#: pixels above the saddle to the next one (the h of the h-maxima)
MIN_OBJECT_DEPTH = 2.0
#: with a depth scaled to the objects, a maximum starts an object when it stands this
#: fraction of the objects' typical radius above the saddle (at least 1 pixel)
DEPTH_PER_RADIUS = 0.15
#: the distance to the background is smoothed by this much (pixels) first, so that
#: ragged pixel borders add no maxima of their own
DISTANCE_SIGMA = 1.0
#: an object's border lies where the smoothed intensity falls to this fraction of the
#: way from the background's level to the object's median: its half maximum
BORDER_FRACTION = 0.5
#: how far below the threshold an object may grow: this fraction of the way from the
#: background's level to the Otsu threshold
GROW_FRACTION = 0.25


def object_intensity(data: np.ndarray) -> np.ndarray:
    """The image's contrast as one channel in [0, 1], objects bright.

    ``data`` is ``(C, *spatial)``. Several channels are projected on their first
    principal component (one channel is taken as it is); the polarity is then set so
    that the objects, the minority side of Otsu's threshold, are bright: dark nuclei on
    a bright field (brightfield, H&E) are inverted, fluorescence is not.

    Examples
    --------
    >>> import numpy as np
    >>> image = np.ones((1, 32, 32))
    >>> image[0, 8:16, 8:16] = 0.0  # a dark object on a bright field
    >>> grey = object_intensity(image)
    >>> float(grey[12, 12]), float(grey[0, 0])
    (1.0, 0.0)
    """
    from skimage.filters import threshold_otsu

    data = np.asarray(data, dtype=np.float64)
    flat = data.reshape(data.shape[0], -1)
    if flat.shape[0] == 1:
        grey = flat[0]
    else:
        centred = flat - flat.mean(1, keepdims=True)
        _, vectors = np.linalg.eigh(np.cov(centred))
        axis = vectors[:, -1] * (1 if vectors[:, -1].sum() >= 0 else -1)
        grey = axis @ centred
    span = np.ptp(grey)
    grey = (grey - grey.min()) / (span if span > 0 else 1.0)
    if span > 0 and (grey > threshold_otsu(grey)).mean() > 0.5:
        grey = 1.0 - grey
    return grey.reshape(data.shape[1:])


def smoothed_distance(mask: np.ndarray, spacing=None) -> np.ndarray:
    """The distance of every pixel of ``mask`` to the background (in pixels, or in
    ``spacing`` units per axis), smoothed by :data:`DISTANCE_SIGMA` so that ragged
    borders add no maxima of their own.

    Examples
    --------
    >>> import numpy as np
    >>> square = np.zeros((9, 9), bool)
    >>> square[1:8, 1:8] = True
    >>> dist = smoothed_distance(square)
    >>> bool(dist[4, 4] == dist.max()), bool(dist[0, 0] < dist[1, 1])
    (True, True)
    """
    from scipy import ndimage as ndi

    dist = ndi.distance_transform_edt(mask, sampling=spacing)
    return ndi.gaussian_filter(dist, DISTANCE_SIGMA)


def distance_split(mask: np.ndarray, spacing=None, min_depth: float | None = MIN_OBJECT_DEPTH):
    """Touching round objects of a foreground ``mask`` cut apart: a watershed of the
    distance to the background, from its h-maxima.

    The distance (in pixels, or in ``spacing`` units per axis) is smoothed by
    :data:`DISTANCE_SIGMA`; a maximum starts an object when it stands at least
    ``min_depth`` above the saddle to the next one. ``min_depth=None`` scales it to the
    objects: :data:`DEPTH_PER_RADIUS` times their typical radius (the median height of
    the maxima at :data:`MIN_OBJECT_DEPTH`), at least 1, so that the same objects
    imaged at twice the resolution are cut the same way. Pieces of the mask too thin to
    hold such a maximum are left out (noise). Returns int32 labels, 0 the background
    and 1..N the objects. 2D or 3D.

    Examples
    --------
    >>> import numpy as np
    >>> yy, xx = np.mgrid[:40, :60]
    >>> two = ((yy - 20) ** 2 + (xx - 20) ** 2 < 121) | ((yy - 20) ** 2 + (xx - 38) ** 2 < 121)
    >>> int(distance_split(two).max())  # two touching disks, two objects
    2
    """
    from scipy import ndimage as ndi
    from skimage.measure import label
    from skimage.morphology import h_maxima
    from skimage.segmentation import watershed

    mask = np.asarray(mask, dtype=bool)
    if not mask.any():
        return np.zeros(mask.shape, dtype=np.int32)
    dist = smoothed_distance(mask, spacing)
    if min_depth is None:  # the typical radius: the median height of the 2-px maxima
        peaks = label(h_maxima(dist, MIN_OBJECT_DEPTH).astype(bool) & mask)
        heights = ndi.maximum(dist, peaks, np.arange(1, peaks.max() + 1))
        radius = float(np.median(heights)) if peaks.max() else 0.0
        min_depth = max(1.0, DEPTH_PER_RADIUS * radius)
    markers = label(h_maxima(dist, min_depth).astype(bool) & mask)
    return watershed(-dist, markers, mask=mask).astype(np.int32)


def refine_borders(grey: np.ndarray, seeds: np.ndarray, levels) -> np.ndarray:
    """Each object's border moved to where its own intensity falls off.

    ``grey`` is the smoothed contrast (objects bright), ``seeds`` the objects found at
    one global threshold, ``levels`` ``(background, threshold)``. Every object claims
    the pixels of its intensity basin down to :data:`GROW_FRACTION` of the way from
    the background to the threshold, and keeps those above :data:`BORDER_FRACTION` of
    the way from the background to its own median: a dim nucleus grows to its faint
    rim, a bright one sheds its glow. Returns int32 labels, 0 the background.
    """
    from scipy import ndimage as ndi
    from skimage.segmentation import watershed

    background, threshold = levels
    n = int(seeds.max())
    if n == 0:
        return seeds.astype(np.int32)
    reach = (grey > background + GROW_FRACTION * (threshold - background)) | (seeds > 0)
    basins = watershed(-grey, seeds, mask=reach)
    median = np.asarray(ndi.median(grey, seeds, np.arange(1, n + 1)))
    floor = np.concatenate([[np.inf], background + BORDER_FRACTION * (median - background)])
    return np.where(grey > floor[basins], basins, 0).astype(np.int32)


def find_objects(data: np.ndarray, spacing=None) -> np.ndarray:
    """Objects on a background, e.g. nuclei: labels 0 (background) and 1..N.

    ``data`` is the normalised image, ``(C, *spatial)``, 2D or 3D. Its contrast
    (:func:`object_intensity`) is thresholded with Otsu's method, touching objects are
    split by :func:`distance_split` with a depth scaled to the objects, and each
    object's border is refined by :func:`refine_borders`. Objects are numbered in
    raster order.

    Examples
    --------
    >>> import numpy as np
    >>> yy, xx = np.mgrid[:64, :64]
    >>> image = np.zeros((1, 64, 64))
    >>> for y, x in ((16, 16), (16, 46), (46, 30)):
    ...     image[0][(yy - y) ** 2 + (xx - x) ** 2 < 64] = 1.0
    >>> labels = find_objects(image)
    >>> int(labels.max()), int(labels[0, 0])
    (3, 0)
    """
    from scipy import ndimage as ndi
    from skimage.filters import threshold_otsu
    from skimage.segmentation import relabel_sequential

    grey = object_intensity(data)
    if np.ptp(grey) == 0:
        return np.zeros(grey.shape, dtype=np.int32)
    threshold = threshold_otsu(grey)
    seeds = distance_split(grey > threshold, spacing, min_depth=None)
    below = grey[grey <= threshold]
    background = float(np.median(below)) if below.size else 0.0
    smooth = ndi.gaussian_filter(grey, 1.0)
    objects = refine_borders(smooth, seeds, (background, threshold))
    return relabel_sequential(objects)[0].astype(np.int32)
