"""The evaluation's tables: the columns of results.csv, reading and appending rows so
that a killed run can resume, and the summary (summary.json, summary.md).
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..io import atomic_write
from .region_benchmark import LEVEL_FILE_COLUMNS, summarise_levels

PROTOCOLS = ("standard", "paper")
METRICS = ("miou", "accuracy", "accuracy_majority", "nmi", "homogeneity")
#: region scores (connected regions of the prediction; see _metrics.region_scores);
#: for VOI lower is better, so its ``_best`` column is the lowest
REGION_METRICS = ("kim_miou", "covering", "pri", "voi")
BASE_COLUMNS = (
    "image",
    "method",
    "seed",
    "seconds",
    "n_iter",
    "n_clusters",
    "n_regions",
    "n_annotators",
)
#: per row, summed over annotators, so that a summary can pool segments as Kim et al. do
POOL_COLUMNS = ("kim_sum", "kim_segments")
#: object scores against instance ground truth (scoring.objects.instance_scores; DSB2018)
#: object scores: F1, precision, recall and matched IoU of instance_scores, then the
#: DSB2018 metric of dsb_scores (mAP over IoU .5:.95, F1 at .5, F1 averaged)
INSTANCE_METRICS = ("f1", "precision", "recall", "matched_iou", "map", "f1_50", "f1_avg")
RESULT_FILES = (
    "config.json",
    "results.csv",
    "skipped.csv",
    "region_levels.csv",
    "summary.json",
    "summary.md",
)


def metric_columns(multi_annotator: bool, instances: bool = False) -> list[str]:
    """The score columns of a results table, in order."""
    cols = [f"{p}_{m}" for p in PROTOCOLS for m in METRICS] + list(REGION_METRICS)
    if multi_annotator:
        cols += [f"{c}_best" for c in cols]
    return cols + list(POOL_COLUMNS) + (list(INSTANCE_METRICS) if instances else [])


def read_rows(path: Path, columns: Sequence[str]) -> list[dict[str, str]]:
    """Complete rows of a CSV. What a killed run leaves behind is repaired: an empty
    file or a torn header (killed before its first row) becomes an empty table, and a
    torn last line (or a row with empty cells) is dropped, to be done again, and a row
    about the same image, method (and level) as an earlier one is dropped (two runs that
    wrote into one folder); the file is rewritten in each case.
    """
    if not path.exists():
        return []
    raw = path.read_text()
    with open(path, newline="") as fh:
        reader = csv.reader(fh)
        header = next(reader, None)
        rows = [r for r in reader]
    if header is None or (not rows and ",".join(columns).startswith(raw.rstrip("\r\n"))):
        write_rows(path, columns, [])
        return []
    if header != list(columns):
        raise ValueError(
            f"{path} was written by another version or configuration "
            f"({_column_change(header, columns)}): "
            "use another output folder, or overwrite it"
        )
    complete = [r for r in rows if len(r) == len(columns) and all(x != "" for x in r)]
    good = _first_of_each(columns, complete)
    if len(good) != len(rows) or (raw and not raw.endswith("\n")):
        write_rows(path, columns, [dict(zip(columns, r, strict=False)) for r in good])
    return [dict(zip(columns, r, strict=False)) for r in good]


#: the columns that name what a row is about; a table holds one row for each
ROW_KEY = ("image", "method", "level")


def _first_of_each(columns: Sequence[str], rows: list[list[str]]) -> list[list[str]]:
    """The first row about each image, method (and level), in order."""
    where = [list(columns).index(c) for c in ROW_KEY if c in columns]
    seen: set[tuple[str, ...]] = set()
    out = []
    for row in rows:
        key = tuple(row[i] for i in where)
        if key not in seen:
            seen.add(key)
            out.append(row)
    return out


def _column_change(found: Sequence[str], expected: Sequence[str]) -> str:
    """Which columns differ, in words."""
    missing = [c for c in expected if c not in found]
    extra = [c for c in found if c not in expected]
    if not missing and not extra:
        return "its columns are in another order"
    parts = ([f"it lacks {', '.join(missing)}"] if missing else []) + (
        [f"it has {', '.join(extra)} too"] if extra else []
    )
    return "; ".join(parts)


def write_rows(path: Path, columns: Sequence[str], rows: Iterable[dict[str, Any]]) -> None:
    """Write ``rows`` to a new CSV table at ``path`` with these columns."""

    def write(tmp) -> None:
        with open(tmp, "w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=list(columns))
            w.writeheader()
            w.writerows(rows)

    atomic_write(path, write, overwrite=True)


class Appender:
    """Appends rows to a CSV, flushing each one to disk."""

    def __init__(self, path: Path, columns: Sequence[str]):
        new = not path.exists() or path.stat().st_size == 0
        self._fh = open(path, "a", newline="")  # noqa: SIM115 (closed by close())
        # (score rows carry every column; a table without best-annotator columns drops those)
        self._w = csv.DictWriter(self._fh, fieldnames=list(columns), extrasaction="ignore")
        if new:  # on disk at once: a run killed before its first row leaves a valid table
            self._w.writeheader()
            self._sync()

    def _sync(self) -> None:
        self._fh.flush()
        os.fsync(self._fh.fileno())

    def write(self, row: dict[str, Any], sync: bool = True) -> None:
        """Append one row (flushed to disk at once when ``sync``)."""
        self._w.writerow(row)
        if sync:
            self._sync()

    def close(self) -> None:
        """Close the table's file."""
        self._fh.close()


