"""From the network's clusters to regions, on pixels (numpy, scipy and scikit-image;
no torch): every superpixel (Felzenszwalb-Huttenlocher, plane by plane in a volume)
takes the cluster most of its pixels have, so borders follow the image's edges; each
connected piece of a cluster becomes a region; small regions take the id of the
nearest larger region's pixels, and rims join the neighbour they share the most border
with.
"""

from __future__ import annotations

import warnings

import numpy as np

from ..labels import connected_regions, consecutive_labels
from .graph import Borders, RegionStats, region_adjacency
from .merges import thin_roots

#: Felzenszwalb's scale (larger: larger superpixels; about 550 on a 481 x 321
#: photo) and smallest superpixel (pixels)
SUPERPIXEL_SCALE = 100
SUPERPIXEL_MIN_SIZE = 25
#: Gaussian smoothing (pixels) before the superpixels, so that noise does not fray them
SUPERPIXEL_SIGMA = 0.5
#: small planes get a smallest superpixel of at most 1/MIN_SUPERPIXELS of their pixels,
#: so that superpixels stay small next to the objects in them
MIN_SUPERPIXELS = 250
#: regions smaller than this fraction of the image, or than MIN_REGION_PIXELS,
#: join a neighbour
MIN_REGION_FRACTION = 0.0002
MIN_REGION_PIXELS = 9


def superpixels(image: np.ndarray) -> np.ndarray:
    """Felzenszwalb-Huttenlocher superpixels of ``image`` (``(C, *spatial)``, values
    about 0..1), plane by plane for a volume, with ids unique over the whole array.

    Their borders follow the image's edges at any size (SLIC's near-regular grid showed
    through on flat backgrounds: docs/method.md, "The default method").
    """
    from skimage.segmentation import felzenszwalb

    channels = np.moveaxis(image, 0, -1).clip(0, 1)
    planes = channels.reshape(-1, *channels.shape[-3:])
    min_size = min(SUPERPIXEL_MIN_SIZE, max(1, planes[0, ..., 0].size // MIN_SUPERPIXELS))
    out = np.empty(planes.shape[:-1], np.int64)
    offset = 0
    for k, plane in enumerate(planes):
        with warnings.catch_warnings():  # any number of channels is meant (not only RGB)
            warnings.simplefilter("ignore", UserWarning)
            out[k] = (
                felzenszwalb(
                    plane,
                    scale=SUPERPIXEL_SCALE,
                    sigma=SUPERPIXEL_SIGMA,
                    min_size=min_size,
                    channel_axis=-1,
                )
                + offset
            )
        offset = int(out[k].max()) + 1
    return out.reshape(channels.shape[:-1])


def superpixel_vote(clusters: np.ndarray, image: np.ndarray) -> np.ndarray:
    """``clusters`` with every superpixel of ``image`` (:func:`superpixels`) set to the
    cluster most of its pixels have.
    """
    sp = superpixels(image)
    keys, ids = np.unique(clusters, return_inverse=True)
    n_ids = keys.size
    votes = np.bincount(sp.ravel() * n_ids + ids.ravel(), minlength=(int(sp.max()) + 1) * n_ids)
    winner = votes.reshape(-1, n_ids).argmax(1)
    return keys[winner[sp]]


def absorb_small(regions: np.ndarray, min_size: int) -> np.ndarray:
    """Pixels of regions smaller than ``min_size`` take the id of the nearest pixel
    of a larger region (unchanged when no region is that large).
    """
    from scipy import ndimage as ndi

    small = np.bincount(regions.ravel())[regions] < min_size
    if not small.any() or small.all():
        return regions
    nearest = ndi.distance_transform_edt(small, return_distances=False, return_indices=True)
    return regions[tuple(nearest)]


def absorb_thin(regions: np.ndarray) -> np.ndarray:
    """``regions`` with every region narrower than
    :data:`~napari_inceptseg.regions.merges.MIN_REGION_WIDTH` joined to the neighbour it
    shares the most border with.
    """
    a, b, length, _ = region_adjacency(regions)
    size = np.bincount(regions.ravel())
    graph = RegionStats(size, np.zeros((size.size, 0)), Borders(a, b, length, length, length))
    return thin_roots(graph)[regions]


def region_pieces(clusters: np.ndarray, image: np.ndarray) -> np.ndarray:
    """``clusters`` (argmax ids, ``spatial``) and the network's input ``image`` (``(C,
    *spatial)``, about 0..1) in; connected regions, small ones and rims absorbed,
    numbered 1..R, out.
    """
    labels = superpixel_vote(clusters, image)
    labels = connected_regions(labels, connectivity=1)  # face-connected pieces
    labels = absorb_small(labels, max(MIN_REGION_PIXELS, int(MIN_REGION_FRACTION * labels.size)))
    return consecutive_labels(absorb_thin(labels))
