"""Images larger than one machine: OME-Zarr in, OME-Zarr labels out, on an existing Dask
cluster (or a LocalCluster). :func:`segment_zarr` / :func:`segment_zarr_iter` are the API,
``napari-inceptseg segment IN.ome.zarr -o OUT.ome.zarr`` the command; docs/distributed.md
says how to run on SLURM (dask-jobqueue) and Kubernetes. Needs the ``distributed`` extra
(``pip install "napari-inceptseg[distributed]"``).
"""

from __future__ import annotations

__all__ = ["segment_zarr", "segment_zarr_iter"]


def __getattr__(name):
    if name in __all__:
        from . import run

        return getattr(run, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
