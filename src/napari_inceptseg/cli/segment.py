"""``napari-inceptseg segment``: image files in, label files out. Everything that can be
checked is checked before the first image trains; an interrupted or diverged image
keeps its last good clusters.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

import numpy as np

from ..io import colour_overlay
from .outputs import check_output_folder, check_target, per_image
from .parser import params_from_args


class _Bar:
    """A tqdm progress bar over iterations, tolerant of early stops."""

    def __init__(self, total: int, desc: str, disable: bool):
        from tqdm import tqdm

        self._bar = tqdm(
            total=total,
            desc=desc,
            unit="it",
            leave=True,
            disable=disable,
            file=sys.stderr,
            dynamic_ncols=True,
        )

    def __call__(self, p) -> None:
        if p.part is not None:  # the tile-by-tile final pass
            self._bar.set_postfix_str(f"final pass, tile {p.part[0]}/{p.part[1]}")
            return
        if p.stage != "training":  # the stages after training
            self._bar.set_postfix_str(p.stage)
            return
        self._bar.update(p.iteration - self._bar.n)
        self._bar.set_postfix(clusters=p.n_labels, loss=f"{p.loss:.3f}", refresh=False)

    def stage(self, p) -> None:
        """A record of a whole-image (zarr) run: its stage and how far it is."""
        if getattr(self, "_stage", None) != p.stage:
            self._stage = p.stage
            self._bar.reset(total=p.total)
            self._bar.set_postfix_str(p.stage)
        self._bar.update(p.done - self._bar.n)

    def close(self) -> None:
        self._bar.close()


def run_one(image, params, channel_axis, desc, quiet, **kw):
    """Segment one image with a progress bar (none when ``quiet``); returns the result."""
    from ..engine.workflow.progress import RunInterrupted, run_to_end
    from ..engine.workflow.segment import segment_iter

    bar = _Bar(0 if params.objects else params.total_iter, desc, quiet)
    gen = segment_iter(image, channel_axis=channel_axis, params=params, **kw)
    try:
        return run_to_end(gen, bar)
    except KeyboardInterrupt as exc:
        if isinstance(exc, RunInterrupted):
            raise
        # it landed outside the engine (in the bar): the engine hands over its clusters
        gen.throw(exc)
        raise
    finally:
        bar.close()


def is_zarr(path) -> bool:
    """Whether ``path`` is a zarr store (an OME-Zarr image or a plain zarr array)."""
    path = Path(path)
    return path.is_dir() and any(
        (path / f).exists() for f in (".zattrs", ".zarray", ".zgroup", "zarr.json")
    )


def cmd_segment(args: argparse.Namespace) -> int:
    """``napari-inceptseg segment``: images, folders or an OME-Zarr to label images."""
    from ..engine.workflow.progress import SegmentationError

    if any(is_zarr(name) for name in args.images):
        return cmd_segment_zarr(args)
    params, model, jobs = _segment_setup(args)
    out = Path(args.out)
    failed: list[str] = []
    done = 0
    for i, job in enumerate(jobs, 1):
        try:
            line = _segment_file(job, f"[{i}/{len(args.images)}]", args, params, model)
        except KeyboardInterrupt as stop:  # Ctrl+C or SIGTERM: keep what there is, then stop
            print(_keep_partial(job, stop, "interrupted", args, params), file=sys.stderr)
            print(f"interrupted: {done} of {len(args.images)} image(s) segmented into {out}")
            return 130
        except (ValueError, OSError, SegmentationError) as exc:
            failed.append(str(job.src))
            print(f"error: {job.src}: {exc}", file=sys.stderr)
            if getattr(exc, "labels", None) is not None:  # a diverged run: its last good clusters
                print(_keep_partial(job, exc, "diverged", args, params), file=sys.stderr)
            continue
        done += 1
        print(line, flush=True)
    print(
        f"{done} of {len(args.images)} image(s) segmented into {out}"
        + (f"; {len(failed)} failed" if failed else "")
    )
    return 1 if failed else 0


def cmd_segment_zarr(args: argparse.Namespace) -> int:
    """One OME-Zarr (or zarr) image into an OME-Zarr label image, on a Dask cluster."""
    from ..distributed.run import segment_zarr_iter
    from ..engine.workflow.progress import run_to_end
    from .parser import overrides

    if len(args.images) != 1:
        raise ValueError("segment one zarr image at a time (-o names its OME-Zarr output)")
    if args.model or args.scribbles or args.save_model:
        raise ValueError(
            "--model, --scribbles and --save-model are for image files, not zarr images"
        )
    bar = _Bar(0, f"{Path(args.images[0]).name}", args.quiet)
    gen = segment_zarr_iter(
        args.images[0],
        args.out,
        scheduler=args.scheduler,
        workers=args.workers,
        block=args.block,
        overwrite=args.overwrite,
        preset=args.preset,
        **overrides(args),
    )
    try:
        out = run_to_end(gen, bar.stage)
    finally:
        bar.close()
    print(f"{args.images[0]}: labels in {out} (OME-Zarr, open it in napari with napari-ome-zarr)")
    return 0


def _segment_setup(args: argparse.Namespace):
    """Everything checked once, before the first image trains: (params, model, jobs)."""
    from ..engine.machine.runtime import resolve_device
    from ..engine.workflow.saved import load_model

    params = params_from_args(args)
    resolve_device(params.device)  # fail once, before any image, if absent
    if args.warm_start and not args.model:
        raise ValueError("--warm-start needs --model FILE")
    if params.objects and (args.model or args.save_model or args.scribbles):
        raise ValueError(
            "--objects trains no network and takes no scribbles: leave out --model, "
            "--save-model and --scribbles, or leave out --objects"
        )
    if args.model and args.save_model and not args.warm_start:
        raise ValueError(
            "--save-model with --model saves nothing new: add --warm-start to train from the model"
        )
    model = load_model(args.model) if args.model else None  # a bad file fails here, in one line
    jobs = [_Job(Path(name), Path(args.out), args) for name in args.images]
    check_output_folder(Path(args.out), args.images, [job.targets for job in jobs])
    if args.save_model:  # every network file's place, before the first image trains
        from ..io import check_writable

        for name in args.images:
            target = per_image(args.save_model, Path(name), len(args.images), "--save-model")
            # (an existing file is refused per image, as every output is, unless --overwrite)
            check_writable(target, overwrite=True, what="--save-model file")
    return params, model, jobs


@dataclasses.dataclass
class _Job:
    """One input file of ``segment``: where its outputs go, and how far it got."""

    src: Path
    out: dataclasses.InitVar[Path]
    args: dataclasses.InitVar[argparse.Namespace]
    targets: dict[str, Path] = dataclasses.field(init=False)
    image: np.ndarray | None = None
    writing: bool = False  # its outputs are being written

    def __post_init__(self, out: Path, args: argparse.Namespace) -> None:
        self.targets = {
            "labels": out / f"{self.src.stem}_labels.{args.format}",
            "overlay": out / f"{self.src.stem}_overlay.png",
            "run": out / f"{self.src.stem}_run.json",
        }
        if getattr(args, "objects", None):  # each object's measurements
            self.targets["objects"] = out / f"{self.src.stem}_objects.csv"
        save_to = per_image(args.save_model, self.src, len(args.images), "--save-model")
        if save_to is not None:
            self.targets["model"] = save_to


def _segment_file(job: _Job, counter: str, args, params, model) -> str:
    """Train on (or apply the network to) one file and write its outputs; the summary line."""
    from ..engine.workflow.folders import apply_to_image

    for target in job.targets.values():
        check_target(target, job.targets["run"], args.overwrite)
    job.image = image = _read(job.src)
    if model is not None and not args.warm_start:
        t0 = time.perf_counter()
        labels = apply_to_image(model, image, args.channel_axis, params.device, params.tile_size)
        info = {
            "image": str(job.src),
            "model": str(args.model),
            "applied": True,
            "n_iter": 0,
            "n_labels": int(len(np.unique(labels[labels > 0]))),
            "seconds": round(time.perf_counter() - t0, 3),
            "model_params": model.params.to_dict(),
        }
        summary = (
            f"{info['n_labels']} clusters with {args.model} (no training, {info['seconds']:.1f} s)"
        )
    else:
        scr_path = per_image(args.scribbles, job.src, len(args.images), "--scribbles")
        scribbles = _read(scr_path) if scr_path is not None else None
        result = run_one(
            image,
            params,
            args.channel_axis,
            f"{counter} {job.src.name}",
            args.quiet,
            scribbles=scribbles,
            spacing=args.spacing,
            init_model=model,
        )
        labels = result.labels
        info = {
            "image": str(job.src),
            **result.metadata(),
            **({"scribbles": str(scr_path)} if scr_path is not None else {}),
            **({"warm_start_model": str(args.model)} if model is not None else {}),
        }
        if "model" in job.targets:
            result.save_model(job.targets["model"], overwrite=args.overwrite)
            info["saved_model"] = str(job.targets["model"])
        summary = _summary(result)
    _write_outputs(job, labels, info, args)
    return f"{job.src}: {summary} -> {job.targets['labels']}"


def _summary(result) -> str:
    """One line on a finished image: how many labels of which kind, and how it ran."""
    kind = result.metadata()["labels"]
    if kind == "objects":
        return f"{result.n_labels} objects ({result.seconds:.1f} s)"
    return (
        f"{result.n_labels} {kind} after "
        f"{result.n_iter} iterations ({result.seconds:.1f} s, {result.device}; {result.plan})"
    )


def _read(path: Path) -> np.ndarray:
    from ..io import read_image

    return read_image(path)


def _write_outputs(job: _Job, labels: np.ndarray, info: dict, args) -> None:
    """Labels, overlay, the objects' measurements (with ``--objects``) and run record of one
    image (run.json last: it marks them complete).
    """
    from ..io import write_json, write_labels, write_png

    job.writing = True
    if labels.ndim > 2 and job.targets["labels"].suffix == ".png":  # PNG holds one plane
        job.targets["labels"] = job.targets["labels"].with_suffix(".tif")
        check_target(job.targets["labels"], job.targets["run"], args.overwrite)
    info = {**info, "outputs": [p.name for k, p in job.targets.items() if k != "model"]}
    write_labels(job.targets["labels"], labels, overwrite=args.overwrite)
    write_png(
        job.targets["overlay"],
        colour_overlay(job.image, labels, args.channel_axis),
        overwrite=args.overwrite,
    )
    if "objects" in job.targets:
        from ..objects.features import object_features, write_features_csv

        planes = getattr(args, "dims", None) != "3d"  # a stack's objects, plane by plane
        table = object_features(labels, job.image, args.channel_axis, planes=planes)
        write_features_csv(table, job.targets["objects"], overwrite=args.overwrite)
    write_json(job.targets["run"], info, overwrite=args.overwrite)


def _keep_partial(job: _Job, stop: BaseException, how: str, args, params) -> str:
    """Write the last good clusters of a run that was ``how`` ('interrupted' or 'diverged'),
    with ``how: true`` in its run.json; say what was (or was not) written.
    """
    labels, iteration = getattr(stop, "labels", None), getattr(stop, "iteration", None)
    if job.writing:
        return (
            f"{job.src}: {how} while its outputs were written; they may be incomplete (no "
            f"{job.targets['run'].name})"
        )
    if labels is None or job.image is None:
        return f"{job.src}: {how} before any clusters were ready; nothing was written for it"
    info = {
        "image": str(job.src),
        how: True,
        "n_iter": iteration,
        "n_labels": int(labels.max()),
        "labels": "clusters",
        "params": params.to_dict(),
        **({"error": str(stop)} if how == "diverged" else {}),
    }
    _write_outputs(job, labels, info, args)
    return (
        f"{job.src}: {how}; the clusters of iteration {iteration} were written to "
        f"{job.targets['labels']} ('{how}': true in {job.targets['run'].name})"
    )
