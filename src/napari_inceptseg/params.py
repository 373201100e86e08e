"""Engine parameters: one definition with defaults, help text and validation.

The Python API, the CLI (``--help``) and the widgets all read their defaults and
help strings from :class:`SegmentParams`, so they cannot drift apart. The defaults
are the default method (docs/method.md); :data:`PRESETS` holds it and the papers'
exact settings. No torch import here.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import re
from dataclasses import dataclass, field
from typing import Any, Dict, Optional

ARCHITECTURES = ("inception", "vanilla")
INITS = ("default", "xavier")
COLOUR_SPACES = ("lab", "rgb")
PRECISIONS = ("float32", "bfloat16")
DIMS = ("2d", "3d")
DEVICES = ("auto", "cuda", "mps", "cpu")


def _f(default: Any, help: str, **kw: Any) -> Any:
    return field(default=default, metadata={"help": help, **kw})


@dataclass(frozen=True)
class SegmentParams:
    """Settings of one unsupervised segmentation run (defaults of the papers)."""

    arch: str = _f(
        "vanilla",
        "Network: 'vanilla' (3x3 convolutions, Kim et al. 2020) or 'inception' "
        "(multi-scale Inception blocks, Azad & Hamid 2025).",
        choices=ARCHITECTURES,
    )
    dims: str = _f(
        "2d",
        "'2d' segments images (and each plane of a stack); '3d' segments Z-stacks as "
        "volumes with 3D convolutions and continuity along Z as well.",
        choices=DIMS,
    )
    n_channels: int = _f(
        48,
        "Channels of the response map = the largest possible number of clusters "
        "(the papers: 100).",
        minimum=2,
    )
    n_conv: int = _f(
        2,
        "Depth: number of 3x3 conv layers (vanilla) or of Inception blocks after "
        "the first (inception).",
        minimum=1,
    )
    max_iter: int = _f(
        15, "Stop after this many optimisation steps (the papers: 1000).", minimum=1
    )
    min_labels: int = _f(
        3,
        "Stop as soon as the image has at most this many clusters.",
        minimum=1,
    )
    lr: float = _f(0.1, "SGD learning rate (momentum 0.9).", minimum=0.0)
    w_sim: float = _f(
        1.0,
        "Weight of the feature-similarity loss (cross-entropy against the argmax); "
        "larger values favour fewer, more confident clusters.",
        minimum=0.0,
    )
    w_con: float = _f(
        1.0,
        "Weight of the spatial-continuity loss (L1 of neighbour differences); "
        "larger values give smoother, larger segments.",
        minimum=0.0,
    )
    w_scr: float = _f(
        0.5,
        "Weight of the scribble loss (cross-entropy of scribbled pixels against their "
        "scribble id), used when scribbles are given (Kim et al. 2020: 0.5).",
        minimum=0.0,
    )
    color_space: str = _f(
        "lab",
        "Colours the network sees: 'lab' converts RGB images to CIELAB, where "
        "distances follow perceived colour differences; 'rgb' feeds them as they are "
        "(the papers). Grayscale and multichannel images are not converted.",
        choices=COLOUR_SPACES,
    )
    train_pixels: int = _f(
        40000,
        "Train on a copy of the image downscaled to at most this many pixels (voxels "
        "in 3D), then label the full image with the trained network, which is fully "
        "convolutional; 0 trains at full resolution (the papers).",
        minimum=0,
    )
    regions: bool = _f(
        True,
        "Turn the clusters into connected regions with sharp borders: superpixels "
        "take their majority cluster, tiny regions join a neighbour, and adjacent "
        "regions the network sees as alike are merged (see merge_threshold). Off: "
        "the network's clusters as they are (the papers). Not used with scribbles.",
    )
    merge_threshold: float = _f(
        0.65,
        "With regions: adjacent regions whose mean network responses differ by less "
        "than this (root mean square over channels, in standard deviations of the "
        "response) are merged; larger gives fewer, larger regions, 0 merges none.",
        minimum=0.0,
    )
    level: float = _f(
        0.450,
        "With regions: where the region hierarchy is cut, from 0 (the finest regions) to 1 "
        "(one region); higher gives fewer, larger regions. The result keeps the whole "
        "hierarchy (result.hierarchy), so any other level is one cut away. The default was "
        "chosen on the development sets (benchmarks/choose_level.py).",
        minimum=0.0,
        maximum=1.0,
    )
    n_clusters: int = _f(
        0,
        "At most this many labels: after the run, labels are grouped by how alike the "
        "network's response is in them (touching or not, so a label may be several "
        "separate pieces, e.g. 2 for nuclei and background); 0: no limit.",
        minimum=0,
    )
    coarse_scale: float = _f(
        1.0,
        "Coarse-to-fine: optimise first on the image downscaled by this factor per "
        "side (e.g. 0.25) for coarse_iter steps, then refine at full resolution for "
        "refine_iter steps; 1 optimises at full resolution only.",
        minimum=0.05,
        maximum=1.0,
    )
    coarse_iter: int = _f(
        60,
        "Coarse-to-fine: steps of the coarse stage (at most max_iter; it also ends "
        "at min_labels).",
        minimum=1,
    )
    refine_iter: int = _f(
        1,
        "Coarse-to-fine: full-resolution steps after the coarse stage.",
        minimum=0,
    )
    tile_size: int = _f(
        0,
        "Train on tiles of at most this side (pixels, or voxels in 3D) with one shared "
        "network, then predict tile by tile with no seams; 0 tiles only when the whole "
        "image does not fit in memory.",
        minimum=0,
    )
    memory_gb: float = _f(
        0.0,
        "Memory a run may use, in GB; larger images are tiled to fit. 0: what is free "
        "on the device.",
        minimum=0.0,
    )
    init: str = _f(
        "default",
        "Weight initialisation: 'default' (PyTorch's, as the published code) or "
        "'xavier' (as the paper's text says).",
        choices=INITS,
    )
    precision: str = _f(
        "float32",
        "Arithmetic of the network: 'bfloat16' runs convolutions in mixed precision "
        "(autocast; the loss in float32), faster on recent GPUs; 'float32' everywhere.",
        choices=PRECISIONS,
    )
    device: str = _f(
        "auto",
        "Where to run: 'auto' picks CUDA, then MPS, then CPU; or 'cuda', 'cuda:N', "
        "'mps', 'cpu'.",
    )
    seed: Optional[int] = _f(
        None,
        "Random seed for the network's initial weights; the same seed gives the "
        "same labels on the CPU. None draws one below 2**31 (it is recorded in the result).",
    )

    def __post_init__(self) -> None:
        for name, choices in _CHOICES.items():
            value = getattr(self, name)
            if value not in choices:
                what = "architecture" if name == "arch" else name
                raise ValueError(f"unknown {what} {value!r}: choose one of {', '.join(choices)}")
        if not isinstance(self.regions, bool):
            raise ValueError(f"regions must be True or False, got {self.regions!r}")
        for f in dataclasses.fields(self):
            if f.metadata.get("minimum") is not None:
                object.__setattr__(self, f.name, _checked_number(f, getattr(self, f.name)))
        if self.seed is not None:
            if not _is_seed(self.seed):
                raise ValueError(f"seed must be a whole number from 0 to 2**63 - 1, or None, got {self.seed!r}")
            object.__setattr__(self, "seed", int(self.seed))
        if self.min_labels >= self.n_channels:
            raise ValueError(
                f"min_labels ({self.min_labels}) must be below n_channels ({self.n_channels}): a run stops "
                f"once it has at most min_labels clusters, and {self.n_channels} channels never give more, "
                "so it would stop after its first step; lower min_labels or raise n_channels")
        if not isinstance(self.device, str) or not _DEVICE.fullmatch(self.device.strip().lower()):
            raise ValueError(f"unknown device {self.device!r}: use 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'")

    @property
    def total_iter(self) -> int:
        """The most optimisation steps a run takes (coarse and refine stages together)."""
        if self.coarse_scale < 1.0:
            return min(self.coarse_iter, self.max_iter) + self.refine_iter
        return self.max_iter

    @property
    def spatial_dims(self) -> int:
        """2 or 3."""
        return 3 if self.dims == "3d" else 2

    def replace(self, **changes: Any) -> "SegmentParams":
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)


#: the settings that take one of a few words
_CHOICES = {"arch": ARCHITECTURES, "precision": PRECISIONS, "dims": DIMS, "init": INITS,
            "color_space": COLOUR_SPACES}
_DEVICE = re.compile(r"auto|cpu|mps|cuda(:\d+)?")


def _checked_number(f: "dataclasses.Field", value: Any) -> Any:
    """A numeric setting as a plain ``int`` or ``float`` within its range: any integral
    number (``15``, ``15.0``, ``numpy.int64(15)``) for a whole-number setting, any real
    number for the others; a ValueError that names the setting for anything else."""
    whole = f.type in ("int", int)
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{f.name} must be a {'whole ' if whole else ''}number, got {value!r}")
    if not math.isfinite(value):
        raise ValueError(f"{f.name} must be a finite number, got {value!r}")
    if whole and int(value) != value:
        raise ValueError(f"{f.name} must be a whole number, got {value!r}")
    value = int(value) if whole else float(value)
    lo, hi = f.metadata["minimum"], f.metadata.get("maximum")
    if value < lo or (f.name == "lr" and value == 0):
        raise ValueError(f"{f.name} must be {'> 0' if f.name == 'lr' else f'>= {lo}'}, got {value!r}")
    if hi is not None and value > hi:
        raise ValueError(f"{f.name} must be <= {hi}, got {value!r}")
    return value


def _is_seed(value: Any) -> bool:
    """A whole number that numpy and torch both take as a seed."""
    if isinstance(value, bool) or not isinstance(value, (numbers.Integral, float)):
        return False
    return math.isfinite(value) and int(value) == value and 0 <= int(value) < 2**63


#: the papers' settings: full resolution, 1000 steps, raw clusters (docs/method.md)
_PAPER = dict(
    n_channels=100, n_conv=2, max_iter=1000, min_labels=3, lr=0.1, w_sim=1.0, w_con=1.0,
    color_space="rgb", train_pixels=0, regions=False, coarse_scale=1.0, init="default",
)
#: name -> the settings it fixes; everything else keeps its default or the caller's value
PRESETS: Dict[str, Dict[str, Any]] = {
    "default": {},
    "paper-vanilla": {**_PAPER, "arch": "vanilla"},
    "paper-inception": {**_PAPER, "arch": "inception"},
}


def preset_params(preset: str = "default", **overrides: Any) -> "SegmentParams":
    """The settings of a preset (``'default'``, ``'paper-vanilla'``,
    ``'paper-inception'``) with keyword ``overrides`` applied on top."""
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}: choose one of {', '.join(PRESETS)}")
    known = {f.name for f in dataclasses.fields(SegmentParams)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise TypeError(f"unknown parameter(s) {', '.join(unknown)}: see SegmentParams for the names")
    return SegmentParams(**{**PRESETS[preset], **overrides})


def preset_of(params: "SegmentParams") -> str:
    """The name of the preset whose settings ``params`` has (``'custom'`` if none):
    every method setting counts, but not the device, seed or memory options."""
    method = method_fields()
    for name in PRESETS:
        ref = preset_params(name)
        if all(getattr(params, k) == getattr(ref, k) for k in method):
            return name
    return "custom"


#: options that change where and how a run executes, not the method
_RUN_OPTIONS = ("device", "seed", "precision", "tile_size", "memory_gb", "dims")


def method_fields():
    """The names of the settings a preset decides (all but the run options)."""
    return [f.name for f in dataclasses.fields(SegmentParams) if f.name not in _RUN_OPTIONS]


def resolve_params(params: Optional["SegmentParams"], overrides: Dict[str, Any],
                   preset: Optional[str] = None) -> "SegmentParams":
    """``params`` (or the preset's, or the defaults) with keyword ``overrides`` applied."""
    if params is not None and preset is not None:
        raise ValueError("give either params or a preset, not both")
    if params is None:
        return preset_params(preset or "default", **overrides)
    return params.replace(**overrides) if overrides else params
