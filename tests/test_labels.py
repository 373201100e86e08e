"""Label maps: objects from clusters."""

from __future__ import annotations

import numpy as np

from napari_inceptseg import labels as L


def test_split_objects_separates_touching_discs():
    yy, xx = np.mgrid[0:60, 0:90]
    labels = np.ones((60, 90), np.int32)  # background: the largest cluster
    for cy, cx in ((30, 22), (30, 40), (30, 70)):  # two discs that touch, one apart
        labels[(yy - cy) ** 2 + (xx - cx) ** 2 <= 10**2] = 2
    labels[0:4, 0:4] = 3  # a small piece of a third cluster
    joined = L.split_objects(labels, clusters=[2], separate_touching=False)
    assert joined.max() == 2  # the touching pair is one piece
    objects = L.split_objects(labels, clusters=[2])
    assert objects.max() == 3 and objects.dtype == np.int32
    assert len(np.unique(objects[30, 12:30])) == 1 and objects[30, 22] != objects[30, 40]
    assert (objects[labels == 1] == 0).all()
    assert L.split_objects(labels).max() == 4  # default: every cluster but the background


def test_split_objects_keeps_convex_and_flat_topped_shapes_whole():
    rect = np.zeros((200, 200), np.int32)
    rect[20:160, 30:110] = 1  # 140 x 80
    band = np.zeros((40, 400), np.int32)
    band[10:20, 5:385] = 1  # 380 x 10
    ellipse = np.zeros((120, 200), np.int32)
    yy, xx = np.mgrid[0:120, 0:200]
    ellipse[((yy - 60) / 40.0) ** 2 + ((xx - 100) / 90.0) ** 2 <= 1] = 1
    stack = np.zeros((3, 100, 100), np.int32)
    stack[1, 20:80, 20:80] = 1  # a 60 x 60 square on one slice of three
    for shape in (rect, band, ellipse, stack):
        objects = L.split_objects(shape, clusters=[1])
        assert objects.max() == 1 and (objects > 0).sum() == (shape == 1).sum()


def test_split_objects_separates_touching_nuclei_of_several_sizes():
    yy, xx = np.mgrid[0:100, 0:160]
    labels = np.zeros((100, 160), np.int32)
    # pairs of discs that overlap by a fifth of their diameter, of radius 6, 12 and 20
    centres = [((20, 12), (20, 22), 6), ((30, 60), (30, 80), 12), ((60, 110), (60, 143), 20)]
    for a, b, r in centres:
        for cy, cx in (a, b):
            labels[(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] = 1
    objects = L.split_objects(labels, clusters=[1])
    assert objects.max() == 6
    for a, b, _ in centres:
        assert objects[a] != objects[b] and objects[a] > 0 and objects[b] > 0


def test_split_objects_ignores_ragged_borders():
    """Borders that zig-zag by a pixel or two (as region borders do) cut nothing."""
    from scipy import ndimage as ndi

    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:200, 0:300]
    for k in range(10):
        a, b = rng.uniform(10, 60), rng.uniform(10, 100)
        shape = ((yy - 100) / a) ** 2 + ((xx - 150) / b) ** 2 <= 1
        if k % 2:
            shape = (abs(yy - 100) < a) & (abs(xx - 150) < b)
        bites = ndi.gaussian_filter(rng.normal(size=shape.shape), 1.5) > 0.1
        ragged = ndi.binary_fill_holes(
            shape & ~(bites & (shape ^ ndi.binary_erosion(shape, iterations=2)))
        )
        objects = L.split_objects(ragged.astype(np.int32), clusters=[1])
        sizes = np.bincount(objects.ravel())[1:]
        assert (sizes >= 20).sum() == 1, (k, sorted(sizes)[-3:])  # (specks bitten off stay specks)
