"""Apply a saved network to image files: one file (the CLI) or a folder of them (the
dock's "Apply to folder"), writing labels next to nothing the user made (no Qt).
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ...io import read_image, write_labels
from .stack import apply_stack

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")


def apply_to_image(
    model, image, channel_axis: int | None = None, device: str = "auto", tile_size: int = 0
) -> np.ndarray:
    """A saved network's labels for one image array (plane by plane for stacks; RGB(A)
    is detected when the network takes three channels).
    """
    image = np.asarray(image)
    rgb = (
        channel_axis is None
        and image.ndim >= 3
        and image.shape[-1] in (3, 4)
        and model.in_channels == 3
    )
    return apply_stack(
        model, image, channel_axis=channel_axis, rgb=rgb, device=device, tile_size=tile_size
    )


def new_output_folder(folder: Path) -> Path:
    """``<folder>-labels`` beside ``folder`` (``-labels-2``, ``-3``, ... if taken): always new."""
    folder = Path(folder)
    out = folder.with_name(folder.name + "-labels")
    k = 1
    while out.exists():
        k += 1
        out = folder.with_name(f"{folder.name}-labels-{k}")
    return out


@dataclass
class FolderReport:
    """What labelling a folder did: files written, skipped and failed."""

    out: Path
    written: list[Path] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)  # "file: why"


def apply_to_folder_iter(
    model,
    folder,
    out: Path | None = None,
    device: str = "auto",
) -> Generator[tuple, None, FolderReport]:
    """Label every image file in ``folder`` (not its subfolders) with ``model`` into
    ``out`` (default: a new ``<folder>-labels``), as ``<stem>_labels.png`` (``.tif`` for
    stacks), never overwriting. Yields ``(done, total, file)`` after each file; a file
    that cannot be read or labelled is reported in the returned :class:`FolderReport`
    and the others go on.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"{folder} is not a folder")
    files = sorted(
        p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
    )
    if not files:
        raise ValueError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {folder}")
    report = FolderReport(Path(out) if out is not None else new_output_folder(folder))
    report.out.mkdir(parents=True, exist_ok=True)
    for k, src in enumerate(files, 1):
        try:
            labels = apply_to_image(model, read_image(src), device=device)
            target = report.out / f"{src.stem}_labels.{'tif' if labels.ndim > 2 else 'png'}"
            report.written.append(write_labels(target, labels, overwrite=False))
        except (ValueError, OSError) as exc:
            report.failed.append(f"{src.name}: {exc}")
        yield k, len(files), src
    return report
