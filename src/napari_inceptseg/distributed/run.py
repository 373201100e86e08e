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

Everything lands in the output folder as it is done (the network, each block's regions
and numbers, each written block), so a rerun after a kill picks up where it stopped; a
worker that dies mid-task has its task retried by Dask.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Generator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .blocks import plane_blocks
from .ngff import check_output, create_labels, open_image

#: how long the client waits for a scheduler that does not answer
CONNECT_TIMEOUT_S = 10
#: how often Dask retries a block whose worker died
RETRIES = 3


@dataclass(frozen=True)
class ZarrProgress:
    """One step of a run: ``stage`` is training, blocks, stitching, writing or pyramid."""

    stage: str
    done: int
    total: int


def _state_dir(out: Path) -> Path:
    return out / ".inceptseg"


def _prepare_output(out: Path, request: dict[str, Any], overwrite: bool) -> bool:
    """Start, resume or refuse: returns whether an unfinished run of the same request is
    resumed. A finished output, or another request's, needs ``overwrite``.
    """
    record = _state_dir(out) / "run.json"
    if out.exists() and not overwrite and record.exists():
        old = json.loads(record.read_text())
        if old.get("request") == request and not old.get("complete"):
            return True
    check_output(out, overwrite)
    if out.exists():
        shutil.rmtree(out)
    _state_dir(out).mkdir(parents=True)
    (_state_dir(out) / "blocks").mkdir()
    record.write_text(json.dumps({"request": request, "complete": False}, indent=1))
    return False


def _client(scheduler: str | None, workers: int | None):
    """A client of the cluster at ``scheduler``, or of a LocalCluster sized to this
    machine; ``(client, cluster or None)``.
    """
    from distributed import Client, LocalCluster

    if scheduler:
        try:
            return Client(scheduler, timeout=f"{CONNECT_TIMEOUT_S}s"), None
        except (OSError, TimeoutError) as exc:
            raise ValueError(
                f"cannot reach the Dask scheduler at {scheduler} within {CONNECT_TIMEOUT_S} s "
                f"({exc}): is it running, and is the address right (tcp://HOST:8786)?"
            ) from None
    cluster = LocalCluster(
        n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None
    )
    return Client(cluster), cluster


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
        Processes of the LocalCluster.
    block : int
        Block side in pixels (at least 64).
    overwrite : bool
        Replace an existing output.
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
        Bad input or output (not zarr, unknown axes, an existing output without
        ``overwrite``), before any work.
    OSError
        The scheduler cannot be reached (within 10 s).

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
    if isinstance(block, bool) or int(block) != block or block < 64:
        raise ValueError(f"block must be a whole number of pixels >= 64, got {block!r}")
    image = open_image(input_path)
    out = Path(output_path)
    request = {
        "input": str(Path(input_path).resolve()),
        "block": int(block),
        "params": settings.to_dict(),
    }
    _prepare_output(out, request, overwrite)
    client, cluster = _client(scheduler, workers)
    try:
        return (yield from _run(client, image, out, int(block), settings.to_dict()))
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def _run(client, image, out: Path, block: int, params: dict):
    from distributed import as_completed

    from . import blocks as B

    state = _state_dir(out)
    shape = image.shape
    yx = (shape[image.axes.index("y")], shape[image.axes.index("x")])
    lead = [shape[i] for i, a in enumerate(image.axes) if a in "tz"]
    planes = list(np.ndindex(*lead)) if lead else [()]
    blocks = plane_blocks(yx, planes, block)
    chunks = (1,) * len(lead) + (block, block)
    levels = create_labels(out, image, chunks)
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
    for k, fut in enumerate(as_completed(futures), 1):
        stats[futures[fut]] = fut.result()
        yield ZarrProgress("blocks", k, len(blocks))
    yield ZarrProgress("stitching", 0, 1)
    luts, n_labels = _stitch(blocks, stats, planes, params, yx[0] * yx[1])
    yield ZarrProgress("stitching", 1, 1)
    writes = [
        client.submit(
            B.write_block,
            scratch,
            str(out / "0"),
            b,
            lut,
            str(state / "blocks"),
            retries=RETRIES,
            pure=False,
        )
        for b, lut in zip(blocks, luts, strict=False)
    ]
    for k, _ in enumerate(as_completed(writes), 1):
        yield ZarrProgress("writing", k, len(blocks))
    yield from _pyramid(client, out, len(levels))
    _finish(out, n_labels, len(blocks))
    return out


def _trained_network(client, image, lead, params: dict, state: Path):
    """The network trained once, on a worker, on the middle plane (kept for a rerun)."""
    from . import blocks as B

    network = state / "network.safetensors"
    if not network.exists():
        yield ZarrProgress("training", 0, 1)
        mid = tuple(n // 2 for n in lead)
        client.submit(
            B.train_network, str(image.path), mid, params, str(network), retries=RETRIES
        ).result()
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


def _finish(out: Path, n_labels: int, n_blocks: int) -> None:
    state = _state_dir(out)
    record = json.loads((state / "run.json").read_text())
    record.update(complete=True, n_labels=n_labels, n_blocks=n_blocks)
    (state / "run.json").write_text(json.dumps(record, indent=1))
    shutil.rmtree(state / "scratch", ignore_errors=True)


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