def write_summary(out: Path, config: dict[str, Any], columns: Sequence[str]) -> dict[str, Any]:
    """summary.json and summary.md from results.csv and skipped.csv."""
    rows = read_rows(out / "results.csv", columns)
    skipped = read_rows(out / "skipped.csv", ["image", "method", "reason"])
    metric_cols = [c for c in columns if c not in BASE_COLUMNS and c not in POOL_COLUMNS]
    metric_cols += ["seconds", "n_clusters", "n_regions"]
    by_method: dict[str, dict[str, Any]] = {}
    for method in dict.fromkeys(r["method"] for r in rows):
        mine = [r for r in rows if r["method"] == method]
        stats: dict[str, Any] = {}
        for c in metric_cols:
            stats[c] = _stats(np.array([float(r[c]) for r in mine]))
        segments = sum(float(r["kim_segments"]) for r in mine)
        stats["kim_pooled"] = sum(float(r["kim_sum"]) for r in mine) / segments if segments else 0.0
        by_method[method] = {"n_images": len(mine), **stats}
    summary = {
        "config": config,
        "n_images_scored": len({r["image"] for r in rows}),
        "n_images_skipped": len({r["image"] for r in skipped}),
        "methods": by_method,
        "region_benchmark": _region_benchmark(out, {(r["image"], r["method"]) for r in rows}),
    }

    for name, text in (
        ("summary.json", json.dumps(summary, indent=2)),
        ("summary.md", summary_markdown(summary)),
    ):
        atomic_write(out / name, lambda p, t=text: Path(p).write_text(t + "\n"), overwrite=True)
    return summary


def _region_benchmark(out: Path, done) -> dict[str, Any]:
    """The BSDS region benchmark of every method, from region_levels.csv (rows of pairs
    that a killed run left without their results row are left out: they are done again).
    """
    rows = read_rows(out / "region_levels.csv", LEVEL_FILE_COLUMNS)
    return summarise_levels([r for r in rows if (r["image"], r["method"]) in done])


def _stats(values: np.ndarray) -> dict[str, Any]:
    """Mean and standard deviation over images; undefined scores (NaN: an image whose
    ground truth has no object has no object scores) are left out and counted.
    """
    defined = values[np.isfinite(values)]
    out: dict[str, Any] = {
        "mean": float(defined.mean()) if defined.size else float("nan"),
        "std": float(defined.std(ddof=1)) if defined.size > 1 else 0.0,
    }
    if defined.size < values.size:
        out["n_undefined"] = int(values.size - defined.size)
    return out


_LABELS = {
    "miou": "mIoU",
    "accuracy": "accuracy",
    "accuracy_majority": "many-to-one acc.",
    "nmi": "NMI",
    "homogeneity": "homogeneity",
    "kim_miou": "kim mIoU",
    "covering": "covering",
    "pri": "PRI",
    "voi": "VOI",
    "f1": "F1 at IoU 0.5",
    "precision": "precision",
    "recall": "recall",
    "matched_iou": "matched IoU",
    "map": "DSB mAP",
    "f1_50": "DSB F1 @ .5",
    "f1_avg": "DSB F1 avg",
}


def _cell(st: dict[str, Any], key: str) -> str:
    s = st.get(key)
    if not s:
        return ""
    undefined = f" ({s['n_undefined']} undefined)" if s.get("n_undefined") else ""
    return f"{s['mean']:.3f} ± {s['std']:.3f}{undefined}"


