"""Per-object measurements of a labels image (scikit-image's ``regionprops_table``),
as the columns of a napari layer's ``features`` and as a CSV file.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from ..io import check_writable

#: the measurements of every object (eccentricity only in 2D, where it is defined)
PROPERTIES = ("label", "area", "intensity_mean", "centroid", "bbox", "solidity")


def object_features(labels, image=None, channel_axis: int | None = None, *, planes=False):
    """One row per object of ``labels`` (0 is the background): its id, area (pixels, or
    voxels in 3D), mean intensity per channel of ``image``, centroid, bounding box,
    solidity and, in 2D, eccentricity.

    Parameters
    ----------
    labels : array_like of int
        2D or 3D labels (or, with ``planes``, any stack of 2D planes), 0 the background.
    image : array_like, optional
        The image the objects were found in: the labels' shape, or with one more axis
        for its channels (last, or ``channel_axis``). Without it there is no intensity.
    channel_axis : int, optional
        The image's channel axis, when it is not the last of a multichannel image.
    planes : bool
        The objects lie each in one 2D plane (a stack segmented plane by plane): they are
        measured in 2D, and the columns ``plane-0``, ... give each one's plane.

    Returns
    -------
    dict of str to numpy.ndarray
        Columns of equal length, e.g. ``area``, ``intensity_mean-0``, ``centroid-0``.
        A solidity that cannot be measured (an object one pixel thick) is NaN.

    Examples
    --------
    >>> import numpy as np
    >>> labels = np.zeros((20, 20), int)
    >>> labels[2:6, 2:6] = 1
    >>> labels[10:18, 10:14] = 2
    >>> table = object_features(labels, labels * 10.0)
    >>> table["label"].tolist(), table["area"].tolist(), table["intensity_mean"].tolist()
    ([1, 2], [16.0, 32.0], [10.0, 20.0])
    """
    labels = np.asarray(labels)
    if not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"labels must be integers, got {labels.dtype}: use a Labels layer")
    if image is not None:
        image = np.asarray(image, dtype=np.float64)
        if image.ndim == labels.ndim + 1 and channel_axis is not None:
            image = np.moveaxis(image, channel_axis, -1)
        if image.shape[: labels.ndim] != labels.shape:
            raise ValueError(
                f"the image's shape {image.shape} does not hold labels of shape {labels.shape}"
            )
    if not planes or labels.ndim == 2:
        return _measure(labels, image)
    tables = []
    for index in np.ndindex(labels.shape[:-2]):
        table = _measure(labels[index], None if image is None else image[index])
        n = len(table["label"])
        tables.append({**{f"plane-{k}": np.full(n, i) for k, i in enumerate(index)}, **table})
    return {c: np.concatenate([t[c] for t in tables]) for c in tables[0]}


def _measure(labels: np.ndarray, image) -> dict:
    """scikit-image's measurements of one 2D or 3D labels array (NaN for a solidity that
    a flat object leaves undefined).
    """
    import warnings

    from skimage.measure import regionprops_table

    props = list(PROPERTIES) + (["eccentricity"] if labels.ndim == 2 else [])
    if image is None:
        props.remove("intensity_mean")
    with warnings.catch_warnings(), np.errstate(divide="ignore", invalid="ignore"):
        warnings.simplefilter("ignore", UserWarning)  # the convex hull of a flat object
        table = regionprops_table(labels, intensity_image=image, properties=props)
    table["solidity"] = np.where(np.isfinite(table["solidity"]), table["solidity"], np.nan)
    return table


def write_features_csv(features: dict, path, *, overwrite: bool = False) -> Path:
    """Write ``features`` (columns of equal length) to a CSV file at ``path``; an
    existing file is refused (FileExistsError) unless ``overwrite``.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> out = pathlib.Path(tempfile.mkdtemp()) / "objects.csv"
    >>> _ = write_features_csv({"label": [1, 2], "area": [16.0, 32.0]}, out)
    >>> out.read_text().splitlines()
    ['label,area', '1,16.0', '2,32.0']
    """
    path = check_writable(path, overwrite=overwrite, what="measurements file")
    columns = list(features)
    rows = zip(*(np.asarray(features[c]).tolist() for c in columns), strict=True)
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(columns)
        writer.writerows(rows)
    return path
