"""Label maps: objects from clusters."""

from __future__ import annotations

import numpy as np

from napari_inceptseg import labels as L


def test_split_objects_separates_touching_discs():
    yy, xx = np.mgrid[0:60, 0:90]
    labels = np.ones((60, 90), np.int32)  # background: the largest cluster
    for cy, cx in ((30, 22), (30, 40), (30, 70)):  # two discs that touch, one apart
        labels[(yy - cy) ** 2 + (xx - cx) ** 2 <= 10 ** 2] = 2
    labels[0:4, 0:4] = 3  # a small piece of a third cluster
    joined = L.split_objects(labels, clusters=[2], separate_touching=False)
    assert joined.max() == 2  # the touching pair is one piece
    objects = L.split_objects(labels, clusters=[2])
    assert objects.max() == 3 and objects.dtype == np.int32
    assert len(np.unique(objects[30, 12:30])) == 1 and objects[30, 22] != objects[30, 40]
    assert (objects[labels == 1] == 0).all()
    assert L.split_objects(labels).max() == 4  # default: every cluster but the background
