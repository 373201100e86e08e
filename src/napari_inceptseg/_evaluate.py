"""Benchmark evaluation: every method on every image of a dataset, scored under
both protocols, written as a resumable per-image CSV plus a summary.

Files in the output folder:

- ``config.json``  what was run (dataset, engine parameters, scale, seed);
- ``results.csv``  one row per (image, method), appended and flushed as each
  finishes, so an interrupted run loses nothing and resumes where it stopped;
- ``skipped.csv``  images that could not be read or segmented, with the reason;
- ``summary.json`` / ``summary.md``  mean and standard deviation per metric.

No Qt, no napari. Runs sequentially, or over a Dask distributed cluster.
"""

from __future__ import annotations

import csv
import json
import os
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from ._baselines import BASELINES, run_baseline
from ._datasets import Item
from ._metrics import score
from ._params import ARCHITECTURES, PRESETS, SegmentParams, preset_params

#: presets, the papers' networks by name (aliases of their presets), and the baselines
METHODS = tuple(PRESETS) + ARCHITECTURES + BASELINES
PROTOCOLS = ("standard", "paper")
METRICS = ("miou", "accuracy", "accuracy_majority", "nmi", "homogeneity")
#: region scores (connected regions of the prediction; see _metrics.region_scores);
#: for VOI lower is better, so its ``_best`` column is the lowest
REGION_METRICS = ("kim_miou", "covering", "pri", "voi")
BASE_COLUMNS = ("image", "method", "seed", "seconds", "n_iter", "n_clusters", "n_regions", "n_annotators")
#: per row, summed over annotators, so that a summary can pool segments as Kim et al. do
POOL_COLUMNS = ("kim_sum", "kim_segments")
RESULT_FILES = ("config.json", "results.csv", "skipped.csv", "summary.json", "summary.md")


def metric_columns(multi_annotator: bool) -> List[str]:
    cols = [f"{p}_{m}" for p in PROTOCOLS for m in METRICS] + list(REGION_METRICS)
    if multi_annotator:
        cols += [f"{c}_best" for c in cols]
    return cols + list(POOL_COLUMNS)


def method_params(method: str, overrides: Dict[str, Any]) -> SegmentParams:
    """The settings a network method runs with: its preset (``vanilla`` and
    ``inception`` are the paper presets) with the user's ``overrides`` on top."""
    preset = f"paper-{method}" if method in ARCHITECTURES else method
    return preset_params(preset, **overrides)


def image_seed(base: int, name: str) -> int:
    """A per-image seed that does not depend on order or on which worker runs it."""
    return (zlib.crc32(name.encode()) ^ int(base)) % (2**31)


def _resize(array: np.ndarray, shape: Tuple[int, int], labels: bool) -> np.ndarray:
    from skimage.transform import resize

    out_shape = tuple(shape) + array.shape[2:]
    if labels:
        return resize(array, out_shape, order=0, preserve_range=True, anti_aliasing=False).astype(array.dtype)
    out = resize(array, out_shape, order=1, preserve_range=True, anti_aliasing=True)
    return np.round(out).astype(array.dtype) if array.dtype.kind in "iu" else out.astype(array.dtype)


