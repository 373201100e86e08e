"""The command line's options: one per :class:`SegmentParams` field, and the parser of
``segment``, ``evaluate`` and ``demo``.
"""

from __future__ import annotations

import argparse
import dataclasses

from ..params import SegmentParams


def _add_engine_options(parser: argparse.ArgumentParser, skip=(), preset: bool = True) -> None:
    """``--preset`` and one option per :class:`SegmentParams` field, with its help.
    Options left out keep the preset's value (so their argparse default is None).
    """
    from ..presets import PRESETS

    group = parser.add_argument_group(
        "method and engine options",
        "--preset picks the method; any option below overrides that one setting "
        "(defaults shown are the default method's)",
    )
    if preset:
        group.add_argument(
            "--preset",
            choices=tuple(PRESETS),
            default="default",
            help="'default': a short training on a downscaled copy, then connected regions "
            "(seconds on a CPU); 'paper-vanilla' / 'paper-inception': the papers' exact "
            "settings (default: %(default)s)",
        )
    for f in dataclasses.fields(SegmentParams):
        if f.name in skip:
            continue
        flag = "--" + f.name.replace("_", "-")
        kw = {"default": None, "help": f"{f.metadata['help']} (default: {f.default})"}
        if str(f.type) == "bool":
            kw["action"] = argparse.BooleanOptionalAction
        else:
            kind = {"int": int, "float": float}.get(str(f.type))
            if f.name == "seed":
                kind = int
            if "choices" in f.metadata:
                kw["choices"] = f.metadata["choices"]
            if kind is not None:
                kw["type"] = kind
        group.add_argument(flag, dest=f.name, **kw)
    group.add_argument(
        "--channel-axis",
        type=int,
        default=None,
        help="Axis holding the channels of multichannel (non-RGB) images, e.g. 0 for "
        "(C, Y, X) TIFFs. RGB/RGBA and grayscale are detected. (default: %(default)s)",
    )


def overrides(args: argparse.Namespace) -> dict:
    """The engine options given on the command line (the rest come from the preset)."""
    return {
        f.name: getattr(args, f.name)
        for f in dataclasses.fields(SegmentParams)
        if getattr(args, f.name, None) is not None
    }


def params_from_args(args: argparse.Namespace) -> SegmentParams:
    """The run's :class:`SegmentParams` from parsed command-line arguments."""
    from ..presets import preset_params

    return preset_params(args.preset, **overrides(args))


