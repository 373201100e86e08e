"""What a Dask worker does (torch is imported inside the functions): train on a small
copy of the image, then, block by block with a halo, the network's response, its
clusters voted over superpixels, and the block's connected regions with the numbers the
whole-image merges need (sizes, response sums, borders inside the block, and the strips
along the block's faces that stitching compares with the neighbours').

Each block writes its regions (block-local ids 1..n) to the output's scratch array and
its numbers to a ``.npz`` beside it, so a rerun finds what is done.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np

#: pixels of context a block reads beyond each face: more than the network's receptive
#: radius, so that the kept centre's response does not see the block's edge (and the
#: superpixels near a face see past it)
HALO = 16
#: the training copy has at most this many pixels (the default method trains on 40,000;
#: the rest sets BatchNorm's statistics on a copy that a 2 GB worker holds)
COPY_PIXELS = 1_000_000
#: the face strips a block keeps: (name, index along Y, index along X) of its outer rows/cols
FACES = {
    "top": (0, slice(None)),
    "bottom": (-1, slice(None)),
    "left": (slice(None), 0),
    "right": (slice(None), -1),
}


@dataclass(frozen=True)
class Block:
    """One block: a plane (the leading index over t and z) and a Y-X window."""

    index: int
    plane: tuple[int, ...]
    y: tuple[int, int]
    x: tuple[int, int]

    @property
    def shape(self) -> tuple[int, int]:
        """The block's spatial shape without its halo."""
        return self.y[1] - self.y[0], self.x[1] - self.x[0]


def plane_blocks(shape_yx: tuple[int, int], planes, block: int):
    """Every block of every plane, in order."""
    out = []
    for plane in planes:
        for y0 in range(0, shape_yx[0], block):
            for x0 in range(0, shape_yx[1], block):
                out.append(
                    Block(
                        len(out),
                        tuple(plane),
                        (y0, min(y0 + block, shape_yx[0])),
                        (x0, min(x0 + block, shape_yx[1])),
                    )
                )
    return out


def read_window(
    image, plane: tuple[int, ...], y: tuple[int, int], x: tuple[int, int]
) -> np.ndarray:
    """The window of one plane of a :class:`~.ngff.ZarrImage`'s finest level, channels last
    (or no channel axis), read from zarr (only the chunks it touches).
    """
    sel, lead = [], iter(plane)
    for axis in image.axes:
        sel.append(
            slice(*y)
            if axis == "y"
            else slice(*x)
            if axis == "x"
            else slice(None)
            if axis == "c"
            else next(lead)
        )
    from .ngff import read_pixels

    window = read_pixels(image, image.levels[0], tuple(sel))
    if "c" in image.axes and not image.rgb:
        c = [a for a in image.axes if a in "cyx"].index("c")
        window = np.moveaxis(window, c, -1)
    return window


@dataclass(frozen=True)
class Refusal:
    """A worker's answer for input that the method refuses (a ValueError: the same on
    every retry), handed back instead of raised, so that Dask neither retries the task
    nor logs its traceback; the client raises it as a ValueError.
    """

    message: str


def refusing(task):
    """``task`` with its ValueError handed back as a :class:`Refusal`."""

    @functools.wraps(task)
    def run(*args, **kwargs):
        try:
            return task(*args, **kwargs)
        except ValueError as exc:
            return Refusal(str(exc))

    return run


@refusing
def train_network(path: str, plane: tuple[int, ...], params: dict, out: str) -> str:
    """Train the default method on a copy of one plane of at most :data:`COPY_PIXELS`
    pixels (averaged down, chunk by chunk) and save the network to ``out``.
    """
    import dask.array as da

    from ..engine.loop import segment
    from .ngff import damaged, open_image

    image = open_image(path)
    h, w = (image.shape[image.axes.index(a)] for a in "yx")
    factor = max(1, int(np.ceil(np.sqrt(h * w / COPY_PIXELS))))
    lazy = da.from_zarr(image.levels[0])
    sel = tuple(slice(None) if i is None else i for i in _leading(image.axes, plane))
    plane_data = lazy[sel]
    kept = [a for a in image.axes if a not in "tz"]
    factors = {i: factor for i, a in enumerate(kept) if a in "yx"}
    try:
        copy = da.coarsen(np.mean, plane_data, factors, trim_excess=True).compute(
            scheduler="synchronous"
        )
    except Exception as exc:  # noqa: BLE001 - a damaged chunk, named by ngff.damaged
        raise damaged(image, image.levels[0], sel, exc) from None
    if "c" in kept and not image.rgb:
        copy = np.moveaxis(copy, kept.index("c"), -1)
    channel_axis = -1 if ("c" in kept and not image.rgb) else None
    if image.levels[0].dtype == np.uint8:
        copy = np.round(copy).astype(np.uint8)
    result = segment(copy, channel_axis=channel_axis, **params)
    result.save_model(out, overwrite=True)
    return out


