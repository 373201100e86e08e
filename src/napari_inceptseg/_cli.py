"""Command line: ``napari-inceptseg segment`` and ``napari-inceptseg demo``."""

from __future__ import annotations

import argparse
import dataclasses
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np

from ._params import SegmentParams

OUTPUT_SUFFIXES = ("_labels", "_overlay")


def _add_engine_options(parser: argparse.ArgumentParser, skip=(), preset: bool = True) -> None:
    """``--preset`` and one option per :class:`SegmentParams` field, with its help.
    Options left out keep the preset's value (so their argparse default is None)."""
    from ._params import PRESETS

    group = parser.add_argument_group(
        "method and engine options",
        "--preset picks the method; any option below overrides that one setting "
        "(defaults shown are the default method's)",
    )
    if preset:
        group.add_argument("--preset", choices=tuple(PRESETS), default="default",
                           help="'default': a short training on a downscaled copy, then connected regions "
                           "(seconds on a CPU); 'paper-vanilla' / 'paper-inception': the papers' exact "
                           "settings (default: %(default)s)")
    for f in dataclasses.fields(SegmentParams):
        if f.name in skip:
            continue
        flag = "--" + f.name.replace("_", "-")
        kw = {"default": None, "help": f"{f.metadata['help']} (default: {f.default})"}
        if str(f.type) == "bool":
            kw["action"] = argparse.BooleanOptionalAction
        else:
            kind = {"int": int, "float": float}.get(str(f.type), None)
            if f.name == "seed":
                kind = int
            if "choices" in f.metadata:
                kw["choices"] = f.metadata["choices"]
            if kind is not None:
                kw["type"] = kind
        group.add_argument(flag, dest=f.name, **kw)
    group.add_argument(
        "--channel-axis", type=int, default=None,
        help="Axis holding the channels of multichannel (non-RGB) images, e.g. 0 for "
        "(C, Y, X) TIFFs. RGB/RGBA and grayscale are detected. (default: %(default)s)",
    )


def _overrides(args: argparse.Namespace) -> dict:
    """The engine options given on the command line (the rest come from the preset)."""
    return {f.name: getattr(args, f.name) for f in dataclasses.fields(SegmentParams)
            if getattr(args, f.name, None) is not None}


