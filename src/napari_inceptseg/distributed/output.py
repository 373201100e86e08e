"""Where a whole-image run writes, and what it may replace.

A run is written into a partial folder beside its output (``.<name>.inceptseg-partial``),
with its record, network and finished blocks under ``.inceptseg/``; a rerun of the same
request on the same input resumes it. Only once the labels are complete does the partial
folder become the output: the scratch is removed and the OME-Zarr group gets a
``napari-inceptseg`` record in its attributes, which marks it as this program's. An
existing output is replaced (with ``overwrite``) only when it carries that record, and
only after the new one is complete; nothing else is ever deleted.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..io import check_creatable, current_umask
from .ngff import chunk_region, read_pixels

#: the key of the output group's attributes that marks it as this program's
MARKER = "napari-inceptseg"
#: how many chunks of the input's finest level the fingerprint reads
FINGERPRINT_CHUNKS = 16


@dataclass(frozen=True)
class RunFolder:
    """A run's output and the partial folder it is written in until it is complete."""

    out: Path

    @property
    def partial(self) -> Path:
        """The folder the run writes (the output-to-be)."""
        return self.out.with_name(f".{self.out.name}.inceptseg-partial")

    @property
    def state(self) -> Path:
        """The run's record, network and finished blocks (inside :attr:`partial`)."""
        return self.partial / ".inceptseg"

    @property
    def record(self) -> Path:
        """The run's record: its request, and whether it is complete."""
        return self.state / "run.json"


def check_output(output, inputs, overwrite: bool) -> RunFolder:
    """Before any work: the output may be written. A ValueError names what is wrong: a
    symbolic link, an output that is, holds or lies in an input, an existing output
    without ``overwrite``, or one that this program did not write (never replaced).
    """
    out = Path(output)
    if out.is_symlink():
        raise ValueError(
            f"{out} is a symbolic link: name the folder it points to, or another output"
        )
    where = out.resolve()
    for source in inputs:
        src = Path(source).resolve()
        if where == src or src in where.parents or where in src.parents:
            raise ValueError(
                f"the output {out} is, holds or lies inside the input {source}: "
                "choose an output outside the input"
            )
    if os.path.lexists(out):
        if not overwrite:
            raise ValueError(
                f"{out} exists: choose another output, or pass overwrite=True to replace it"
            )
        if not is_ours(out):
            raise ValueError(
                f"{out} exists and is not an output of napari-inceptseg (no '{MARKER}' record "
                "in its .zattrs), so it is never replaced: choose another output"
            )
    folder = RunFolder(out)
    _check_partial(folder)
    check_creatable(out, "output")
    return folder


def is_ours(out: Path) -> bool:
    """Whether ``out`` is a complete OME-Zarr label image written by this program."""
    if out.is_symlink() or not out.is_dir():
        return False
    attrs = _read_json(out / ".zattrs")
    record = attrs.get(MARKER) if isinstance(attrs, dict) else None
    return isinstance(record, dict) and record.get("complete") is True


def _check_partial(folder: RunFolder) -> None:
    part = folder.partial
    if not os.path.lexists(part):
        return
    if part.is_symlink() or not part.is_dir() or not isinstance(_read_json(folder.record), dict):
        raise ValueError(
            f"{part} is in the way of the run's partial folder and is not one of this "
            "program's: move it, or choose another output"
        )


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def start(folder: RunFolder, request: dict[str, Any]) -> bool:
    """Resume the partial run of the same ``request`` (True), or start one afresh: a
    partial run of another request or of a changed input is discarded, with a warning.
    """
    if folder.partial.exists():
        old = _read_json(folder.record)
        old = old.get("request") if isinstance(old, dict) else None
        if old == request:
            return True
        unchanged = {**request, "fingerprint": None}
        why = (
            "its input has changed since"
            if isinstance(old, dict) and {**old, "fingerprint": None} == unchanged
            else "it was started with other settings"
        )
        warnings.warn(
            f"starting afresh: the unfinished run in {folder.partial} is discarded, because {why}",
            stacklevel=3,
        )
        shutil.rmtree(folder.partial)
    # made whole in a folder of its own, then moved into place: a kill leaves either
    # nothing or a partial folder with its record
    import tempfile

    folder.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.out.name}.", dir=folder.out.parent))
    tmp.chmod(0o777 & ~current_umask())  # a folder of the user's, not mkdtemp's private one
    state = tmp / folder.state.name
    (state / "blocks").mkdir(parents=True)
    (state / folder.record.name).write_text(
        json.dumps({"request": request, "complete": False}, indent=1)
    )
    tmp.rename(folder.partial)
    return False


def publish(folder: RunFolder, summary: dict[str, Any], overwrite: bool) -> Path:
    """Mark the partial folder complete and put it in place of the output (an old
    output of this program's is removed only once the new one is there). Something
    else that took the output's place during the run is left alone: a ValueError says
    so, and the partial folder stays, for a rerun to finish.
    """
    import zarr

    if os.path.lexists(folder.out) and not (overwrite and is_ours(folder.out)):
        raise ValueError(
            f"{folder.out} appeared during the run and is left as it is; the finished run "
            f"waits in {folder.partial}: move {folder.out.name} away and run the same "
            "command again to put it in place"
        )
    request = json.loads(folder.record.read_text())["request"]
    group = zarr.open_group(str(folder.partial), mode="r+", zarr_format=2)
    group.attrs[MARKER] = {"request": request, **summary, "complete": True}
    shutil.rmtree(folder.state)
    old = None
    if os.path.lexists(folder.out):  # ours, and to be replaced (checked above)
        old = folder.out.with_name(f".{folder.out.name}.inceptseg-old-{uuid.uuid4().hex[:12]}")
        folder.out.rename(old)  # (a name nothing else has: only the old output is removed)
    folder.partial.rename(folder.out)
    if old is not None:
        shutil.rmtree(old)
    return folder.out


def discard(folder: RunFolder) -> None:
    """Remove the partial folder (a run whose input was refused leaves nothing)."""
    if folder.partial.is_dir() and not folder.partial.is_symlink():
        shutil.rmtree(folder.partial)


def fingerprint(image) -> str:
    """A digest of the input as it is now: its metadata, the pixels of up to
    :data:`FINGERPRINT_CHUNKS` chunks spread over its finest level, and the sizes and
    times of its files; a resumed run whose input has changed starts afresh.
    """
    array = image.levels[0]
    digest = hashlib.sha256()
    meta = [image.axes, list(array.shape), str(array.dtype), list(array.chunks)]
    digest.update(json.dumps(meta).encode())
    grid = tuple(-(-s // c) for s, c in zip(array.shape, array.chunks, strict=True))
    n = int(np.prod(grid))
    for flat in np.unique(np.linspace(0, n - 1, min(n, FINGERPRINT_CHUNKS)).astype(np.int64)):
        region = chunk_region(array, np.unravel_index(flat, grid))
        digest.update(np.ascontiguousarray(read_pixels(image, array, region)).tobytes())
    digest.update(json.dumps(_tree_stats(Path(image.path))).encode())
    return digest.hexdigest()


def _tree_stats(path: Path) -> list[int]:
    """Files, bytes and the newest modification time under ``path``."""
    files = size = newest = 0
    for root, _, names in os.walk(path):
        for name in names:
            st = os.stat(os.path.join(root, name))
            files, size, newest = files + 1, size + st.st_size, max(newest, st.st_mtime_ns)
    return [files, size, newest]
