"""Reading images and writing labels, and the coloured overlays written beside them
(no torch, no napari).
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from .image import prepare_image, spatial_layout


def read_image(path) -> np.ndarray:
    """Read an image file (PNG, JPEG, TIFF, ...) as a numpy array. Grey + alpha (LA)
    images come back grey: the alpha channel is dropped, as it is for RGBA.

    Raises ``ValueError`` naming the file when it cannot be read, and saying why: no
    such file, a folder, something that is not a regular file (a FIFO, a device), or
    not an image.
    """
    path = Path(path)
    _check_regular_file(path)
    try:
        if path.suffix.lower() in (".tif", ".tiff"):
            import tifffile

            return np.asarray(tifffile.imread(path))
        import imageio.v3 as iio

        image = np.asarray(iio.imread(path))
    except Exception as exc:  # any decoder error means "not a readable image"
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise ValueError(f"{path}: not a readable image ({type(exc).__name__}: {first})") from None
    if image.ndim == 3 and image.shape[-1] == 2:  # grey + alpha (formats other than TIFF)
        image = image[..., 0]
    return image


def _check_regular_file(path: Path) -> None:
    """A ValueError unless ``path`` is a file that can be read as an image."""
    import stat

    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise ValueError(f"{path}: no such file") from None
    except OSError as exc:
        raise ValueError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    if stat.S_ISDIR(mode):
        raise ValueError(f"{path}: is a folder, not an image file (name the image files in it)")
    if not stat.S_ISREG(mode):
        kind = "a FIFO (named pipe)" if stat.S_ISFIFO(mode) else "not a regular file"
        raise ValueError(f"{path}: is {kind}, not an image file; save the image to a file first")


def current_umask() -> int:
    """The process's umask (Linux reads it without changing it; elsewhere set and restore)."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write(path: Path, write, overwrite: bool) -> None:
    """Write through a temporary file in the same folder, then move it into place.

    With ``overwrite=False`` an existing file is never replaced. The file gets the mode
    any new file of the user gets (0666 less the umask), or keeps the mode of the file it
    replaces, not the temporary file's private 0600.
    """
    path = Path(path)
    if os.path.lexists(path) and not overwrite:  # (a dangling link included)
        raise FileExistsError(f"{path} exists; pass overwrite=True to replace it")
    path.parent.mkdir(parents=True, exist_ok=True)
    mode = path.stat().st_mode & 0o7777 if path.exists() else 0o666 & ~current_umask()
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}-", suffix=path.suffix, dir=path.parent)
    os.fchmod(fd, mode)
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, mode)  # (a writer may have made the file anew, with its own mode)
        if not overwrite:
            # link() fails if the target appeared meanwhile: never clobber
            os.link(tmp, path)
        else:
            os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def check_writable(path, *, overwrite: bool = False, what: str = "output file") -> Path:
    """Before any work: ``path`` can be written (its folder exists or can be made, and
    takes files) and is not a folder, nor an existing file without ``overwrite``.
    Raises a ValueError (FileExistsError for an existing file) that says what to do.
    """
    path = Path(path)
    if path.is_symlink():
        raise ValueError(f"the {what} {path} is a symbolic link: name the file itself")
    if path.is_dir():
        raise ValueError(f"the {what} {path} is a folder: name a file")
    if path.exists() and not overwrite:
        raise FileExistsError(f"the {what} {path} exists; pass overwrite=True to replace it")
    check_folder_takes_files(path, what)
    return path


def check_folder_takes_files(path: Path, what: str) -> None:
    """``path``'s folder exists or can be made, and a file can be created in it; a
    ValueError that says what to do otherwise.
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path.parent):
            pass
    except OSError as exc:
        raise ValueError(
            f"cannot write the {what} {path} ({exc.strerror or exc}): choose another place"
        ) from None


def check_creatable(path, what: str) -> Path:
    """Before any work, without writing anything: ``path`` can be made, because the
    nearest folder above it that exists takes new files; a ValueError otherwise.
    """
    path = Path(path)
    parent = path.absolute().parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
        raise ValueError(f"cannot write the {what} {path} (no write access to {parent})")
    return path


def write_labels(path, labels: np.ndarray, *, overwrite: bool = False) -> Path:
    """Write labels as a 16-bit PNG (``.png``) or a TIFF (``.tif``/``.tiff``)."""
    path = Path(path)
    labels = np.asarray(labels)
    ext = path.suffix.lower()
    if ext == ".png":
        if labels.min() < 0 or labels.max() > 65535:
            raise ValueError("labels outside 0..65535 do not fit a 16-bit PNG: write a .tif")
        import imageio.v3 as iio

        atomic_write(
            path, lambda p: iio.imwrite(p, labels.astype(np.uint16), extension=".png"), overwrite
        )
    elif ext in (".tif", ".tiff"):
        import tifffile

        atomic_write(path, lambda p: tifffile.imwrite(p, labels), overwrite)
    else:
        raise ValueError(f"unsupported labels format {ext!r}: use .png or .tif")
    return path


def write_png(path, rgb: np.ndarray, *, overwrite: bool = False) -> Path:
    """Write an RGB image to a new PNG file; refuses to overwrite unless asked."""
    import imageio.v3 as iio

    atomic_write(Path(path), lambda p: iio.imwrite(p, rgb, extension=".png"), overwrite)
    return Path(path)


def write_json(path, payload: dict[str, Any], *, overwrite: bool = False) -> Path:
    """Write ``payload`` as JSON to a new file; refuses to overwrite unless asked."""

    def _w(p):
        with open(p, "w") as fh:
            json.dump(payload, fh, indent=2, default=str)
            fh.write("\n")

    atomic_write(Path(path), _w, overwrite)
    return Path(path)


def display_rgb(image: np.ndarray, channel_axis: int | None = None) -> np.ndarray:
    """An 8-bit RGB view of any supported image (for overlays and thumbnails)."""
    data = prepare_image(image, channel_axis=channel_axis)  # (C, H, W), ~0..1
    rgb = data[:3] if data.shape[0] >= 3 else np.repeat(data[:1], 3, axis=0)
    rgb = np.clip(np.moveaxis(rgb, 0, -1), 0, 1)
    return (rgb * 255 + 0.5).astype(np.uint8)


def colour_overlay(
    image: np.ndarray, labels: np.ndarray, channel_axis=None, alpha: float = 0.45
) -> np.ndarray:
    """The image with every cluster tinted in its own colour and cluster borders drawn;
    for a volume (3D ``labels``), its middle Z plane.
    """
    from skimage.color import label2rgb
    from skimage.segmentation import find_boundaries

    if labels.ndim == 3:
        image, labels, channel_axis = _middle_plane(np.asarray(image), labels, channel_axis)
    base = display_rgb(image, channel_axis)
    tinted = label2rgb(labels, image=base, alpha=alpha, bg_label=0, image_alpha=1.0, kind="overlay")
    tinted[find_boundaries(labels, mode="inner")] = (1.0, 1.0, 1.0)
    return (np.clip(tinted, 0, 1) * 255 + 0.5).astype(np.uint8)


def _middle_plane(image: np.ndarray, labels: np.ndarray, channel_axis):
    """The middle Z plane of a volume and its labels, with the plane's channel axis."""
    _, ax, _ = spatial_layout(image.shape, channel_axis, dims=3)
    z_axis = 1 if ax == 0 else 0
    plane_axis = None if channel_axis is None else (ax if ax < z_axis else ax - 1)
    return (
        np.take(image, labels.shape[0] // 2, axis=z_axis),
        labels[labels.shape[0] // 2],
        plane_axis,
    )
