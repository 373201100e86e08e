"""What a Dask worker does to one block of the analysis grid (:mod:`.grid`; torch is
imported inside the functions): the network's response over the block's window with a
halo, then, once the plane's regions are made (:mod:`.planes`), the response summed over
each region, and at the end the final labels, written and scaled up to the image.

Every task leaves a marker (or its numbers) in the run's scratch, so a rerun skips what
is done.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..engine.workflow.saved import load_model, network_inputs, respond
from ..regions.graph import channel_edges, region_sums
from .grid import Grid
from .ngff import open_image, read_pixels

#: pixels of context a block reads beyond each face (on the analysis grid): more than the
#: network's receptive radius, so that the centre's response is the whole image's
HALO = 32


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


def block_input(image, model, block: Block, grid):
    """``(data, net_in, centre)`` of a block: the pixels under its window of the analysis
    grid with a :data:`HALO`, normalised and as the network's input, each averaged down to
    the grid (:class:`~.grid.Grid`), and where the block's centre lies in them.
    """
    h, w = grid.analysis
    y = (max(0, block.y[0] - HALO), min(h, block.y[1] + HALO))
    x = (max(0, block.x[0] - HALO), min(w, block.x[1] + HALO))
    pixels = read_window(image, block.plane, grid.span(0, *y), grid.span(1, *x))
    data, net_in = network_inputs(model, pixels, channel_axis=image.channel_axis)
    centre = (
        slice(block.y[0] - y[0], block.y[1] - y[0]),
        slice(block.x[0] - x[0], block.x[1] - x[0]),
    )
    return grid.pooled(data, y, x), grid.pooled(net_in, y, x), centre


def _response(path: str, network: str, block: Block, device: str):
    """``(data, response)`` over the block's centre: its pixels (normalised, on the
    analysis grid) and the network's response to them, seen with the halo.
    """
    image = open_image(path)
    grid = Grid.of(image.shape[image.axes.index(a)] for a in "yx")
    model = load_model(network)
    data, net_in, centre = block_input(image, model, block, grid)
    response = respond(model, net_in, device=device)
    return data, response, centre


@refusing
def block_response(path: str, network: str, block: Block, state: str, device: str) -> int:
    """The network's clusters and response edges over the block's centre, and its pixels
    (normalised, on the analysis grid), written to the run's scratch (``state``).
    """
    import zarr

    marker = Path(state) / "blocks" / f"{block.index}.response"
    if marker.exists():
        return block.index
    data, response, centre = _response(path, network, block, device)
    edges = channel_edges(response)[centre]
    where = (*block.plane, slice(*block.y), slice(*block.x))
    zarr.open_array(f"{state}/clusters", mode="r+")[where] = response.argmax(0)[centre]
    zarr.open_array(f"{state}/response_edges", mode="r+")[where] = edges
    pixels = (*block.plane, slice(None), slice(*block.y), slice(*block.x))
    zarr.open_array(f"{state}/data", mode="r+")[pixels] = data[(slice(None), *centre)]
    marker.touch()
    return block.index


@refusing
def block_sums(path: str, network: str, block: Block, state: str, device: str) -> np.ndarray:
    """The network's response summed over each region of the plane (its id's row; ids the
    block does not hold have zeros), over the block's centre.
    """
    import zarr

    done = Path(state) / "blocks" / f"{block.index}.sums.npy"
    if done.exists():
        return np.load(done)
    _, response, centre = _response(path, network, block, device)
    where = (*block.plane, slice(*block.y), slice(*block.x))
    regions = np.asarray(zarr.open_array(f"{state}/regions", mode="r")[where])
    sums = region_sums(regions, response[(slice(None), *centre)], int(regions.max()) + 1)
    tmp = done.with_suffix(".tmp.npy")
    np.save(tmp, sums)
    tmp.rename(done)
    return sums


def relabel_block(state: str, block: Block, lut: np.ndarray) -> int:
    """The block's final labels on the analysis grid: its plane's regions through
    ``lut`` (the plane's table, ``lut[0]`` unused), written to the scratch's ``final``.
    """
    import zarr

    marker = Path(state) / "blocks" / f"{block.index}.relabelled"
    if marker.exists():
        return block.index
    where = (*block.plane, slice(*block.y), slice(*block.x))
    regions = np.asarray(zarr.open_array(f"{state}/regions", mode="r")[where])
    zarr.open_array(f"{state}/final", mode="r+")[where] = lut[regions]
    marker.touch()
    return block.index


def write_block(state: str, output: str, block: Block, grid) -> int:
    """One block of the output's finest level: the final labels of the analysis grid
    scaled up to the plane by nearest neighbour (:class:`~.grid.Grid`).
    """
    import zarr

    final = f"{state}/final"
    marker = Path(state) / "blocks" / f"{block.index}.written"
    if marker.exists():
        return block.index
    iy, ix = grid.nearest(0, *block.y), grid.nearest(1, *block.x)
    where = (*block.plane, slice(iy[0], iy[-1] + 1), slice(ix[0], ix[-1] + 1))
    labels = np.asarray(zarr.open_array(final, mode="r")[where])
    up = labels[np.ix_(iy - iy[0], ix - ix[0])]
    zarr.open_array(output, mode="r+")[(*block.plane, slice(*block.y), slice(*block.x))] = up
    marker.touch()
    return block.index
