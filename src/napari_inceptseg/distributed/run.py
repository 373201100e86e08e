"""Segment an OME-Zarr image on a Dask cluster, writing an OME-Zarr label image:
:func:`segment_zarr_iter` yields progress and returns the output's path, :func:`segment_zarr`
runs it to the end. The client only plans, gathers block numbers and stitches; workers
read and write zarr themselves, so no process holds the image.

1. **Train** the default method once on a small copy of one plane (a worker).
2. **Blocks**: every block (``block`` pixels a side, plus a halo) gets the network's
   response, its clusters and its regions (:mod:`.blocks`).
3. **Stitch** on the client: global ids, joins across faces, the merges and the
   hierarchy cut on whole-image statistics (:mod:`.stitch`).
4. **Write** every block's final labels, then the pyramid (nearest neighbour).

Nothing is written before the input, the output and the cluster are all checked. The
run is written into a partial folder beside the output as it goes (the network, each
block's regions and numbers, each written block), so a rerun of the same request on the
same input after a kill picks up where it stopped; it becomes the output only once it is
complete (:mod:`.output`). A worker that dies mid-task has its task retried by Dask; input
the method refuses (NaN pixels, a damaged chunk) stops the run at once and leaves nothing.
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..params import as_whole
from .blocks import plane_blocks
from .cluster import check_workers, cluster_client
from .ngff import create_labels, open_image
from .output import check_output, discard, fingerprint, finish, start

#: how often Dask retries a block whose worker died
RETRIES = 3


@dataclass(frozen=True)
class ZarrProgress:
    """One step of a run: ``stage`` is training, blocks, stitching, writing or pyramid."""

    stage: str
    done: int
    total: int


def segment_zarr_iter(
    input_path,
    output_path,
    *,
    scheduler: str | None = None,
    workers: int | None = None,
    block: int = 1024,
    overwrite: bool = False,
    preset: str = "default",
    **params: Any,
) -> Generator[ZarrProgress, None, Path]:
    """Segment an OME-Zarr image on a Dask cluster into an OME-Zarr label image.

    The network is trained once on a small copy; blocks with a halo are then
    labelled by the workers, their regions joined across faces and the hierarchy
    cut on whole-image region statistics. A rerun after a kill skips finished blocks.

    Parameters
    ----------
    input_path : str or os.PathLike
        An OME-Zarr image (NGFF 0.4/0.5, any declared axes order) or a plain zarr array.
    output_path : str or os.PathLike
        Where the OME-Zarr image-label group goes (with a pyramid).
    scheduler : str, optional
        The address of a running Dask scheduler; default: a LocalCluster.
    workers : int, optional
        Processes of the LocalCluster (at least 1; default: Dask's choice for this
        machine). A script that starts a LocalCluster must call this under
        ``if __name__ == "__main__":``.
    block : int
        Block side in pixels (at least 64).
    overwrite : bool
        Replace an existing output, once the new one is complete. Only an output this
        program wrote is ever replaced.
    preset : str
        The method's preset (it must make regions: the default method).
    **params
        :class:`SegmentParams` fields on top of ``preset``.

    Yields
    ------
    ZarrProgress
        ``stage`` (training, blocks, stitching, writing, pyramid), ``done``, ``total``.
        Closing the generator cancels what is under way.

    Returns
    -------
    pathlib.Path
        The output's path.

    Raises
    ------
    ValueError
        Bad input or output (not zarr, unknown axes, an output that is an input or is
        not this program's, an existing output without ``overwrite``) or a scheduler
        that does not answer within 10 s, before anything is written; input that the
        method refuses (NaN pixels, a damaged chunk) when a worker meets it, leaving
        nothing behind.

    Examples
    --------
    >>> from napari_inceptseg.distributed import segment_zarr_iter  # doctest: +SKIP
    >>> for p in segment_zarr_iter(
    ...     "big.ome.zarr", "big-labels.ome.zarr", scheduler="tcp://head:8786"
    ... ):  # doctest: +SKIP
    ...     print(p.stage, p.done, p.total)
    """
    from ..presets import preset_params

    settings = preset_params(preset, **params)
    if not settings.regions:
        raise ValueError("whole-image runs make regions (the default method): leave regions on")
    if as_whole(block) is None or block < 64:
        raise ValueError(f"block must be a whole number of pixels >= 64, got {block!r}")
    check_workers(workers)
    image = open_image(input_path)
    _check_image(image)
    folder = check_output(output_path, [input_path], overwrite)
    request = {
        "input": str(Path(input_path).resolve()),
        "fingerprint": fingerprint(image),
        "block": int(block),
        "params": settings.to_dict(),
    }
    with cluster_client(scheduler, workers) as client:  # nothing is written before this
        start(folder, request)
        try:
            summary = yield from _run(client, image, folder, int(block), settings.to_dict())
        except ValueError:  # the input was refused: the same on a rerun, so nothing is kept
            discard(folder)
            raise
    return finish(folder, summary, overwrite)


def _check_image(image) -> None:
    """What the method refuses in any image, found from the metadata on the client."""
    from ..image import check_layout

    if image.levels[0].dtype.kind not in "biuf":
        raise ValueError(
            f"{image.path}: pixels of type {image.levels[0].dtype} are not an image's numbers"
        )
    try:  # one plane's check, as a run in memory makes it
        check_layout(tuple(image.shape[image.axes.index(a)] for a in "yx"))
    except ValueError as exc:
        raise ValueError(f"{image.path}: {exc}") from None


def _answer(value):
    """A worker's answer, or its :class:`~.blocks.Refusal` raised as a ValueError."""
    from .blocks import Refusal

    if isinstance(value, Refusal):
        raise ValueError(value.message)
    return value


def _run(client, image, folder, block: int, params: dict):
    from distributed import as_completed

    from . import blocks as B

    state = folder.state
    shape = image.shape
    yx = (shape[image.axes.index("y")], shape[image.axes.index("x")])
    lead = [shape[i] for i, a in enumerate(image.axes) if a in "tz"]
    planes = list(np.ndindex(*lead)) if lead else [()]
    blocks = plane_blocks(yx, planes, block)
    chunks = (1,) * len(lead) + (block, block)
    levels = create_labels(folder.partial, image, chunks)
    scratch = str(state / "scratch")
    _scratch(scratch, levels[0].shape, chunks)
    network = yield from _trained_network(client, image, lead, params, state)
    stats = [None] * len(blocks)
    futures = {
        client.submit(
            B.block_regions,
            str(image.path),
            str(network),
            b,
            scratch,
            str(state / "blocks"),
            params,
            retries=RETRIES,
            pure=False,
        ): b.index
        for b in blocks
    }
    # (waited on in this client's own event loop: a Client the caller holds open, made
    # current by ``with``, must not become the loop the futures are tracked in)
    for k, fut in enumerate(as_completed(futures, loop=client.loop), 1):
        stats[futures[fut]] = _answer(fut.result())
        yield ZarrProgress("blocks", k, len(blocks))
    yield ZarrProgress("stitching", 0, 1)
    luts, n_labels = _stitch(blocks, stats, planes, params, yx[0] * yx[1])
    yield ZarrProgress("stitching", 1, 1)
    writes = [
        client.submit(
            B.write_block,
            scratch,
            str(folder.partial / "0"),
            b,
            lut,
            str(state / "blocks"),
            retries=RETRIES,
            pure=False,
        )
        for b, lut in zip(blocks, luts, strict=False)
    ]
    for k, fut in enumerate(as_completed(writes, loop=client.loop), 1):
        fut.result()
        yield ZarrProgress("writing", k, len(blocks))
    yield from _pyramid(client, folder.partial, len(levels))
    return {"n_labels": n_labels, "n_blocks": len(blocks)}


def _trained_network(client, image, lead, params: dict, state: Path):
    """The network trained once, on a worker, on the middle plane (kept for a rerun)."""
    from . import blocks as B

    network = state / "network.safetensors"
    if not network.exists():
        yield ZarrProgress("training", 0, 1)
        mid = tuple(n // 2 for n in lead)
        _answer(
            client.submit(
                B.train_network, str(image.path), mid, params, str(network), retries=RETRIES
            ).result()
        )
    yield ZarrProgress("training", 1, 1)
    return network


def _stitch(blocks, stats, planes, params: dict, plane_pixels: int):
    """Join the blocks' regions across faces and decide the final labels on the whole
    image's region statistics; returns each block's lookup table and the label count.
    """
    from .stitch import block_luts, final_labels, global_graph

    graph, region, offsets = global_graph(blocks, stats)
    plane_of = np.repeat([planes.index(b.plane) for b in blocks], [int(s["n"]) for s in stats])
    planes_of_regions = np.zeros(len(graph.size), dtype=np.int64)
    planes_of_regions[region] = plane_of
    final = final_labels(graph, planes_of_regions, params, plane_pixels)
    return block_luts(blocks, stats, region, final, offsets), int(final.max())


def _scratch(path: str, shape, chunks) -> None:
    import zarr

    if not Path(path).exists():
        zarr.create_array(
            path, shape=shape, chunks=chunks, dtype="int32", fill_value=0, zarr_format=2
        )


def _pyramid(client, out: Path, n_levels: int):
    """Each coarser level from the one before: every second pixel along Y and X."""
    import dask.array as da
    import zarr

    for k in range(1, n_levels):
        src = da.from_zarr(str(out / str(k - 1)))
        dst = zarr.open_array(str(out / str(k)), mode="r+")
        step = (slice(None),) * (src.ndim - 2) + (slice(None, None, 2), slice(None, None, 2))
        level = src[step].rechunk(dst.chunks)
        client.compute(da.store(level, dst, lock=False, compute=False)).result()
        yield ZarrProgress("pyramid", k, n_levels - 1)


def segment_zarr(input_path, output_path, **kwargs) -> Path:
    """Segment an OME-Zarr image on a Dask cluster: :func:`segment_zarr_iter` run to the end.

    Parameters
    ----------
    input_path, output_path : str or os.PathLike
        The OME-Zarr image and where its labels go.
    **kwargs
        ``scheduler``, ``workers``, ``block``, ``overwrite``, ``preset`` and
        :class:`SegmentParams` fields, as for :func:`segment_zarr_iter`.

    Returns
    -------
    pathlib.Path
        The output's path.

    Raises
    ------
    ValueError
        Bad input or output, before any work.

    Examples
    --------
    >>> from napari_inceptseg.distributed import segment_zarr  # doctest: +SKIP
    >>> segment_zarr("big.ome.zarr", "big-labels.ome.zarr", workers=2)  # doctest: +SKIP
    PosixPath('big-labels.ome.zarr')
    """
    from ..engine.results import run_to_end

    return run_to_end(segment_zarr_iter(input_path, output_path, **kwargs))