def _params_from_args(args: argparse.Namespace) -> SegmentParams:
    from ._params import preset_params

    return preset_params(args.preset, **_overrides(args))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="napari-inceptseg",
        description="Unsupervised image segmentation by differentiable feature clustering "
        "(Kim et al. 2020; Inception backbone of Azad & Hamid 2025).",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    seg = sub.add_parser(
        "segment",
        help="segment image files",
        description="Segment each IMAGE and write, per image, OUTDIR/<name>_labels.<format> "
        "(cluster ids 1..K), OUTDIR/<name>_overlay.png and OUTDIR/<name>_run.json "
        "(parameters, iterations, loss, time).",
    )
    seg.add_argument("images", nargs="+", metavar="IMAGE", help="image files (PNG, JPEG, TIFF, ...)")
    seg.add_argument("-o", "--out", required=True, metavar="OUTDIR", help="output folder (created)")
    seg.add_argument("--format", choices=("png", "tif"), default="png", help="labels file format, 16-bit PNG or TIFF (default: %(default)s)")
    seg.add_argument("--overwrite", action="store_true", help="replace existing outputs (never done otherwise)")
    seg.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    reuse = seg.add_argument_group("guidance and reuse")
    reuse.add_argument("--scribbles", metavar="PATH", help="a label image of the image's size (0 = unlabelled, "
                       "ids 1..S) whose strokes guide the clustering; with several images, put {name} in PATH "
                       "for each image's file stem")
    reuse.add_argument("--model", metavar="FILE", help="a model saved with --save-model: label the images with it "
                       "and no training (stacks plane by plane, ids consistent across images)")
    reuse.add_argument("--warm-start", action="store_true", help="with --model: train starting from it "
                       "(its architecture and normalisation) instead of only applying it")
    reuse.add_argument("--save-model", metavar="FILE", help="save the trained network (.safetensors); with several "
                       "images, put {name} in FILE")
    reuse.add_argument("--spacing", type=float, nargs="+", metavar="S", help="pixel/voxel spacing per spatial axis "
                       "(e.g. --spacing 4 1 1 for Z steps 4x the XY pixel size): weights the continuity loss")
    _add_engine_options(seg)

    ev = sub.add_parser(
        "evaluate",
        help="score methods on a benchmark dataset",
        description="Segment every image of a dataset with each --method and score it against the "
        "ground truth under the standard and the paper protocol (docs/benchmarks.md). Writes "
        "OUTDIR/results.csv (one row per image and method, resumable), skipped.csv, and "
        "summary.md/summary.json (mean and std per metric). Data is read where it lies.",
    )
    from ._datasets import DATASETS
    from ._evaluate import METHODS

    ev.add_argument("--dataset", required=True, choices=DATASETS, help="dataset layout")
    ev.add_argument("--root", help="dataset folder (bsds500, voc, cocostuff, camvid)")
    ev.add_argument("--split", default="val", help="split name (val, test, train...)")
    ev.add_argument("--images", help="--dataset folder: folder of images")
    ev.add_argument("--labels", help="--dataset folder: folder of label maps with the same file stems")
    ev.add_argument("--ignore-index", type=int, default=None, help="ground-truth value to ignore (folder; overrides the dataset's)")
    ev.add_argument("--limit", type=int, default=None, help="only the first N images (in sorted order)")
    ev.add_argument("--method", nargs="+", default=["default"], choices=METHODS,
                    help="methods to run: presets, 'vanilla'/'inception' (the paper presets' networks) "
                    "and the classical baselines (default: %(default)s)")
    ev.add_argument("--scale", type=float, default=1.0, help="segment a copy downscaled by this factor per side (e.g. 0.25), score at full resolution")
    ev.add_argument("-o", "--out", required=True, metavar="OUTDIR", help="results folder; an interrupted run resumes there")
    ev.add_argument("--overwrite", action="store_true", help="replace another run's results in OUTDIR")
    ev.add_argument("--workers", type=int, default=None, help="run on a local Dask cluster of N worker processes")
    ev.add_argument("--scheduler", default=None, metavar="ADDRESS", help="run on a Dask distributed cluster (e.g. tcp://host:8786)")
    ev.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    _add_engine_options(ev, skip=("arch",), preset=False)
    ev.set_defaults(seed=0)

    demo = sub.add_parser(
        "demo",
        help="segment the bundled samples; open napari when a display exists",
        description="Segment the bundled synthetic sample (which has ground truth) and a "
        "natural photo, write the outputs, print the scores, and open napari with the "
        "results and the plugin when a display is available.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    from ._params import PRESETS

    demo.add_argument("--preset", choices=tuple(PRESETS), default="default", help="method")
    demo.add_argument("-o", "--out", default="inceptseg-demo", metavar="OUTDIR", help="output folder; each run writes a new subfolder")
    demo.add_argument("--headless", action="store_true", help="never open napari, even with a display")
    demo.add_argument("--max-iter", type=int, default=None, help="iterations per image (default: the preset's)")
    demo.add_argument("--device", default="auto", help="'auto', 'cpu', 'cuda', 'mps'")
    demo.add_argument("--seed", type=int, default=0, help="random seed")
    return parser


class _Bar:
    """A tqdm progress bar over iterations, tolerant of early stops."""

    def __init__(self, total: int, desc: str, disable: bool):
        from tqdm import tqdm

        self._bar = tqdm(total=total, desc=desc, unit="it", leave=True, disable=disable, file=sys.stderr, dynamic_ncols=True)

    def __call__(self, p) -> None:
        if p.part is not None:  # the tile-by-tile final pass
            self._bar.set_postfix_str(f"final pass, tile {p.part[0]}/{p.part[1]}")
            return
        self._bar.update(p.iteration - self._bar.n)
        self._bar.set_postfix(clusters=p.n_labels, loss=f"{p.loss:.3f}", refresh=False)

    def close(self) -> None:
        self._bar.close()


def _run_one(image, params, channel_axis, desc, quiet, **kw):
    from ._engine import RunInterrupted, run_to_end, segment_iter

    bar = _Bar(params.total_iter, desc, quiet)
    gen = segment_iter(image, channel_axis=channel_axis, params=params, **kw)
    try:
        return run_to_end(gen, bar)
    except KeyboardInterrupt as exc:
        if isinstance(exc, RunInterrupted):
            raise
        gen.throw(exc)  # it landed outside the engine (in the bar): the engine hands over its clusters
        raise
    finally:
        bar.close()


def _per_image(template: Optional[str], src: Path, n_images: int, option: str) -> Optional[Path]:
    if template is None:
        return None
    if n_images > 1 and "{name}" not in template:
        raise ValueError(f"{option} with {n_images} images needs {{name}} in the path (the image's file stem)")
    return Path(template.replace("{name}", src.stem))


def _overlay(image, labels, channel_axis):
    """The overlay PNG: for a volume, its middle Z slice."""
    from ._io import colour_overlay

    image = np.asarray(image)
    if labels.ndim == 3:
        ca = None if channel_axis is None else channel_axis % image.ndim
        z_axis = 1 if ca == 0 else 0
        z = labels.shape[0] // 2
        plane = np.take(image, z, axis=z_axis)
        return colour_overlay(plane, labels[z], None if ca is None else (ca if ca < z_axis else ca - 1))
    return colour_overlay(image, labels, channel_axis)


def _check_output_folder(out: Path, images: List[str]) -> None:
    """Before the first image trains: ``out`` is (or becomes) a writable folder, and no
    two inputs would write the same output files."""
    import tempfile

    if out.exists() and not out.is_dir():
        raise ValueError(f"-o {out} is a file, not a folder: name a folder for the outputs")
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out):
            pass
    except OSError as exc:
        raise ValueError(f"cannot write to the output folder {out} ({exc.strerror or exc}): choose another -o") from None
    stems: Dict[str, str] = {}
    for name in images:
        stem = Path(name).stem
        if stem in stems:
            raise ValueError(f"{stems[stem]} and {name} would write the same outputs ({stem}_labels...): "
                             "rename one, or segment them into different folders")
        stems[stem] = name


