"""The Dask cluster a run works on: a running scheduler's, or a LocalCluster of this
machine started for the run and closed after it. Every failure to get one is a
ValueError that says what to do, before any file is written.
"""

from __future__ import annotations

import contextlib
import multiprocessing
from collections.abc import Iterator

from ..params import as_whole

#: how long the client waits for a scheduler that does not answer
CONNECT_TIMEOUT_S = 10


def check_workers(workers) -> int | None:
    """``workers`` as a whole number >= 1, or None (Dask sizes the LocalCluster).

    Raises
    ------
    ValueError
        Anything else (0 and negative counts included: a cluster without workers would
        wait for ever).

    Examples
    --------
    >>> check_workers(2), check_workers(None)
    (2, None)
    """
    if workers is None:
        return None
    whole = as_whole(workers)
    if whole is None or whole < 1:
        raise ValueError(f"workers must be a whole number >= 1, got {workers!r}")
    return whole


@contextlib.contextmanager
def cluster_client(scheduler: str | None, workers: int | None) -> Iterator:
    """A client of the cluster at ``scheduler``, or of a LocalCluster of ``workers``
    processes; closed (with the LocalCluster) when the block ends.

    Raises
    ------
    ValueError
        The scheduler does not answer within :data:`CONNECT_TIMEOUT_S`, or the local
        workers cannot start.
    """
    workers = check_workers(workers)
    if scheduler:
        client, cluster = _remote(scheduler), None
    else:
        cluster = _local_cluster(workers)
        from distributed import Client

        client = Client(cluster, set_as_default=False)
    try:
        yield client
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def _remote(scheduler: str):
    from distributed import Client

    try:
        return Client(scheduler, timeout=f"{CONNECT_TIMEOUT_S}s", set_as_default=False)
    except (OSError, TimeoutError) as exc:
        raise ValueError(
            f"cannot reach the Dask scheduler at {scheduler} within {CONNECT_TIMEOUT_S} s "
            f"({exc}): is it running, and is the address right (tcp://HOST:8786)?"
        ) from None


#: what to do when the local workers cannot start
_GUARD = (
    "Dask starts its worker processes by importing the main script again, so in a "
    'script the call must sit under `if __name__ == "__main__":`'
)


def _local_cluster(workers: int | None):
    from distributed import LocalCluster

    if multiprocessing.parent_process() is not None and _main_is_reimported():
        raise ValueError(f"a local Dask cluster was started while a worker started: {_GUARD}")
    try:
        return LocalCluster(
            n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None
        )
    except RuntimeError as exc:
        raise ValueError(f"the local Dask workers did not start ({exc}). {_GUARD}") from None


def _main_is_reimported() -> bool:
    """Whether this process is a spawned child importing its parent's main script."""
    import sys

    main = sys.modules.get("__main__")
    return getattr(main, "__name__", "") == "__mp_main__"
