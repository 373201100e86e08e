"""OME-Zarr in and out (zarr and ome-zarr-py; no torch): what an input's axes are, where
its pyramid levels lie, and an output label image with its own pyramid.

Inputs are OME-Zarr images (NGFF 0.4 or 0.5: the ``multiscales`` metadata names the axes,
in any order, e.g. ``cyx``, ``zyx``, ``tczyx``) or plain zarr arrays (axes ``yx``,
``cyx`` or ``zyx`` by their number, an RGB(A) last axis as colour). Outputs are OME-Zarr
label images (NGFF 0.4: ``multiscales`` and ``image-label`` metadata, zarr format 2, the
most widely read) with the input's non-channel axes and a pyramid of nearest-neighbour
levels, which napari-ome-zarr and ome-zarr-py read.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

#: the axis types of NGFF and the names this reader understands for them
AXIS_TYPES = {"time": "t", "channel": "c", "space": "zyx"}


@dataclass(frozen=True)
class ZarrImage:
    """An image in a zarr store, not loaded: ``levels`` are zarr arrays (finest first)."""

    path: Path
    axes: str  # one letter per axis: t, c, z, y, x
    levels: list
    scales: list[tuple[float, ...]]  # per level, one per axis
    rgb: bool = False  # a plain array whose last axis is colour

    @property
    def shape(self) -> tuple[int, ...]:
        """The full-resolution array's shape."""
        return tuple(self.levels[0].shape)

    @property
    def channel_axis(self) -> int | None:
        """The channel axis of a plane read with channels last (-1), or None: no channel
        axis, or colour, which the method reads as RGB(A) (a plain array's last axis, or
        3 or 4 channels of 8 bits, as a photo's are).
        """
        if "c" not in self.axes or self.rgb:
            return None
        colour = self.shape[self.axes.index("c")] in (3, 4) and self.levels[0].dtype == np.uint8
        return None if colour else -1

    @property
    def label_axes(self) -> str:
        """The output's axes: the input's without the channel axis."""
        return self.axes.replace("c", "")


def _refuse(path, why: str) -> ValueError:
    return ValueError(f"{path}: {why}")


def open_image(path) -> ZarrImage:
    """The OME-Zarr image or plain zarr array at ``path``, checked: a ValueError that
    says what is wrong for anything else (not zarr, a group without ``multiscales``,
    axes this reader does not know).
    """
    import zarr

    path = Path(path)
    if not path.exists():
        raise _refuse(path, "no such file or folder")
    try:
        node = zarr.open(str(path), mode="r")
    except Exception as exc:  # noqa: BLE001 - any reader error means "not zarr"
        raise _refuse(path, f"not a zarr store ({type(exc).__name__}: {exc})") from None
    if isinstance(node, zarr.Array):
        return _plain_array(path, node)
    attrs = dict(node.attrs)
    ome = attrs.get("ome", attrs)
    multiscales = ome.get("multiscales") if isinstance(ome, dict) else None
    if not multiscales:
        raise _refuse(
            path,
            "a zarr group without OME-Zarr 'multiscales' metadata: give the image's group "
            "(or one of its arrays)",
        )
    if not isinstance(multiscales, list):
        raise _refuse(path, f"'multiscales' is {multiscales!r}, not a list of images")
    return _multiscale(path, node, multiscales[0])


def _plain_array(path: Path, array) -> ZarrImage:
    ndim = array.ndim
    rgb = ndim == 3 and array.shape[-1] in (3, 4)
    axes = {2: "yx", 3: "yxc" if rgb else "cyx" if array.shape[0] <= 4 else "zyx"}.get(ndim)
    if axes is None:
        raise _refuse(
            path,
            f"a plain zarr array of {ndim} axes: give an OME-Zarr image, whose metadata names them",
        )
    return ZarrImage(path, axes, [array], [(1.0,) * ndim], rgb=rgb)


def _multiscale(path: Path, group, meta) -> ZarrImage:
    if not isinstance(meta, dict):
        raise _refuse(path, f"'multiscales' holds {meta!r}, not an OME-Zarr image description")
    axes = _axes(path, _listed(path, meta, "axes"))
    levels, scales = [], []
    for ds in _listed(path, meta, "datasets"):
        try:
            levels.append(group[ds["path"]])
        except (KeyError, TypeError) as exc:
            raise _refuse(
                path, f"multiscales names a level {ds!r} that is not there ({exc})"
            ) from None
        scales.append(_scale(path, ds, len(axes)))
    if not levels:
        raise _refuse(path, "multiscales lists no datasets")
    if any(not hasattr(lv, "ndim") or lv.ndim != len(axes) for lv in levels):
        raise _refuse(path, f"the axes {axes!r} do not match the arrays' dimensions")
    return ZarrImage(path, axes, levels, scales)


def _listed(path: Path, meta: dict, key: str) -> list:
    value = meta.get(key, [])
    if not isinstance(value, list):
        raise _refuse(path, f"multiscales {key!r} is {value!r}, not a list")
    return value


def _axes(path: Path, listed: list) -> str:
    axes = ""
    for axis in listed:
        name = axis.get("name") if isinstance(axis, dict) else axis
        kind = axis.get("type") if isinstance(axis, dict) else None
        if (
            not isinstance(name, str)
            or len(name) != 1
            or name not in "tczyx"
            or (kind is not None and name not in AXIS_TYPES.get(kind, ""))
        ):
            raise _refuse(
                path,
                f"unknown axis {axis!r}: this reader knows t (time), c (channel), z, y, x (space)",
            )
        axes += name
    if not axes.endswith("yx") or len(set(axes)) != len(axes):
        raise _refuse(
            path, f"axes {axes!r}: an image needs y and x as its last axes, each axis once"
        )
    return axes


