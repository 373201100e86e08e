"""An ``evaluate`` run's output folder: created once and checked against the run that
wrote it, then its tables appended to as each (image, method) pair is answered.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..io import atomic_write, check_creatable
from .region_benchmark import LEVEL_FILE_COLUMNS
from .tables import RESULT_FILES, Appender

#: key of a scored row that holds its rows of the region benchmark (region_levels.csv)
LEVELS_KEY = "_levels"


#: the file that :func:`locked` holds while a run writes into its folder
LOCK_FILE = ".evaluate.lock"

#: the columns of skipped.csv
SKIP_COLUMNS = ("image", "method", "reason")


def record_answers(answers, out: Path, columns, bar, log) -> tuple[int, int]:
    """Write each answer as it comes: a scored row (its region benchmark rows first, then
    the row that marks the pair done) or a skipped pair. Returns ``(n_new, n_skipped)``.
    """
    results = Appender(out / "results.csv", columns)
    skips = Appender(out / "skipped.csv", SKIP_COLUMNS)
    levels = Appender(out / "region_levels.csv", LEVEL_FILE_COLUMNS)
    n_new = n_skip = 0
    try:
        for row, error in answers:
            if error is None:
                for level_row in row.pop(LEVELS_KEY):
                    levels.write(level_row, sync=False)
                results.write(row)
                n_new += 1
                bar.set_postfix(last=f"{row['image']}/{row['method']}", refresh=False)
            else:
                (name, method) = row
                skips.write({"image": name, "method": method, "reason": error})
                n_skip += 1
                log(f"skipped {name} ({method}): {error}")
            bar.update(1)
    finally:
        for f in (results, skips, levels):
            f.close()
    return n_new, n_skip


def check_output_folder(out: Path) -> None:
    """Before any work: ``out`` is a folder (or can become one) that takes files."""
    if out.is_symlink() and not out.is_dir():
        raise ValueError(f"out={out} is a broken symbolic link: choose another out=DIR")
    if out.exists() and not out.is_dir():
        raise ValueError(f"out={out} is a file, not a folder: choose another out=DIR")
    check_creatable(out / "results.csv", "results")


@contextlib.contextmanager
def locked(out: Path) -> Iterator[None]:
    """Hold ``out`` for one run at a time: a second run on the same folder is refused
    while the first holds it (the lock goes with the process that holds it).
    """
    from filelock import FileLock, Timeout

    out.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(out / LOCK_FILE), timeout=0)
    try:
        lock.acquire()
    except Timeout:
        raise ValueError(
            f"another evaluate run is writing into {out}: wait for it to end, or choose "
            "another out=DIR"
        ) from None
    try:
        yield
    finally:
        lock.release()


def prepare_output(out: Path, config: dict[str, Any], overwrite: bool) -> None:
    """Ready ``out`` for this run (it is :func:`locked`); refuse to mix with another
    run's results, and replace (with ``overwrite``) only the result files of a run
    whose config.json says it was one of this program's.
    """
    cfg = out / "config.json"
    links = [f for f in RESULT_FILES if (out / f).is_symlink()]
    if links:
        raise ValueError(
            f"{out / links[0]} is a symbolic link, not a result file of this program's: "
            "choose another out=DIR"
        )
    ours = [out / f for f in RESULT_FILES if (out / f).exists()]
    if cfg.exists():
        old = _read_config(cfg)
        same = {k: v for k, v in old.items() if k not in ("methods", "limit")} == {
            k: v for k, v in config.items() if k not in ("methods", "limit")
        }
        if not same and not overwrite:
            raise ValueError(
                f"{out} holds results of a different run (see its config.json); "
                "choose another out=DIR, or overwrite=True to replace them"
            )
    elif ours:
        raise ValueError(
            f"{out} holds result files but no config.json, so they may not be this "
            "program's and are never replaced: choose another out=DIR"
        )
    if overwrite and cfg.exists():
        for f in ours:
            f.unlink()
    atomic_write(
        cfg,
        lambda p: Path(p).write_text(json.dumps(config, indent=2, default=str) + "\n"),
        overwrite=True,
    )


def _read_config(cfg: Path) -> dict[str, Any]:
    """An earlier run's config.json, or a ValueError that names it and says what to do."""
    try:
        old = json.loads(cfg.read_text())
    except (OSError, ValueError) as exc:
        raise ValueError(
            f"{cfg} cannot be read ({type(exc).__name__}: {exc}); a run killed while "
            "writing it leaves it empty: delete it if the folder is yours, or choose "
            "another out=DIR"
        ) from None
    if not isinstance(old, dict) or "dataset" not in old:
        raise ValueError(f"{cfg} is not the config.json of an evaluate run: choose another out=DIR")
    return old
