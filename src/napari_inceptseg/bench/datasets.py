"""Benchmark dataset readers, each for the layout in which the dataset is distributed.

A reader lists :class:`Item` records without reading any pixel; ``item.load()``
reads the image and its ground-truth map(s) where they lie (nothing is copied).
No torch, no napari.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..io import read_image

DATASETS = ("bsds500", "voc", "cocostuff", "camvid", "dsb2018", "folder")
IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp")


@dataclass(frozen=True)
class Item:
    """One image of a dataset and where its ground truth is."""

    name: str
    image_path: Path
    gt_path: Path
    #: "mat" (BSDS500, several annotators), "png" (one label map) or "instances" (one id
    #: per object, 0 = background: scored as objects vs background, and object by object)
    kind: str
    ignore_index: int | None

    def load(self) -> tuple[np.ndarray, list[np.ndarray]]:
        """``(image, [ground truth, ...])``; raises ValueError when unreadable."""
        image = read_image(self.image_path)
        gts = read_bsds_mat(self.gt_path) if self.kind == "mat" else [read_label_png(self.gt_path)]
        if self.kind == "instances" and image.ndim == 3 and image.shape[-1] == 4:
            image = image[..., :3]  # DSB2018's PNGs carry an opaque alpha channel
        for gt in gts:
            if gt.shape != image.shape[:2]:
                raise ValueError(
                    f"{self.gt_path}: ground truth {gt.shape} does not match image "
                    f"{image.shape[:2]}"
                )
        return image, gts


def read_label_png(path) -> np.ndarray:
    """A label map: palette PNGs give their palette indices (VOC), grey PNGs their values."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            if im.mode not in ("P", "L", "I", "I;16", "1"):
                raise ValueError(
                    f"{path}: a label map must be a palette or single-channel image, got "
                    f"mode {im.mode}"
                )
            return np.array(im).astype(np.int32)
    except (OSError, SyntaxError) as exc:
        raise ValueError(f"{path}: not a readable label map ({exc})") from None


def read_bsds_mat(path) -> list[np.ndarray]:
    """Every annotator's segmentation of a BSDS500 ``groundTruth`` .mat file."""
    from scipy.io import loadmat

    try:
        cells = loadmat(path)["groundTruth"]
        return [
            np.asarray(cells[0, k]["Segmentation"][0, 0]).astype(np.int32)
            for k in range(cells.shape[1])
        ]
    except Exception as exc:
        raise ValueError(
            f"{path}: not a BSDS500 groundTruth file ({type(exc).__name__}: {exc})"
        ) from None


def _need(path: Path, what: str) -> Path:
    if not path.is_dir():
        raise ValueError(f"{path} not found: {what}")
    return path


def _bsds500(root: Path, split: str) -> list[Item]:
    images = _need(root / "images" / split, "expected ROOT/images/SPLIT/*.jpg (BSDS500 layout)")
    gts = _need(
        root / "groundTruth" / split, "expected ROOT/groundTruth/SPLIT/*.mat (BSDS500 layout)"
    )
    return [
        Item(p.stem, p, gts / f"{p.stem}.mat", "mat", None) for p in sorted(images.glob("*.jpg"))
    ]


def _voc(root: Path, split: str) -> list[Item]:
    for cand in (root, root / "VOC2012", root / "VOCdevkit" / "VOC2012"):
        if (cand / "ImageSets" / "Segmentation").is_dir():
            root = cand
            break
    else:
        raise ValueError(
            f"{root}: no ImageSets/Segmentation found (give VOC2012 or VOCdevkit as ROOT)"
        )
    listing = root / "ImageSets" / "Segmentation" / f"{split}.txt"
    if not listing.is_file():
        raise ValueError(f"{listing} not found: split {split!r} does not exist")
    names = [line.strip() for line in listing.read_text().splitlines() if line.strip()]
    return [
        Item(
            n, root / "JPEGImages" / f"{n}.jpg", root / "SegmentationClass" / f"{n}.png", "png", 255
        )
        for n in names
    ]