def evaluate_one(item: Item, method: str, overrides: Dict[str, Any], scale: float = 1.0) -> Dict[str, Any]:
    """Segment one image with one method and score it; returns the CSV row.

    ``overrides`` are engine settings applied on top of a network method's preset.
    With ``scale < 1`` a copy downscaled by ``scale`` per side is segmented and
    the labels are upscaled (nearest neighbour) and scored at full resolution.
    """
    image, gts = item.load()
    seed = image_seed(overrides.get("seed") or 0, item.name)
    t0 = time.perf_counter()
    h, w = image.shape[:2]
    work = image
    if scale != 1.0:
        work = _resize(image, (max(8, round(h * scale)), max(8, round(w * scale))), labels=False)
    if method in PRESETS or method in ARCHITECTURES:
        from ._engine import run_to_end, segment_iter

        params = method_params(method, {**overrides, "seed": seed})
        res = run_to_end(segment_iter(work, params=params))
        labels, n_iter = res.labels, res.n_iter
    elif method in BASELINES:
        labels, n_iter = run_baseline(method, work, seed=seed), 0
    else:
        raise ValueError(f"unknown method {method!r}: choose from {', '.join(METHODS)}")
    seconds = time.perf_counter() - t0
    if labels.shape != (h, w):
        labels = _resize(labels, (h, w), labels=True)
    scores = {p: [score(labels, gt, ignore_index=item.ignore_index, protocol=p, regions=p == "standard")
                  for gt in gts] for p in PROTOCOLS}
    regions = scores["standard"]  # region scores leave out the standard protocol's ignored pixels
    row: Dict[str, Any] = {
        "image": item.name, "method": method, "seed": seed, "seconds": round(seconds, 3),
        "n_iter": n_iter, "n_clusters": int(np.unique(labels).size), "n_regions": regions[0]["n_regions"],
        "n_annotators": len(gts),
    }
    for protocol in PROTOCOLS:
        _mean_and_best(row, f"{protocol}_", scores[protocol], METRICS, len(gts) > 1)
    _mean_and_best(row, "", regions, REGION_METRICS, len(gts) > 1)
    for c in POOL_COLUMNS:
        row[c] = float(sum(s[c] for s in regions))
    return row


def _mean_and_best(row: Dict[str, Any], prefix: str, per: List[Dict[str, Any]], metrics, multi: bool) -> None:
    """Each metric's mean over annotators, and with several annotators the best one."""
    for m in metrics:
        vals = [s[m] for s in per]
        row[f"{prefix}{m}"] = float(np.mean(vals))
        if multi:
            row[f"{prefix}{m}_best"] = float(np.min(vals) if m == "voi" else np.max(vals))


def _safe_evaluate_one(item: Item, method: str, params: Dict[str, Any], scale: float, threads: int = 0):
    """``(row, None)`` or ``((image, method), reason)``: bad images never stop a run."""
    if threads:
        import torch

        torch.set_num_threads(threads)
    try:
        return evaluate_one(item, method, params, scale), None
    except (ValueError, OSError) as exc:
        return (item.name, method), str(exc)


def _execute(todo, params, scale, workers, scheduler) -> Iterator[tuple]:
    if not workers and not scheduler:
        for item, method in todo:
            yield _safe_evaluate_one(item, method, params, scale)
        return
    from distributed import Client, LocalCluster, as_completed

    cluster = None
    if scheduler:
        client = Client(scheduler)
        threads = 0
    else:
        cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None)
        client = Client(cluster)
        threads = max(1, (os.cpu_count() or 1) // workers)
    try:
        futures = [client.submit(_safe_evaluate_one, item, m, params, scale, threads, pure=False) for item, m in todo]
        for fut in as_completed(futures):
            yield fut.result()
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


# --- files ---------------------------------------------------------------------------


def _read_rows(path: Path, columns: Sequence[str]) -> List[Dict[str, str]]:
    """Complete rows of a CSV. What a killed run leaves behind is repaired: an empty
    file or a torn header (killed before its first row) becomes an empty table, and a
    torn last line is dropped; the file is rewritten in either case."""
    if not path.exists():
        return []
    raw = path.read_text()
    with open(path, newline="") as fh:
        reader = csv.reader(fh)
        header = next(reader, None)
        rows = [r for r in reader]
    if header is None or (not rows and ",".join(columns).startswith(raw.rstrip("\r\n"))):
        _write_rows(path, columns, [])
        return []
    if header != list(columns):
        raise ValueError(f"{path} was written by another version or configuration ({_column_change(header, columns)}): "
                         "use another output folder, or overwrite it")
    good = [r for r in rows if len(r) == len(columns) and all(x != "" for x in r[:2])]
    if len(good) != len(rows) or (raw and not raw.endswith("\n")):
        _write_rows(path, columns, [dict(zip(columns, r)) for r in good])
    return [dict(zip(columns, r)) for r in good]


def _column_change(found: Sequence[str], expected: Sequence[str]) -> str:
    """Which columns differ, in words."""
    missing = [c for c in expected if c not in found]
    extra = [c for c in found if c not in expected]
    if not missing and not extra:
        return "its columns are in another order"
    parts = ([f"it lacks {', '.join(missing)}"] if missing else []) + ([f"it has {', '.join(extra)} too"] if extra else [])
    return "; ".join(parts)


def _write_rows(path: Path, columns: Sequence[str], rows: Iterable[Dict[str, Any]]) -> None:
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(columns))
        w.writeheader()
        for r in rows:
            w.writerow(r)
    os.replace(tmp, path)


