"""An ``evaluate`` run's output folder: created once and checked against the run that
wrote it, then its tables appended to as each (image, method) pair is answered.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .region_benchmark import LEVEL_FILE_COLUMNS
from .tables import RESULT_FILES, Appender

#: key of a scored row that holds its rows of the region benchmark (region_levels.csv)
LEVELS_KEY = "_levels"


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


def prepare_output(out: Path, config: dict[str, Any], overwrite: bool) -> None:
    """Create ``out`` for this run; refuse to mix with another run's results."""
    out.mkdir(parents=True, exist_ok=True)
    cfg = out / "config.json"
    ours = [out / f for f in RESULT_FILES if (out / f).exists()]
    if cfg.exists():
        old = json.loads(cfg.read_text())
        same = {k: v for k, v in old.items() if k not in ("methods", "limit")} == {
            k: v for k, v in config.items() if k not in ("methods", "limit")
        }
        if not same and not overwrite:
            raise ValueError(
                f"{out} holds results of a different run (see its config.json); "
                "choose another out=DIR, or overwrite=True to replace them"
            )
    elif ours and not overwrite:
        raise ValueError(
            f"{out} holds result files but no config.json; choose another out=DIR or overwrite=True"
        )
    if overwrite:
        for f in ours:
            f.unlink()
    cfg.write_text(json.dumps(config, indent=2, default=str) + "\n")