def _cocostuff(root: Path, split: str) -> list[Item]:
    images = _need(
        root / "images" / f"{split}2017", "expected ROOT/images/SPLIT2017/*.jpg (COCO-Stuff layout)"
    )
    ann = _need(
        root / "annotations" / f"{split}2017",
        "expected ROOT/annotations/SPLIT2017/*.png (stuffthingmaps)",
    )
    return [
        Item(p.stem, p, ann / f"{p.stem}.png", "png", 255) for p in sorted(images.glob("*.jpg"))
    ]


def _camvid(root: Path, split: str) -> list[Item]:
    images = _need(root / split, "expected ROOT/SPLIT/*.png (CamVid SegNet layout)")
    ann = _need(root / f"{split}annot", "expected ROOT/SPLITannot/*.png (CamVid SegNet layout)")
    return [Item(p.stem, p, ann / p.name, "png", 11) for p in sorted(images.glob("*.png"))]


def _dsb2018(root: Path, split: str) -> list[Item]:
    images = _need(
        root / "images",
        "expected ROOT/images/*.png beside ROOT/labels/*.png (DSB2018 instance maps)",
    )
    labels = _need(
        root / "labels", "expected ROOT/labels/*.png: 16-bit instance maps, 0 = background"
    )
    return [
        Item(p.stem, p, labels / p.name, "instances", None)
        for p in sorted(images.glob("*.png"))
        if (labels / p.name).exists()
    ]


def _folder(
    images: Path, labels: Path, ignore_index: int | None, instances: bool = False
) -> list[Item]:
    _need(images, "the images folder")
    _need(labels, "the labels folder")
    by_stem: dict[str, Path] = {
        p.stem: p for p in labels.iterdir() if p.suffix.lower() in (".png", ".tif", ".tiff", ".mat")
    }
    items, unlabelled = [], []
    for p in sorted(images.iterdir()):
        if p.suffix.lower() in IMAGE_EXTS and p.stem not in by_stem:
            unlabelled.append(p.name)
        elif p.suffix.lower() in IMAGE_EXTS:
            gt = by_stem[p.stem]
            kind = "mat" if gt.suffix == ".mat" else ("instances" if instances else "png")
            items.append(Item(p.stem, p, gt, kind, ignore_index))
    if unlabelled and items:
        warnings.warn(
            f"{len(unlabelled)} of {len(unlabelled) + len(items)} images in {images} have no "
            f"label map with the same file stem in {labels} and are left out "
            f"({', '.join(unlabelled[:3])}{', ...' if len(unlabelled) > 3 else ''})",
            stacklevel=3,
        )
    if not items:
        raise ValueError(
            f"no image in {images} has a label map with the same file stem in {labels}"
        )
    return items


def list_items(
    dataset: str,
    root=None,
    split: str = "val",
    *,
    images=None,
    labels=None,
    ignore_index: int | None = None,
    instances: bool = False,
) -> list[Item]:
    """The images of a dataset in its distributed layout (see module docs)."""
    readers: dict[str, Callable[[Path, str], list[Item]]] = {
        "bsds500": _bsds500,
        "voc": _voc,
        "cocostuff": _cocostuff,
        "camvid": _camvid,
        "dsb2018": _dsb2018,
    }
    if dataset == "folder":
        if images is None or labels is None:
            raise ValueError("the folder dataset needs images=DIR and labels=DIR")
        return _folder(Path(images), Path(labels), ignore_index, instances)
    if dataset not in readers:
        raise ValueError(f"unknown dataset {dataset!r}: choose one of {', '.join(DATASETS)}")
    if root is None:
        raise ValueError(f"dataset {dataset!r} needs root=DIR (the folder it was unpacked to)")
    items = readers[dataset](Path(root), split)
    if ignore_index is not None:
        items = [Item(i.name, i.image_path, i.gt_path, i.kind, ignore_index) for i in items]
    return items