def _table(
    summary: dict[str, Any], title: str, metrics: Sequence[str], suffix: str, extra
) -> list[str]:
    """One markdown table: a row per method, ``metrics`` (+ ``suffix``) then ``extra``
    columns, each ``(heading, function of the method's stats)``.
    """
    head = ["method", "images"] + [
        _LABELS[m.split("_", 1)[1] if m.startswith(PROTOCOLS) else m] for m in metrics
    ]
    head += [h for h, _ in extra]
    lines = [
        "",
        f"**{title}** (mean ± std over images)",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
    ]
    for method, st in summary["methods"].items():
        cells = [method, str(st["n_images"])] + [_cell(st, m + suffix) for m in metrics]
        cells += [fn(st) for _, fn in extra]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def summary_markdown(summary: dict[str, Any]) -> str:
    """The summary of an ``evaluate`` run as a Markdown table."""
    cfg = summary["config"]
    lines = [
        f"Dataset `{cfg.get('dataset')}` ({cfg.get('split', '')}), "
        f"{summary['n_images_scored']} images scored, "
        f"{summary['n_images_skipped']} skipped; scale {cfg.get('scale')}, settings on top of each "
        f"method's preset: {json.dumps(cfg.get('params', {}))}."
    ]
    multi = any(k.endswith("_best") for m in summary["methods"].values() for k in m)
    per_image = [
        ("clusters / image", lambda st: f"{st['n_clusters']['mean']:.1f}"),
        ("s / image", lambda st: f"{st['seconds']['mean']:.2f}"),
    ]
    for protocol in PROTOCOLS:
        for best in (False, True) if multi else (False,):
            title = f"{protocol} protocol" + (
                ", best annotator per image"
                if best
                else (", mean over annotators" if multi else "")
            )
            lines += _table(
                summary,
                title,
                [f"{protocol}_{m}" for m in METRICS],
                "_best" if best else "",
                per_image,
            )
    region_extra = [
        ("kim mIoU, pooled", lambda st: f"{st['kim_pooled']:.3f}"),
        ("regions / image", lambda st: f"{st['n_regions']['mean']:.1f}"),
    ] + per_image
    title = "region scores (connected regions of the prediction)" + (
        ", mean over annotators" if multi else ""
    )
    lines += _table(summary, title, REGION_METRICS, "", region_extra)
    if multi:
        lines += _table(
            summary,
            "region scores, best annotator per image (VOI: lowest)",
            REGION_METRICS,
            "_best",
            [],
        )
    if any("f1" in m for m in summary["methods"].values()):
        lines += _table(
            summary,
            "objects: F1 to matched IoU of connected pieces (those mostly on the background "
            "ignored), matched at IoU >= 0.5; DSB: label 0 (or the border's label) the "
            "background, matched at IoU > .50 .. .95",
            INSTANCE_METRICS,
            "",
            per_image,
        )
    return "\n".join(lines + _region_benchmark_table(summary.get("region_benchmark", {})))


def _region_benchmark_table(bench: dict[str, dict[str, float]]) -> list[str]:
    """The BSDS region benchmark: ODS / OIS over each method's levels, and its own labels."""
    if not bench:
        return []
    lines = [
        "",
        "**region benchmark** (BSDS500's: covering pooled over every annotator's segments, "
        "PRI and VoI in bits averaged over annotators; ODS: one level for the set, OIS: each "
        "image's best; the labels themselves: ODS = OIS)",
        "",
        "| method | covering ODS / OIS | PRI ODS / OIS | VoI ODS / OIS | its labels: "
        "covering / PRI / VoI "
        "| ODS level (median regions) |",
        "|---|---|---|---|---|---|",
    ]
    for method, b in bench.items():
        graded = "covering_ois" in b
        cells = [
            f"{b[f'{m}_ods']:.3f} / {b[f'{m}_ois']:.3f}" if graded else ""
            for m in ("covering", "pri", "voi")
        ]
        own = (
            " / ".join(f"{b[f'cut_{m}_ods']:.3f}" for m in ("covering", "pri", "voi"))
            if "cut_covering_ods" in b
            else ""
        )
        where = f"{b['ods_value']:g} ({b['ods_median_regions']:.0f})" if graded else ""
        lines.append(f"| {method} | " + " | ".join(cells) + f" | {own} | {where} |")
    return lines