def cmd_segment(args: argparse.Namespace) -> int:
    from ._engine import SegmentationError

    params, model, out = _segment_setup(args)
    failed: List[str] = []
    done = 0
    for i, name in enumerate(args.images, 1):
        job = _Job(Path(name), out, args)
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
    print(f"{done} of {len(args.images)} image(s) segmented into {out}" + (f"; {len(failed)} failed" if failed else ""))
    return 1 if failed else 0


def _segment_setup(args: argparse.Namespace):
    """Everything checked once, before the first image trains: (params, model, out)."""
    from ._engine import resolve_device
    from ._model_io import load_model

    params = _params_from_args(args)
    resolve_device(params.device)  # fail once, before any image, if absent
    if args.warm_start and not args.model:
        raise ValueError("--warm-start needs --model FILE")
    if args.model and args.save_model and not args.warm_start:
        raise ValueError("--save-model with --model saves nothing new: add --warm-start to train from the model")
    model = load_model(args.model) if args.model else None  # a bad file fails here, in one line
    if args.save_model:
        _per_image(args.save_model, Path(args.images[0]), len(args.images), "--save-model")
    out = Path(args.out)
    _check_output_folder(out, args.images)
    return params, model, out


@dataclasses.dataclass
class _Job:
    """One input file of ``segment``: where its outputs go, and how far it got."""

    src: Path
    out: dataclasses.InitVar[Path]
    args: dataclasses.InitVar[argparse.Namespace]
    targets: Dict[str, Path] = dataclasses.field(init=False)
    image: Optional[np.ndarray] = None
    writing: bool = False  # its outputs are being written

    def __post_init__(self, out: Path, args: argparse.Namespace) -> None:
        self.targets = {"labels": out / f"{self.src.stem}_labels.{args.format}",
                        "overlay": out / f"{self.src.stem}_overlay.png",
                        "run": out / f"{self.src.stem}_run.json"}
        save_to = _per_image(args.save_model, self.src, len(args.images), "--save-model")
        if save_to is not None:
            self.targets["model"] = save_to


