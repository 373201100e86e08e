"""Segment an OME-Zarr image on a Dask cluster, writing an OME-Zarr label image:
:func:`segment_zarr_iter` yields progress and returns the output's path, :func:`segment_zarr`
runs it to the end. The client only plans and adds up numbers; workers read and write
zarr themselves, so no process holds the image. It is the method of a run in memory on
the same pixels, step by step:

1. **Train** the network once on the plane's training copy, the same copy a run in
   memory makes (a worker, :mod:`.training`), then measure BatchNorm's statistics over
   the whole plane, layer by layer (:mod:`.calibration`).
2. **Blocks** of the analysis grid (:mod:`.grid`: at most ``ANALYSIS_PIXELS`` per plane,
   as in memory), each with a halo, get the network's clusters and response edges
   (:mod:`.blocks`).
3. **Regions** of each plane on the grid, by the steps a run in memory takes
   (:mod:`.planes`; a worker per plane); the blocks add the response summed per region;
   the client finishes each plane's graph: merges, hierarchy cut, grouping.
4. **Write** the final labels, scaled up to the image block by block (nearest neighbour,
   as in memory), then the pyramid.

Nothing is written before the input, the output and the cluster are all checked. The
run is written into a partial folder beside the output as it goes (the network, each
block's regions and numbers, each written block), so a rerun of the same request on the
same input after a kill picks up where it stopped; it becomes the output only once it is
complete (:mod:`.output`). A worker that dies mid-task has its task retried by Dask; input
the method refuses (NaN pixels, a damaged chunk) stops the run at once and leaves nothing.
"""

from __future__ import annotations

import functools
from collections.abc import Generator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..engine.workflow.progress import run_to_end
from ..engine.workflow.saved import load_model
from ..image import check_layout
from ..params import as_whole
from ..presets import preset_params
from . import blocks as B
from .blocks import Refusal, plane_blocks
from .calibration import batchnorm_layers, calibrated, combined, layer_moments
from .cluster import check_workers, cluster_client
from .grid import Grid
from .ngff import create_labels, open_image
from .output import check_output, discard, fingerprint, publish, start
from .planes import plane_labels, plane_regions
from .training import train_network

#: how often Dask retries a block whose worker died
RETRIES = 3
#: the version of the run's steps and scratch, recorded with the request: a partial run
#: left by other steps is started afresh, not resumed
STEPS = 2


@dataclass(frozen=True)
class ZarrProgress:
    """One step of a run: ``stage`` is training, calibrating, blocks, regions, sums,
    labels, writing or pyramid.
    """

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
        ``stage`` (training, calibrating, blocks, regions, sums, labels, writing,
        pyramid), ``done``, ``total``.
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
    settings = preset_params(preset, **params)
    if not settings.regions or settings.objects:
        raise ValueError(
            "whole-image runs make regions (the default method): leave regions on and "
            "objects off, or segment the image's planes in memory for objects"
        )
    if as_whole(block) is None or block < 64:
        raise ValueError(f"block must be a whole number of pixels >= 64, got {block!r}")
    check_workers(workers)
    image = open_image(input_path)
    _check_image(image)
    folder = check_output(output_path, [input_path], overwrite)
    request = {
        "steps": STEPS,
        "input": str(Path(input_path).resolve()),
        "fingerprint": fingerprint(image),
        "block": int(block),
        "params": settings.to_dict(),
    }
    threads = _in_memory_threads()  # before a LocalCluster sets its workers' one thread
    with cluster_client(scheduler, workers) as client:  # nothing is written before this
        start(folder, request)
        try:
            summary = yield from _run(client, image, folder, int(block), (settings, threads))
        except ValueError:  # the input was refused: the same on a rerun, so nothing is kept
            discard(folder)
            raise
    return publish(folder, summary, overwrite)


def _check_image(image) -> None:
    """What the method refuses in any image, found from the metadata on the client."""
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
    if isinstance(value, Refusal):
        raise ValueError(value.message)
    return value


@dataclass(frozen=True)
class _Job:
    """One run's fixed parts: where it reads and writes, its settings and its blocks."""

    client: Any
    image: Any  # ngff.ZarrImage
    folder: Any  # output.RunFolder
    params: Any  # SegmentParams
    grid: Grid
    planes: list
    blocks: list  # on the analysis grid
    outputs: list  # of the output's finest level
    threads: int  # the threads a run in memory in the calling process takes

    def submit(self, task, *args, **kwargs):
        """``task(*args, **kwargs)`` on a worker, retried where its worker dies."""
        return self.client.submit(task, *args, **kwargs, retries=RETRIES, pure=False)

    def path(self, name: str) -> str:
        """A path in the run's scratch."""
        return str(self.folder.state / name)


def _in_memory_threads() -> int:
    """The threads torch takes in this process: a run in memory here trains on as many."""
    import torch

    return torch.get_num_threads()