class _Appender:
    """Appends rows to a CSV, flushing each one to disk."""

    def __init__(self, path: Path, columns: Sequence[str]):
        new = not path.exists() or path.stat().st_size == 0
        self._fh = open(path, "a", newline="")
        self._w = csv.DictWriter(self._fh, fieldnames=list(columns))
        if new:  # on disk at once: a run killed before its first row leaves a valid table
            self._w.writeheader()
            self._sync()

    def _sync(self) -> None:
        self._fh.flush()
        os.fsync(self._fh.fileno())

    def write(self, row: Dict[str, Any]) -> None:
        self._w.writerow(row)
        self._sync()

    def close(self) -> None:
        self._fh.close()


@dataclass
class EvaluationReport:
    out: Path
    summary: Dict[str, Any]
    n_done_before: int
    n_new: int
    n_skipped: int


def prepare_output(out: Path, config: Dict[str, Any], overwrite: bool) -> None:
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
                "choose another --out, or pass --overwrite to replace them"
            )
    elif ours and not overwrite:
        raise ValueError(f"{out} holds result files but no config.json; choose another --out or pass --overwrite")
    if overwrite:
        for f in ours:
            f.unlink()
    cfg.write_text(json.dumps(config, indent=2, default=str) + "\n")


def run_evaluation(
    items: Sequence[Item],
    methods: Sequence[str],
    params: Dict[str, Any],
    out,
    *,
    config: Dict[str, Any],
    scale: float = 1.0,
    overwrite: bool = False,
    workers: Optional[int] = None,
    scheduler: Optional[str] = None,
    progress: bool = True,
    log=print,
) -> EvaluationReport:
    """Evaluate ``methods`` on ``items`` into ``out`` (resuming what is there).
    ``params`` are engine settings applied on top of each network method's preset
    (a dict of :class:`SegmentParams` fields; a ``SegmentParams`` is taken whole)."""
    for m in methods:
        if m not in METHODS:
            raise ValueError(f"unknown method {m!r}: choose from {', '.join(METHODS)}")
    if isinstance(params, SegmentParams):
        params = params.to_dict()
    for m in methods:
        if m in PRESETS or m in ARCHITECTURES:
            method_params(m, params)  # a bad setting fails here, before any image
    if not 0 < scale <= 1:
        raise ValueError(f"--scale must be in (0, 1] (0.25 segments a copy a quarter the size per side), got {scale}")
    out = Path(out)
    prepare_output(out, config, overwrite)
    multi = any(i.kind == "mat" for i in items)
    columns = list(BASE_COLUMNS) + metric_columns(multi)
    skip_cols = ["image", "method", "reason"]
    done = {(r["image"], r["method"]) for r in _read_rows(out / "results.csv", columns)}
    skipped = {(r["image"], r["method"]) for r in _read_rows(out / "skipped.csv", skip_cols)}
    todo = [(i, m) for i in items for m in methods if (i.name, m) not in done | skipped]
    n_before = len(items) * len(methods) - len(todo)
    if n_before:
        log(f"resuming: {n_before} of {len(items) * len(methods)} (image, method) pairs already in {out}")

    from tqdm import tqdm

    results = _Appender(out / "results.csv", columns)
    skips = _Appender(out / "skipped.csv", skip_cols)
    bar = tqdm(total=len(items) * len(methods), initial=n_before, unit="run", disable=not progress, dynamic_ncols=True)
    n_new = n_skip = 0
    try:
        for row, error in _execute(todo, params, scale, workers, scheduler):
            if error is None:
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
        bar.close()
        results.close()
        skips.close()
    summary = write_summary(out, config, columns)
    return EvaluationReport(out, summary, n_before, n_new, n_skip)