def _segment_file(job: _Job, counter: str, args, params, model) -> str:
    """Train on (or apply the network to) one file and write its outputs; the summary line."""
    from ._folders import apply_to_image

    existing = [str(p) for p in job.targets.values() if p.exists()]
    if existing and not args.overwrite:
        raise FileExistsError(f"output exists ({', '.join(existing)}); pass --overwrite to replace it")
    job.image = image = _read(job.src)
    if model is not None and not args.warm_start:
        t0 = time.perf_counter()
        labels = apply_to_image(model, image, args.channel_axis, params.device, params.tile_size)
        info = {"image": str(job.src), "model": str(args.model), "applied": True, "n_iter": 0,
                "n_labels": int(len(np.unique(labels[labels > 0]))),
                "seconds": round(time.perf_counter() - t0, 3), "model_params": model.params.to_dict()}
        summary = f"{info['n_labels']} clusters with {args.model} (no training, {info['seconds']:.1f} s)"
    else:
        scr_path = _per_image(args.scribbles, job.src, len(args.images), "--scribbles")
        scribbles = _read(scr_path) if scr_path is not None else None
        result = _run_one(image, params, args.channel_axis, f"{counter} {job.src.name}", args.quiet,
                          scribbles=scribbles, spacing=args.spacing, init_model=model)
        labels = result.labels
        info = {"image": str(job.src), **result.metadata(),
                **({"scribbles": str(scr_path)} if scr_path is not None else {}),
                **({"warm_start_model": str(args.model)} if model is not None else {})}
        if "model" in job.targets:
            result.save_model(job.targets["model"], overwrite=args.overwrite)
            info["saved_model"] = str(job.targets["model"])
        summary = (f"{result.n_labels} {'regions' if result.regions else 'clusters'} after "
                   f"{result.n_iter} iterations ({result.seconds:.1f} s, {result.device}; {result.plan})")
    _write_outputs(job, labels, info, args)
    return f"{job.src}: {summary} -> {job.targets['labels']}"


def _read(path: Path) -> np.ndarray:
    from ._io import read_image

    return read_image(path)


def _write_outputs(job: _Job, labels: np.ndarray, info: dict, args) -> None:
    """Labels, overlay and run record of one image (run.json last: it marks them complete)."""
    from ._io import write_json, write_labels, write_png

    job.writing = True
    if labels.ndim > 2 and job.targets["labels"].suffix == ".png":  # PNG holds one plane
        job.targets["labels"] = job.targets["labels"].with_suffix(".tif")
        if job.targets["labels"].exists() and not args.overwrite:
            raise FileExistsError(f"output exists ({job.targets['labels']}); pass --overwrite to replace it")
    write_labels(job.targets["labels"], labels, overwrite=args.overwrite)
    write_png(job.targets["overlay"], _overlay(job.image, labels, args.channel_axis), overwrite=args.overwrite)
    write_json(job.targets["run"], info, overwrite=args.overwrite)


def _keep_partial(job: _Job, stop: BaseException, how: str, args, params) -> str:
    """Write the last good clusters of a run that was ``how`` ('interrupted' or 'diverged'),
    with ``how: true`` in its run.json; say what was (or was not) written."""
    labels, iteration = getattr(stop, "labels", None), getattr(stop, "iteration", None)
    if job.writing:
        return f"{job.src}: {how} while its outputs were written; they may be incomplete (no {job.targets['run'].name})"
    if labels is None or job.image is None:
        return f"{job.src}: {how} before any clusters were ready; nothing was written for it"
    info = {"image": str(job.src), how: True, "n_iter": iteration, "n_labels": int(labels.max()),
            "labels": "clusters", "params": params.to_dict(),
            **({"error": str(stop)} if how == "diverged" else {})}
    _write_outputs(job, labels, info, args)
    return (f"{job.src}: {how}; the clusters of iteration {iteration} were written to "
            f"{job.targets['labels']} ('{how}': true in {job.targets['run'].name})")


def cmd_evaluate(args: argparse.Namespace) -> int:
    from ._datasets import list_items
    from ._engine import resolve_device
    from ._evaluate import run_evaluation

    overrides = _overrides(args)
    resolve_device(overrides.get("device", "auto"))
    if args.limit is not None and args.limit < 1:
        raise ValueError("--limit must be >= 1")
    if args.workers is not None and args.workers < 1:
        raise ValueError("--workers must be >= 1")
    items = list_items(args.dataset, args.root, args.split, images=args.images, labels=args.labels,
                       ignore_index=args.ignore_index)
    items = items[: args.limit] if args.limit else items
    if not items:
        raise ValueError(f"no images found for --dataset {args.dataset} in {args.root or args.images}")
    config = {
        "dataset": args.dataset,
        "root": str(Path(args.root).resolve()) if args.root else None,
        "images": args.images, "labels": args.labels, "split": args.split,
        "ignore_index": args.ignore_index, "scale": args.scale, "limit": args.limit,
        "methods": list(args.method), "params": overrides,
    }
    t0 = time.perf_counter()
    report = run_evaluation(items, args.method, overrides, args.out, config=config, scale=args.scale,
                            overwrite=args.overwrite, workers=args.workers, scheduler=args.scheduler,
                            progress=not args.quiet)
    print((Path(args.out) / "summary.md").read_text())
    print(f"{report.n_new} new, {report.n_done_before} already done, {report.n_skipped} skipped "
          f"in {time.perf_counter() - t0:.0f} s; results in {Path(args.out).resolve()}")
    return 0