def _leading(axes: str, plane: tuple[int, ...]):
    """The plane's index for each axis (None where the axis is not t or z)."""
    lead = iter(plane)
    return [next(lead) if a in "tz" else None for a in axes]


@refusing
def block_regions(
    path: str, network: str, block: Block, scratch: str, stats_dir: str, params: dict
) -> dict[str, np.ndarray]:
    """One block's regions (written to ``scratch``) and numbers (written to ``stats_dir``
    and returned); nothing is done twice when both are there already.
    """
    done = Path(stats_dir) / f"{block.index}.npz"
    if done.exists():
        return dict(np.load(done))
    from .ngff import open_image

    image = open_image(path)
    stats, labels = _regions_of(image, network, block, params)
    _write_scratch(scratch, block, labels)
    tmp = done.with_suffix(".tmp.npz")
    np.savez(tmp, **stats)
    tmp.rename(done)
    return stats


def _regions_of(image, network: str, block: Block, params: dict):
    """The block's regions (ids 1..n in its centre) and their numbers."""
    from ..engine.saved import load_model, respond
    from ..hierarchy import channel_edges
    from ..labels import connected_regions, consecutive_labels, region_adjacency, region_sums
    from ..regions import absorb_thin_pixels, superpixel_vote

    h, w = (image.shape[image.axes.index(a)] for a in "yx")
    y0, y1 = max(0, block.y[0] - HALO), min(h, block.y[1] + HALO)
    x0, x1 = max(0, block.x[0] - HALO), min(w, block.x[1] + HALO)
    window = read_window(image, block.plane, (y0, y1), (x0, x1))
    model = load_model(network)
    channel_axis = -1 if ("c" in image.axes and not image.rgb) else None
    data, response = respond(
        model, window, channel_axis=channel_axis, device=params.get("device", "cpu")
    )
    clusters = superpixel_vote(response.argmax(0), data)
    inner = (slice(block.y[0] - y0, block.y[1] - y0), slice(block.x[0] - x0, block.x[1] - x0))
    clusters = clusters[inner]
    response, data = response[(slice(None), *inner)], data[(slice(None), *inner)]
    pieces = connected_regions(clusters, connectivity=1)
    kept = absorb_thin_pixels(pieces, data)
    labels = consecutive_labels(kept)
    # rim pixels: their new region's
    clusters = _region_clusters(labels, clusters, kept == pieces)[labels]
    n = int(labels.max())
    resp_edges, img_edges = channel_edges(response), channel_edges(data)
    a, b, length, resp_contrast, img_contrast = region_adjacency(labels, resp_edges, img_edges)
    stats = {
        "n": np.array(n),
        "size": np.bincount(labels.ravel(), minlength=n + 1)[1:],
        "sums": region_sums(labels, response, n + 1)[1:],
        "a": a - 1,
        "b": b - 1,
        "length": length,
        "resp_contrast": resp_contrast,
        "img_contrast": img_contrast,
    }
    for face, index in FACES.items():
        stats[f"{face}_ids"] = labels[index] - 1
        stats[f"{face}_clusters"] = clusters[index]
        stats[f"{face}_resp"] = resp_edges[index]
        stats[f"{face}_img"] = img_edges[index]
    return stats, labels


def _region_clusters(labels: np.ndarray, clusters: np.ndarray, own: np.ndarray) -> np.ndarray:
    """Each region's cluster (read from the pixels that kept their own region, ``own``),
    so that regions meet across a block face by their clusters, rim pixels included.
    """
    out = np.zeros(int(labels.max()) + 1, dtype=clusters.dtype)
    out[labels[own]] = clusters[own]
    return out


def _write_scratch(scratch: str, block: Block, labels: np.ndarray) -> None:
    import zarr

    arr = zarr.open_array(scratch, mode="r+")
    arr[(*block.plane, slice(*block.y), slice(*block.x))] = labels


def write_block(scratch: str, output: str, block: Block, lut: np.ndarray, stats_dir: str) -> int:
    """The block's final labels: its block-local ids through ``lut`` (its slice of the
    global table, ``lut[0]`` unused), written to the output's finest level; a marker
    beside its numbers says so, and a rerun skips it.
    """
    import zarr

    marker = Path(stats_dir) / f"{block.index}.written"
    if marker.exists():
        return block.index
    out = zarr.open_array(output, mode="r+")
    where = (*block.plane, slice(*block.y), slice(*block.x))
    local = np.asarray(zarr.open_array(scratch, mode="r")[where])
    out[where] = lut[local]
    marker.touch()
    return block.index
