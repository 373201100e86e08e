"""Helpers of the test suite: the development data, and commands with deadlines."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

#: the development data with human ground truth (../shared/data beside the project)
SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"

#: the longest a test waits for a command it started (a loaded 2-core machine included)
PROCESS_DEADLINE = 300
#: ... and for a dock's run or update under napari, in milliseconds (qtbot's unit)
GUI_DEADLINE_MS = 300_000


def need_shared_data(path: Path = SHARED_DATA) -> Path:
    """``path`` (in ../shared/data), or skip the test where it is absent -- except in CI
    (``CI=true``), where missing data must fail the test, not hide it."""
    if not path.exists():
        message = f"{path} not found (the development data, ../shared/data beside the project)"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(message + ": CI must have it", pytrace=False)
        pytest.skip(message)
    return path


def run_command(cmd, timeout: float = PROCESS_DEADLINE, **kw) -> subprocess.CompletedProcess:
    """``subprocess.run`` with a deadline (the command is killed when it passes it)."""
    kw.setdefault("capture_output", True)
    kw.setdefault("text", True)
    return subprocess.run(cmd, timeout=timeout, **kw)


def write_ome_zarr(path, array, axes: str, chunks):
    """``array`` written as an OME-Zarr image (NGFF 0.4, zarr v2) with these ``axes``
    and ``chunks``; returns ``path``."""
    import zarr
    from ome_zarr.format import FormatV04
    from ome_zarr.writer import write_image

    group = zarr.open_group(str(path), mode="w", zarr_format=2)
    write_image(array, group, axes=axes, fmt=FormatV04(), storage_options={"chunks": chunks})
    return path