def _has_display() -> bool:
    if sys.platform in ("darwin", "win32"):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def cmd_demo(args: argparse.Namespace) -> int:
    from skimage.transform import resize

    from ._engine import resolve_device
    from ._io import colour_overlay, write_labels, write_png
    from ._metrics import score
    from ._sample_data import natural_image, synthetic_regions

    resolve_device(args.device)
    run_dir = Path(args.out) / time.strftime("run-%Y%m%d-%H%M%S")
    k = 1
    while run_dir.exists():
        k += 1
        run_dir = Path(args.out) / time.strftime(f"run-%Y%m%d-%H%M%S-{k}")
    image, gt = synthetic_regions()
    photo = (resize(natural_image(), (192, 192), anti_aliasing=True) * 255).astype("uint8")
    from ._params import preset_params

    extra = {} if args.max_iter is None else {"max_iter": args.max_iter}
    base = preset_params(args.preset, device=args.device, seed=args.seed, **extra)
    results = {}
    for key, img in (("synthetic", image), ("astronaut", photo)):
        res = _run_one(img, base, None, key, False)
        results[key] = res
        write_labels(run_dir / f"{key}_labels.png", res.labels)
        write_png(run_dir / f"{key}_overlay.png", colour_overlay(img, res.labels))
        kind = "regions" if res.regions else "clusters"
        print(f"{key}: {res.n_labels} {kind}, {res.n_iter} iterations, {res.seconds:.1f} s on {res.device}")
    one = score(results["synthetic"].labels, gt)
    many = score(results["synthetic"].labels, gt, matching="majority")
    print("\nScores of the synthetic sample against its ground truth:")
    print(f"  pixel accuracy, one-to-one (Hungarian): {one['accuracy']:.3f}")
    print(f"  pixel accuracy, many-to-one (majority): {many['accuracy']:.3f}")
    print(f"  mIoU (Hungarian):                       {one['miou']:.3f}")
    print(f"  NMI:                                    {one['nmi']:.3f}")
    print(f"  homogeneity:                            {one['homogeneity']:.3f}")
    print(f"  kim mIoU (best region per segment):     {one['kim_miou']:.3f}")
    print(f"\nOutputs written to {run_dir.resolve()}")

    if args.headless or not _has_display():
        if not args.headless:
            print("(no display found: not opening napari)")
        return 0
    return _open_viewer(image, gt, photo, results)


def _open_viewer(image, gt, photo, results) -> int:
    import napari

    viewer = napari.Viewer(title="napari-inceptseg demo")
    kind = {k: "regions" if r.regions else "clusters" for k, r in results.items()}
    viewer.add_image(photo, name="astronaut", rgb=True)
    viewer.add_labels(results["astronaut"].labels, name=f"astronaut {kind['astronaut']}",
                      metadata=results["astronaut"].metadata())
    viewer.add_image(image, name="synthetic", rgb=True)
    viewer.add_labels(gt, name="synthetic ground truth", visible=False)
    viewer.add_labels(results["synthetic"].labels, name=f"synthetic {kind['synthetic']}",
                      metadata=results["synthetic"].metadata())
    viewer.window.add_plugin_dock_widget("napari-inceptseg", "Unsupervised segmentation")
    viewer.window.add_plugin_dock_widget("napari-inceptseg", "Score against ground truth")
    napari.run()
    return 0


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def main(argv: Optional[List[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    # a SIGTERM (``kill``, a batch system's time limit) stops like Ctrl+C: work already
    # written is kept and the run resumes; only the main thread may set handlers
    in_main = threading.current_thread() is threading.main_thread()
    before = signal.signal(signal.SIGTERM, _interrupt) if in_main else None
    try:
        if args.command == "segment":
            return cmd_segment(args)
        if args.command == "evaluate":
            return cmd_evaluate(args)
        return cmd_demo(args)
    except ValueError as exc:  # bad options (e.g. an absent device): one line, no traceback
        print(f"napari-inceptseg: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        if in_main:
            signal.signal(signal.SIGTERM, signal.SIG_DFL if before is None else before)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
