"""Dataset readers on small fixtures written in each dataset's own format."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from napari_inceptseg.bench.datasets import list_items, read_label_png

RNG = np.random.default_rng(0)


def _rgb(path, shape=(12, 16)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(RNG.integers(0, 255, (*shape, 3), dtype=np.uint8)).save(path)


def _grey(path, data):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(data.astype(np.uint8), mode="L").save(path)


def _palette(path, data):
    path.parent.mkdir(parents=True, exist_ok=True)
    im = Image.fromarray(data.astype(np.uint8), mode="P")
    pal = [0] * 768
    pal[3:6] = [128, 0, 0]
    pal[255 * 3 : 255 * 3 + 3] = [224, 224, 192]  # VOC's void colour
    im.putpalette(pal)
    im.save(path)


def test_bsds500(tmp_path):
    from scipy.io import savemat

    root = tmp_path / "BSR"
    for name in ("b", "a"):
        _rgb(root / "images" / "val" / f"{name}.jpg")
        cell = np.empty((1, 3), dtype=object)
        for k in range(3):
            cell[0, k] = {
                "Segmentation": np.full((12, 16), k + 1, np.uint16),
                "Boundaries": np.zeros((12, 16), bool),
            }
        (root / "groundTruth" / "val").mkdir(parents=True, exist_ok=True)
        savemat(root / "groundTruth" / "val" / f"{name}.mat", {"groundTruth": cell})
    items = list_items("bsds500", root, "val")
    assert [i.name for i in items] == ["a", "b"] and items[0].ignore_index is None
    image, gts = items[0].load()
    assert image.shape == (12, 16, 3) and len(gts) == 3 and [g.max() for g in gts] == [1, 2, 3]


@pytest.mark.parametrize("nested", ["", "VOC2012", "VOCdevkit/VOC2012"])
def test_voc_palette_png_gives_indices_and_255_void(tmp_path, nested):
    voc = tmp_path / "VOCdevkit" / "VOC2012"
    seg = np.zeros((12, 16), np.uint8)
    seg[2:5, 3:9] = 1
    seg[0, :] = 255
    for n in ("2007_000032", "2007_000039"):
        _rgb(voc / "JPEGImages" / f"{n}.jpg")
        _palette(voc / "SegmentationClass" / f"{n}.png", seg)
    (voc / "ImageSets" / "Segmentation").mkdir(parents=True)
    (voc / "ImageSets" / "Segmentation" / "val.txt").write_text("2007_000039\n2007_000032\n")
    # ROOT is VOC2012 itself, the folder holding VOC2012, or the one holding VOCdevkit
    root = {"": voc, "VOC2012": voc.parent, "VOCdevkit/VOC2012": tmp_path}[nested]
    items = list_items("voc", root, "val")
    assert [i.name for i in items] == ["2007_000039", "2007_000032"]  # the split file's order
    _, (gt,) = items[0].load()
    assert items[0].ignore_index == 255
    assert np.array_equal(gt, seg)  # palette indices, not colours


def test_cocostuff(tmp_path):
    ann = np.full((12, 16), 181, np.uint8)
    ann[:3] = 255
    _rgb(tmp_path / "images" / "val2017" / "000000000139.jpg")
    _grey(tmp_path / "annotations" / "val2017" / "000000000139.png", ann)
    (item,) = list_items("cocostuff", tmp_path, "val")
    _, (gt,) = item.load()
    assert item.ignore_index == 255 and np.array_equal(gt, ann)


def test_camvid(tmp_path):
    ann = np.arange(12 * 16).reshape(12, 16) % 12
    _rgb(tmp_path / "val" / "0016E5_07959.png")
    _grey(tmp_path / "valannot" / "0016E5_07959.png", ann)
    (item,) = list_items("camvid", tmp_path, "val")
    _, (gt,) = item.load()
    assert item.ignore_index == 11 and np.array_equal(gt, ann)


def test_folder_matches_stems_and_takes_ignore_index(tmp_path):
    _rgb(tmp_path / "img" / "x.png")
    _rgb(tmp_path / "img" / "lonely.jpg")
    _grey(tmp_path / "lab" / "x.png", np.ones((12, 16)))
    (item,) = list_items("folder", images=tmp_path / "img", labels=tmp_path / "lab", ignore_index=0)
    assert item.name == "x" and item.ignore_index == 0


@pytest.mark.parametrize(
    "args, match",
    [
        (("bsds500", "/nonexistent", "val"), "not found"),
        (("voc", "/nonexistent", "val"), "ImageSets/Segmentation"),
        (("camvid", None, "val"), "needs root=DIR"),
        (("folder", None, "val"), "needs images=DIR"),
        (("kitti", "/x", "val"), "unknown dataset"),
    ],
)
def test_reader_errors_are_clear(args, match):
    with pytest.raises(ValueError, match=match):
        list_items(*args)


def test_mismatched_or_rgb_ground_truth_is_a_clear_error(tmp_path):
    _rgb(tmp_path / "val" / "a.png", (12, 16))
    _grey(tmp_path / "valannot" / "a.png", np.ones((10, 16)))
    (item,) = list_items("camvid", tmp_path, "val")
    with pytest.raises(ValueError, match="does not match image"):
        item.load()
    _rgb(tmp_path / "rgb.png")
    with pytest.raises(ValueError, match="palette or single-channel"):
        read_label_png(tmp_path / "rgb.png")


@pytest.mark.slow
def test_shared_bsds500_and_camvid_layouts(shared_data):
    bsds = list_items("bsds500", shared_data / "bsds500", "val")
    camvid = list_items("camvid", shared_data / "camvid", "val")
    assert len(bsds) == 100 and len(camvid) == 20
    image, gts = bsds[0].load()
    assert len(gts) >= 4 and gts[0].shape == image.shape[:2] and gts[0].min() >= 1
    image, (gt,) = camvid[0].load()
    assert gt.shape == image.shape[:2] and gt.max() <= 11


def test_dsb2018_layout_reads_16_bit_instance_maps(tmp_path):
    from PIL import Image

    from napari_inceptseg.bench.evaluate import score_row

    rgba = np.zeros((6, 8, 4), np.uint8)
    rgba[..., 3] = 255
    rgba[1:3, 1:3, :3] = 200  # nucleus 1
    rgba[3:5, 5:7, :3] = 180  # nucleus 2
    (tmp_path / "images").mkdir()
    (tmp_path / "labels").mkdir()
    Image.fromarray(rgba, "RGBA").save(tmp_path / "images" / "n1.png")
    inst = np.zeros((6, 8), np.uint16)
    inst[1:3, 1:3], inst[3:5, 5:7] = 1, 300  # ids need 16 bits
    Image.fromarray(inst).save(tmp_path / "labels" / "n1.png")
    (item,) = list_items("dsb2018", tmp_path)
    image, (gt,) = item.load()
    assert item.kind == "instances" and image.shape == (6, 8, 3)
    assert sorted(np.unique(gt)) == [0, 1, 300]
    # a perfect foreground/background prediction: both classes right, both nuclei found
    pred = np.where(gt > 0, 2, 1)
    row = score_row(pred, [gt], None, instances=True)
    assert row["standard_miou"] == 1.0 and row["f1"] == 1.0 and row["matched_iou"] == 1.0
    # kim treats each nucleus as its own segment: one region per nucleus matches each exactly
    assert row["kim_miou"] == 1.0 and row["kim_segments"] == 3
    # the same folder through --dataset folder --instances
    (folder_item,) = list_items(
        "folder", images=tmp_path / "images", labels=tmp_path / "labels", instances=True
    )
    assert folder_item.kind == "instances"