def write_summary(out: Path, config: Dict[str, Any], columns: Sequence[str]) -> Dict[str, Any]:
    """summary.json and summary.md from results.csv and skipped.csv."""
    rows = _read_rows(out / "results.csv", columns)
    skipped = _read_rows(out / "skipped.csv", ["image", "method", "reason"])
    metric_cols = [c for c in columns if c not in BASE_COLUMNS and c not in POOL_COLUMNS]
    metric_cols += ["seconds", "n_clusters", "n_regions"]
    by_method: Dict[str, Dict[str, Any]] = {}
    for method in dict.fromkeys(r["method"] for r in rows):
        mine = [r for r in rows if r["method"] == method]
        stats: Dict[str, Any] = {}
        for c in metric_cols:
            vals = np.array([float(r[c]) for r in mine])
            stats[c] = {"mean": float(vals.mean()), "std": float(vals.std(ddof=1)) if vals.size > 1 else 0.0}
        segments = sum(float(r["kim_segments"]) for r in mine)
        stats["kim_pooled"] = sum(float(r["kim_sum"]) for r in mine) / segments if segments else 0.0
        by_method[method] = {"n_images": len(mine), **stats}
    summary = {
        "config": config,
        "n_images_scored": len({r["image"] for r in rows}),
        "n_images_skipped": len({r["image"] for r in skipped}),
        "methods": by_method,
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    (out / "summary.md").write_text(summary_markdown(summary) + "\n")
    return summary


_LABELS = {"miou": "mIoU", "accuracy": "accuracy", "accuracy_majority": "many-to-one acc.", "nmi": "NMI",
           "homogeneity": "homogeneity", "kim_miou": "kim mIoU", "covering": "covering", "pri": "PRI",
           "voi": "VOI"}


def _cell(st: Dict[str, Any], key: str) -> str:
    s = st.get(key)
    return f"{s['mean']:.3f} ± {s['std']:.3f}" if s else ""


def _table(summary: Dict[str, Any], title: str, metrics: Sequence[str], suffix: str, extra) -> List[str]:
    """One markdown table: a row per method, ``metrics`` (+ ``suffix``) then ``extra``
    columns, each ``(heading, function of the method's stats)``."""
    head = ["method", "images"] + [_LABELS[m.split("_", 1)[1] if m.startswith(PROTOCOLS) else m] for m in metrics]
    head += [h for h, _ in extra]
    lines = ["", f"**{title}** (mean ± std over images)", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for method, st in summary["methods"].items():
        cells = [method, str(st["n_images"])] + [_cell(st, m + suffix) for m in metrics]
        cells += [fn(st) for _, fn in extra]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def summary_markdown(summary: Dict[str, Any]) -> str:
    cfg = summary["config"]
    lines = [f"Dataset `{cfg.get('dataset')}` ({cfg.get('split', '')}), {summary['n_images_scored']} images scored, "
             f"{summary['n_images_skipped']} skipped; scale {cfg.get('scale')}, settings on top of each "
             f"method's preset: {json.dumps(cfg.get('params', {}))}."]
    multi = any(k.endswith("_best") for m in summary["methods"].values() for k in m)
    per_image = [("clusters / image", lambda st: f"{st['n_clusters']['mean']:.1f}"),
                 ("s / image", lambda st: f"{st['seconds']['mean']:.2f}")]
    for protocol in PROTOCOLS:
        for best in ((False, True) if multi else (False,)):
            title = f"{protocol} protocol" + (", best annotator per image" if best else (", mean over annotators" if multi else ""))
            lines += _table(summary, title, [f"{protocol}_{m}" for m in METRICS], "_best" if best else "", per_image)
    region_extra = [("kim mIoU, pooled", lambda st: f"{st['kim_pooled']:.3f}"),
                    ("regions / image", lambda st: f"{st['n_regions']['mean']:.1f}")] + per_image
    title = "region scores (connected regions of the prediction)" + (", mean over annotators" if multi else "")
    lines += _table(summary, title, REGION_METRICS, "", region_extra)
    if multi:
        lines += _table(summary, "region scores, best annotator per image (VOI: lowest)", REGION_METRICS, "_best", [])
    return "\n".join(lines)
