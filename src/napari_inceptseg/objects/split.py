"""Objects from a segmentation's clusters: every connected piece of the chosen clusters
is an object, and touching round ones are cut apart (the dock's "split into objects").
"""

from __future__ import annotations

import numpy as np

from ..labels import consecutive_labels
from .find import MIN_OBJECT_DEPTH, smoothed_distance

#: the steps of :func:`split_objects_iter`
OBJECT_STEPS = ("pieces", "distance to the background", "markers", "watershed")


def split_objects(
    labels, clusters=None, *, separate_touching: bool = True, min_depth: float = MIN_OBJECT_DEPTH
) -> np.ndarray:
    """Objects (e.g. nuclei) from a segmentation: every connected piece of the chosen
    ``clusters`` becomes one object, numbered 1..N, and 0 is everything else.

    ``clusters`` defaults to every cluster but the largest (taken as the background).
    With ``separate_touching``, touching round objects are cut apart by a watershed of
    the distance to the background (scikit-image), started from its h-maxima: a piece
    is cut only where its distance (smoothed by ``find.DISTANCE_SIGMA`` pixels, so that
    ragged borders add nothing) has two maxima that each stand at least ``min_depth``
    pixels above the neck between them. A convex or flat-topped shape (a rectangle, a
    band, a square in one slice of a stack) has a single maximum, or one connected
    ridge, and stays whole; so does a piece too thin to hold such a maximum. 2D or 3D.
    :func:`split_objects_iter` does the same step by step.

    Examples
    --------
    >>> import numpy as np
    >>> yy, xx = np.mgrid[:40, :60]
    >>> clusters = np.ones((40, 60), int)
    >>> clusters[(yy - 20) ** 2 + (xx - 20) ** 2 < 121] = 2
    >>> clusters[(yy - 20) ** 2 + (xx - 38) ** 2 < 121] = 2
    >>> (
    ...     int(split_objects(clusters).max()),
    ...     int(split_objects(clusters, separate_touching=False).max()),
    ... )
    (2, 1)
    """
    steps = split_objects_iter(
        labels, clusters, separate_touching=separate_touching, min_depth=min_depth
    )
    while True:
        try:
            next(steps)
        except StopIteration as done:
            return done.value


def split_objects_iter(
    labels, clusters=None, *, separate_touching: bool = True, min_depth: float = MIN_OBJECT_DEPTH
):
    """:func:`split_objects` as a generator: yields the name of each of
    :data:`OBJECT_STEPS` before it starts (a caller can show it, or stop there) and
    returns the objects.
    """
    from skimage.measure import label
    from skimage.morphology import h_maxima
    from skimage.segmentation import watershed

    yield OBJECT_STEPS[0]
    labels = np.asarray(labels)
    if clusters is None:
        ids, counts = np.unique(labels, return_counts=True)
        clusters = ids[ids != ids[np.argmax(counts)]]
    mask = np.isin(labels, np.asarray(clusters))
    pieces = label(mask, connectivity=1)
    if not separate_touching or pieces.max() == 0:
        return pieces.astype(np.int32)
    yield OBJECT_STEPS[1]
    dist = smoothed_distance(mask)
    yield OBJECT_STEPS[2]
    markers = label(h_maxima(dist, min_depth).astype(bool) & mask, connectivity=mask.ndim)
    ids, first = np.unique(pieces.ravel(), return_index=True)  # one pixel of every piece
    unmarked = ~np.isin(ids, pieces[markers > 0]) & (ids > 0)
    # a piece with no maximum that deep (a thin one) stays whole: one marker at its first pixel
    markers.ravel()[first[unmarked]] = markers.max() + 1 + np.arange(int(unmarked.sum()))
    yield OBJECT_STEPS[3]
    objects = watershed(-dist, markers, mask=mask)
    out = consecutive_labels(objects)  # (background, if any, becomes 1)
    return (out - 1 if (objects == 0).any() else out).astype(np.int32)
