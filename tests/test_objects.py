"""Objects on a background (``objects=True``): quality against human ground truth,
the DSB2018 metric against the note's check values, numbering and measurements."""

from __future__ import annotations

import numpy as np
import pytest

from napari_inceptseg import SegmentParams, segment, segment_stack
from napari_inceptseg.bench.baselines import run_baseline
from napari_inceptseg.bench.datasets import list_items
from napari_inceptseg.bench.stats import paired_difference
from napari_inceptseg.objects.features import object_features, write_features_csv
from napari_inceptseg.objects.split import split_objects
from napari_inceptseg.sample_data import nuclei_image
from napari_inceptseg.scoring.objects import dsb_scores


@pytest.fixture(scope="module")
def dsb_items(shared_data):
    return [item.load() for item in list_items("dsb2018", shared_data / "dsb2018")]


def test_otsu_watershed_matches_the_notes_check_values(dsb_items):
    # ../shared/notes/dsb2018-instance-metric.md: mAP 0.450, F1 @ .5 0.762, F1 avg 0.543
    rows = [dsb_scores(run_baseline("otsu-watershed", im), gts[0]) for im, gts in dsb_items]
    means = {k: np.mean([r[k] for r in rows]) for k in ("map", "f1_50", "f1_avg")}
    assert means == pytest.approx({"map": 0.450, "f1_50": 0.762, "f1_avg": 0.543}, abs=0.0015)


def test_objects_beat_otsu_watershed_on_the_dev_nuclei(dsb_items):
    ours, theirs = [], []
    for image, gts in dsb_items:
        labels = segment(image, objects=True).labels
        assert labels.min() == 0 and labels.dtype == np.int32
        ours.append(dsb_scores(labels, gts[0]))
        theirs.append(dsb_scores(run_baseline("otsu-watershed", image), gts[0]))
    for key in ("map", "f1_avg"):  # docs/benchmarks.md: +0.045 and +0.041, above zero
        d = paired_difference([o[key] for o in ours], [t[key] for t in theirs])
        assert d.diff > 0.03 and d.lo > 0, key


def test_bundled_nuclei_sample_is_counted():
    image, truth = nuclei_image()
    result = segment(image, objects=True)
    scores = dsb_scores(result.labels, truth)
    assert scores["f1_50"] > 0.8 and scores["map"] > 0.5
    assert abs(result.n_labels - scores["n_objects"]) <= 0.15 * scores["n_objects"]
    assert result.metadata()["labels"] == "objects" and result.model is None


def test_dark_objects_on_a_bright_field_and_a_stack():
    yy, xx = np.mgrid[:80, :80]
    image = np.full((80, 80), 200, np.uint8)
    for cy, cx in ((20, 20), (20, 58), (58, 40)):
        image[(yy - cy) ** 2 + (xx - cx) ** 2 < 100] = 40  # dark nuclei (brightfield)
    labels = segment(image, objects=True).labels
    assert labels.max() == 3 and labels[0, 0] == 0 and labels[20, 20] != labels[20, 58]
    stack = segment_stack(np.stack([image, image[::-1]]), objects=True).labels
    assert stack[0].max() == 3 and (stack[1][stack[1] > 0] > 3).all() and stack[1, 0, 0] == 0


def test_objects_refuse_scribbles_and_a_non_bool():
    image = np.zeros((32, 32), np.uint8)
    with pytest.raises(ValueError, match="objects=True .* no scribbles"):
        segment(image, objects=True, scribbles=np.ones((32, 32), int))
    with pytest.raises(ValueError, match="objects must be True or False"):
        SegmentParams(objects=1)


def test_measurements_and_their_csv(tmp_path):
    labels = np.zeros((30, 30), np.int32)
    labels[2:8, 2:8] = 1
    labels[10:20, 5:15] = 2
    image = np.dstack([labels * 10, labels * 20, labels * 30]).astype(np.uint8)
    table = object_features(labels, image)
    assert table["area"].tolist() == [36, 100]
    assert table["intensity_mean-2"].tolist() == [30, 60]
    assert table["centroid-0"].tolist() == [4.5, 14.5] and "eccentricity" in table
    out = write_features_csv(table, tmp_path / "m.csv")
    lines = out.read_text().splitlines()
    assert len(lines) == 3 and lines[0].split(",")[:2] == ["label", "area"]
    with pytest.raises(FileExistsError):
        write_features_csv(table, out)