def _scale(path: Path, ds: dict, n_axes: int) -> tuple[float, ...]:
    """A level's scale: positive finite numbers, one per axis (1 each when not given)."""
    transforms = ds.get("coordinateTransformations", [])
    scale = next(
        (
            t.get("scale")
            for t in (transforms if isinstance(transforms, list) else [])
            if isinstance(t, dict) and t.get("type") == "scale"
        ),
        [1.0] * n_axes,
    )
    try:
        values = tuple(float(v) for v in scale if not isinstance(v, (bool, str)))
    except (TypeError, ValueError):
        values = ()
    if len(values) != n_axes or not all(math.isfinite(v) and v > 0 for v in values):
        raise _refuse(
            path,
            f"level {ds.get('path')!r} has the scale {scale!r}: give {n_axes} positive numbers",
        )
    return values


def read_pixels(image: ZarrImage, array, selection: tuple) -> np.ndarray:
    """``array[selection]`` of the image, or a ValueError that names the damaged chunk
    (its file in the store) when the pixels cannot be read.
    """
    try:
        return np.asarray(array[selection])
    except Exception as exc:  # noqa: BLE001 - codec and store errors come in many types
        raise damaged(image, array, selection, exc) from None


def chunk_region(array, index) -> tuple[slice, ...]:
    """The selection of ``array``'s chunk at grid ``index``."""
    return tuple(
        slice(i * c, min((i + 1) * c, s))
        for i, c, s in zip(index, array.chunks, array.shape, strict=True)
    )


def damaged(image: ZarrImage, array, selection: tuple, exc: Exception) -> ValueError:
    """The ValueError for pixels that could not be read: the first chunk of
    ``selection`` that fails on its own, named by its key in the store.
    """
    spans = []
    for sel, size, chunk in zip(selection, array.shape, array.chunks, strict=False):
        lo, hi = sel.indices(size)[:2] if isinstance(sel, slice) else (int(sel), int(sel) + 1)
        spans.append(range(lo // chunk, max(lo // chunk + 1, -(-hi // chunk))))
    for index in itertools.product(*spans):
        try:
            array[chunk_region(array, index)]
        except Exception as err:  # noqa: BLE001 - as above
            key = array.metadata.encode_chunk_key(index)
            where = "/".join(p for p in (str(image.path), array.path, key) if p)
            return ValueError(
                f"{where}: a damaged chunk of the image ({_first_line(err)}); "
                "restore the image from a good copy"
            )
    return ValueError(f"{image.path}: its pixels cannot be read ({_first_line(exc)})")


def _first_line(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {(str(exc).strip().splitlines() or [''])[0]}"


def label_pyramid_shapes(shape: tuple[int, ...], smallest: int = 256) -> list[tuple[int, ...]]:
    """Level shapes: Y and X halved (rounded up) until the plane is at most ``smallest``."""
    shapes = [tuple(shape)]
    while max(shapes[-1][-2:]) > smallest:
        last = shapes[-1]
        shapes.append(tuple(last[:-2]) + tuple((s + 1) // 2 for s in last[-2:]))
    return shapes


def create_labels(path, image: ZarrImage, chunks: tuple[int, ...], name: str = "inceptseg regions"):
    """The output group with an empty int32 array per pyramid level and NGFF 0.4
    ``multiscales`` / ``image-label`` metadata; returns the zarr arrays, finest first.
    An existing group of the same shape and chunks is reopened as it is (a resumed run).
    """
    import zarr

    axes = image.label_axes
    keep = [i for i, a in enumerate(image.axes) if a != "c"]
    shape = tuple(image.shape[i] for i in keep)
    scale0 = [image.scales[0][i] for i in keep]
    shapes = label_pyramid_shapes(shape)
    group = zarr.open_group(str(path), mode="a", zarr_format=2)
    arrays = []
    for k, level_shape in enumerate(shapes):
        level_chunks = tuple(min(c, s) for c, s in zip(chunks, level_shape, strict=False))
        if str(k) in group and group[str(k)].shape == level_shape:
            arrays.append(group[str(k)])
            continue
        arrays.append(
            group.create_array(
                str(k),
                shape=level_shape,
                chunks=level_chunks,
                dtype="int32",
                fill_value=0,
                overwrite=True,
            )
        )
    datasets = [
        {
            "path": str(k),
            "coordinateTransformations": [
                {
                    "type": "scale",
                    "scale": [
                        v * (2**k if a in "yx" else 1) for v, a in zip(scale0, axes, strict=False)
                    ],
                }
            ],
        }
        for k in range(len(shapes))
    ]
    types = {"t": "time", "z": "space", "y": "space", "x": "space"}
    group.attrs.update(
        {
            "multiscales": [
                {
                    "version": "0.4",
                    "name": name,
                    "axes": [{"name": a, "type": types[a]} for a in axes],
                    "datasets": datasets,
                    "type": "nearest",
                }
            ],
            "image-label": {"version": "0.4", "source": {"image": str(image.path)}},
        }
    )
    return arrays