def _run(client, image, folder, block: int, settings):
    """The run, once its input, output and cluster are checked; ``settings`` are the
    parameters and the training's thread count.
    """
    params, threads = settings
    shape = image.shape
    lead = [shape[i] for i, a in enumerate(image.axes) if a in "tz"]
    planes = list(np.ndindex(*lead)) if lead else [()]
    grid = Grid.of(shape[image.axes.index(a)] for a in "yx")
    step = max(64, round(block * grid.analysis[0] / grid.full[0]))
    blocks = plane_blocks(grid.analysis, planes, step)
    outputs = plane_blocks(grid.full, planes, block)
    job = _Job(client, image, folder, params, grid, planes, blocks, outputs, threads)
    levels = create_labels(folder.partial, image, (1,) * len(lead) + (block, block))
    network = yield from _network(job, lead)
    _scratches(job, lead, step, network)
    state, path = str(folder.state), str(image.path)
    task = functools.partial(job.submit, B.block_response, path, network)
    yield from _each(job, "blocks", [task(b, state, params.device) for b in blocks])
    regions = [job.submit(plane_regions, state, plane, k) for k, plane in enumerate(planes)]
    graphs = yield from _each(job, "regions", regions)
    task = functools.partial(job.submit, B.block_sums, path, network)
    sums = yield from _each(job, "sums", [task(b, state, params.device) for b in blocks])
    luts, n_labels = _tables(job, graphs, sums)
    relabel = [job.submit(B.relabel_block, state, b, luts[b.plane]) for b in blocks]
    yield from _each(job, "labels", relabel)
    level0 = str(folder.partial / "0")
    writes = [job.submit(B.write_block, state, level0, b, grid) for b in outputs]
    yield from _each(job, "writing", writes)
    yield from _pyramid(client, folder.partial, len(levels))
    return {"n_labels": n_labels, "n_blocks": len(blocks)}


def _each(job: _Job, stage: str, futures: list):
    """Wait for ``futures`` (in this client's own event loop: a Client the caller holds
    open, made current by ``with``, must not become the loop they are tracked in),
    yielding progress; returns their answers in order.
    """
    from distributed import as_completed

    order = {fut: k for k, fut in enumerate(futures)}
    out = [None] * len(futures)
    for k, fut in enumerate(as_completed(futures, loop=job.client.loop), 1):
        out[order[fut]] = _answer(fut.result())
        yield ZarrProgress(stage, k, len(futures))
    return out


def _tables(job: _Job, graphs: list, sums: list):
    """Per plane, the table from its regions to the final labels, numbered on from the
    plane before; and the number of labels.
    """
    luts, offset = {}, 0
    for plane, graph in zip(job.planes, graphs, strict=True):
        mine = [s for b, s in zip(job.blocks, sums, strict=True) if b.plane == plane]
        lut = plane_labels(graph, mine, job.params)
        luts[plane] = np.where(lut > 0, lut + offset, 0).astype(np.int32)
        offset += int(lut.max())
    return luts, offset


def _scratches(job: _Job, lead: list, step: int, network: str) -> None:
    """The arrays the blocks and planes write into, on the analysis grid."""
    grid = (*lead, *job.grid.analysis)
    chunks = (1,) * len(lead) + (step, step)
    for name, dtype in (("clusters", "int32"), ("regions", "int32"), ("final", "int32")):
        _scratch(job.path(name), grid, chunks, dtype)
    _scratch(job.path("response_edges"), grid, chunks, "float32")
    channels = load_model(network).in_channels
    data = (*lead, channels, *job.grid.analysis)
    _scratch(job.path("data"), data, (1,) * len(lead) + (channels, step, step), "float32")
    for name in ("blocks", "planes"):
        Path(job.path(name)).mkdir(exist_ok=True)


def _network(job: _Job, lead) -> str:
    """The network trained once, on a worker, on the middle plane, then its BatchNorm
    statistics measured over that plane's blocks (:mod:`.calibration`); kept for a rerun.
    """
    network = job.folder.state / "network.safetensors"
    if network.exists():
        yield ZarrProgress("training", 1, 1)
        return str(network)
    yield ZarrProgress("training", 0, 1)
    mid = tuple(n // 2 for n in lead)
    trained = job.path("trained.safetensors")
    path, threads = str(job.image.path), job.threads
    _answer(job.submit(train_network, path, mid, job.params, trained, threads=threads).result())
    yield ZarrProgress("training", 1, 1)
    known = yield from _calibration(job, trained, [b for b in job.blocks if b.plane == mid])
    calibrated(load_model(trained), known).save(network, overwrite=True)
    return str(network)


def _calibration(job: _Job, trained: str, blocks: list):
    """BatchNorm's statistics, layer after layer, each from every block of the plane."""
    from distributed import as_completed

    model = load_model(trained)
    n_layers = len(batchnorm_layers(model.build("cpu"), model.in_channels))
    known = []
    for k in range(n_layers):
        futures = [
            job.submit(
                layer_moments,
                str(job.image.path),
                trained,
                b,
                k,
                known=known,
                device=job.params.device,
            )
            for b in blocks
        ]
        moments = [_answer(f.result()) for f in as_completed(futures, loop=job.client.loop)]
        known.append(combined(moments))
        yield ZarrProgress("calibrating", k + 1, n_layers)
    return known


def _scratch(path: str, shape, chunks, dtype: str) -> None:
    import zarr

    if not Path(path).exists():
        zarr.create_array(
            path, shape=shape, chunks=chunks, dtype=dtype, fill_value=0, zarr_format=2
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
    return run_to_end(segment_zarr_iter(input_path, output_path, **kwargs))