def build_parser() -> argparse.ArgumentParser:
    """The command line's argument parser, every subcommand included."""
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
    seg.add_argument(
        "images", nargs="+", metavar="IMAGE", help="image files (PNG, JPEG, TIFF, ...)"
    )
    seg.add_argument("-o", "--out", required=True, metavar="OUTDIR", help="output folder (created)")
    seg.add_argument(
        "--format",
        choices=("png", "tif"),
        default="png",
        help="labels file format, 16-bit PNG or TIFF (default: %(default)s)",
    )
    seg.add_argument(
        "--overwrite", action="store_true", help="replace existing outputs (never done otherwise)"
    )
    seg.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    reuse = seg.add_argument_group("guidance and reuse")
    reuse.add_argument(
        "--scribbles",
        metavar="PATH",
        help="a label image of the image's size (0 = unlabelled, "
        "ids 1..S) whose strokes guide the clustering; with several images, put {name} in PATH "
        "for each image's file stem",
    )
    reuse.add_argument(
        "--model",
        metavar="FILE",
        help="a model saved with --save-model: label the images with it "
        "and no training (stacks plane by plane, ids consistent across images)",
    )
    reuse.add_argument(
        "--warm-start",
        action="store_true",
        help="with --model: train starting from it "
        "(its architecture and normalisation) instead of only applying it",
    )
    reuse.add_argument(
        "--save-model",
        metavar="FILE",
        help="save the trained network (.safetensors); with several images, put {name} in FILE",
    )
    reuse.add_argument(
        "--spacing",
        type=float,
        nargs="+",
        metavar="S",
        help="pixel/voxel spacing per spatial axis "
        "(e.g. --spacing 4 1 1 for Z steps 4x the XY pixel size): weights the continuity loss",
    )
    large = seg.add_argument_group(
        "images larger than one machine (an OME-Zarr or zarr IMAGE, -o OUT.ome.zarr)"
    )
    large.add_argument(
        "--scheduler",
        metavar="ADDRESS",
        help="a running Dask cluster's scheduler "
        "(tcp://HOST:8786); default: a local cluster on this machine",
    )
    large.add_argument(
        "--workers",
        type=int,
        metavar="N",
        help="the local cluster's worker processes (default: sized to this machine)",
    )
    large.add_argument(
        "--block",
        type=int,
        default=1024,
        metavar="PX",
        help="block side in pixels: a worker's "
        "memory grows with it, not with the image (default: %(default)s)",
    )
    _add_engine_options(seg)

    ev = sub.add_parser(
        "evaluate",
        help="score methods on a benchmark dataset",
        description="Segment every image of a dataset with each --method and score it against the "
        "ground truth under the standard and the paper protocol (docs/benchmarks.md). Writes "
        "OUTDIR/results.csv (one row per image and method, resumable), skipped.csv, and "
        "summary.md/summary.json (mean and std per metric). Data is read where it lies.",
    )
    from ..bench.datasets import DATASETS
    from ..bench.evaluate import METHODS

    ev.add_argument("--dataset", required=True, choices=DATASETS, help="dataset layout")
    ev.add_argument("--root", help="dataset folder (bsds500, voc, cocostuff, camvid)")
    ev.add_argument("--split", default="val", help="split name (val, test, train...)")
    ev.add_argument("--images", help="--dataset folder: folder of images")
    ev.add_argument(
        "--labels", help="--dataset folder: folder of label maps with the same file stems"
    )
    ev.add_argument(
        "--ignore-index",
        type=int,
        default=None,
        help="ground-truth value to ignore (folder; overrides the dataset's)",
    )
    ev.add_argument(
        "--instances",
        action="store_true",
        help="(folder) the label maps are instance maps, one id per object and 0 = background "
        "(as dsb2018): scored as objects vs background, and object by object",
    )
    ev.add_argument(
        "--limit", type=int, default=None, help="only the first N images (in sorted order)"
    )
    ev.add_argument(
        "--method",
        nargs="+",
        default=["default"],
        choices=METHODS,
        help="methods to run: presets, 'vanilla'/'inception' (the paper presets' networks) "
        "and the classical baselines (default: %(default)s)",
    )
    ev.add_argument(
        "--scale",
        type=float,
        default=1.0,
        help="segment a copy downscaled by this factor per side (e.g. 0.25), score at full "
        "resolution",
    )
    ev.add_argument(
        "-o",
        "--out",
        required=True,
        metavar="OUTDIR",
        help="results folder; an interrupted run resumes there",
    )
    ev.add_argument(
        "--overwrite", action="store_true", help="replace another run's results in OUTDIR"
    )
    ev.add_argument(
        "--workers",
        type=int,
        default=None,
        help="run on a local Dask cluster of N worker processes",
    )
    ev.add_argument(
        "--batch",
        type=int,
        default=0,
        metavar="N",
        help="images segmented side by side (per Dask worker), each its own run with identical "
        "results; 0 = automatic: as many as the free memory holds, at most 2 on the CPU and "
        "32 on CUDA "
        "(default: %(default)s)",
    )
    ev.add_argument(
        "--scheduler",
        default=None,
        metavar="ADDRESS",
        help="run on a Dask distributed cluster (e.g. tcp://host:8786)",
    )
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
    from ..presets import PRESETS

    demo.add_argument("--preset", choices=tuple(PRESETS), default="default", help="method")
    demo.add_argument(
        "-o",
        "--out",
        default="inceptseg-demo",
        metavar="OUTDIR",
        help="output folder; each run writes a new subfolder",
    )
    demo.add_argument(
        "--headless", action="store_true", help="never open napari, even with a display"
    )
    demo.add_argument(
        "--max-iter", type=int, default=None, help="iterations per image (default: the preset's)"
    )
    demo.add_argument("--device", default="auto", help="'auto', 'cpu', 'cuda', 'mps'")
    demo.add_argument("--seed", type=int, default=0, help="random seed")
    return parser