def test_split_objects_separates_touching_discs():
    yy, xx = np.mgrid[0:60, 0:90]
    labels = np.ones((60, 90), np.int32)  # background: the largest cluster
    for cy, cx in ((30, 22), (30, 40), (30, 70)):  # two discs that touch, one apart
        labels[(yy - cy) ** 2 + (xx - cx) ** 2 <= 10**2] = 2
    labels[0:4, 0:4] = 3  # a small piece of a third cluster
    joined = split_objects(labels, clusters=[2], separate_touching=False)
    assert joined.max() == 2  # the touching pair is one piece
    objects = split_objects(labels, clusters=[2])
    assert objects.max() == 3 and objects.dtype == np.int32
    assert len(np.unique(objects[30, 12:30])) == 1 and objects[30, 22] != objects[30, 40]
    assert (objects[labels == 1] == 0).all()
    assert split_objects(labels).max() == 4  # default: every cluster but the background


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
        objects = split_objects(shape, clusters=[1])
        assert objects.max() == 1 and (objects > 0).sum() == (shape == 1).sum()


def test_split_objects_separates_touching_nuclei_of_several_sizes():
    yy, xx = np.mgrid[0:100, 0:160]
    labels = np.zeros((100, 160), np.int32)
    # pairs of discs that overlap by a fifth of their diameter, of radius 6, 12 and 20
    centres = [((20, 12), (20, 22), 6), ((30, 60), (30, 80), 12), ((60, 110), (60, 143), 20)]
    for a, b, r in centres:
        for cy, cx in (a, b):
            labels[(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] = 1
    objects = split_objects(labels, clusters=[1])
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
        objects = split_objects(ragged.astype(np.int32), clusters=[1])
        sizes = np.bincount(objects.ravel())[1:]
        assert (sizes >= 20).sum() == 1, (k, sorted(sizes)[-3:])  # (specks bitten off stay specks)


def test_a_stacks_objects_are_measured_plane_by_plane():
    image = nuclei_image()[0]
    stack = np.stack([image, image[::-1]])
    labels = segment_stack(stack, objects=True).labels
    table = object_features(labels, stack, planes=True)
    assert len(table["label"]) == labels.max() and set(table["plane-0"]) == {0, 1}
    assert np.isfinite(table["solidity"]).all() and "eccentricity" in table
    flat = object_features(labels, stack)  # as one volume: flat objects have no solidity
    assert np.isnan(flat["solidity"]).all() and len(flat["label"]) == labels.max()


def test_whole_image_runs_refuse_objects(tmp_path):
    from napari_inceptseg.distributed.run import segment_zarr_iter

    run = segment_zarr_iter(tmp_path / "in.ome.zarr", tmp_path / "out.ome.zarr", objects=True)
    with pytest.raises(ValueError, match="objects off"):
        next(run)
    assert not (tmp_path / "out.ome.zarr").exists()


def test_a_volumes_objects_are_found_in_3d():
    zz, yy, xx = np.mgrid[:24, :48, :48]
    volume = np.zeros((24, 48, 48), np.uint8)
    for cz, cy, cx in ((12, 14, 14), (12, 14, 34), (12, 34, 24)):  # three balls
        volume[(zz - cz) ** 2 + (yy - cy) ** 2 + (xx - cx) ** 2 < 49] = 180
    result = segment(volume, objects=True, dims="3d")
    labels = result.labels
    assert labels.shape == volume.shape and labels.max() == 3 and labels[0, 0, 0] == 0
    centres = [labels[12, 14, 14], labels[12, 14, 34], labels[12, 34, 24]]
    assert sorted(centres) == [1, 2, 3]  # each ball one object, across its slices
    table = object_features(labels, volume)
    assert "eccentricity" not in table and (table["area"] > 900).all()  # about 4/3 pi 7^3
