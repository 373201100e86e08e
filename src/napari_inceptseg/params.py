"""Engine parameters: one definition with defaults, help text and validation.

The Python API, the CLI (``--help``) and the widgets all read their defaults and
help strings from :class:`SegmentParams`, so they cannot drift apart. The defaults
are the default method (docs/method.md); ``presets.py`` holds the papers' exact
settings beside it. No torch import here.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import re
from dataclasses import dataclass, field
from typing import Any

ARCHITECTURES = ("inception", "vanilla")
INITS = ("default", "xavier")
COLOUR_SPACES = ("lab", "rgb")
PRECISIONS = ("float32", "bfloat16")
DIMS = ("2d", "3d")


def _f(default: Any, help: str, **kw: Any) -> Any:
    return field(default=default, metadata={"help": help, **kw})


@dataclass(frozen=True)
class SegmentParams:
    """Settings of one unsupervised segmentation run.

    The defaults are the default method; ``presets.PRESETS`` holds the papers' exact
    settings [1]_ [2]_. Every value is checked when the settings are made. Each field's
    full help (shown by the CLI's ``--help`` and the dock's tooltips) is in
    ``SegmentParams.__dataclass_fields__[name].metadata["help"]``.

    Parameters
    ----------
    arch : {'vanilla', 'inception'}
        The network: 3x3 convolutions [1]_, or multi-scale Inception blocks [2]_.
    dims : {'2d', '3d'}
        Images (and each plane of a stack), or Z-stacks as volumes.
    n_channels : int
        Channels of the response: the most clusters a run can have (the papers: 100).
    n_conv : int
        Depth: 3x3 convolution layers, or Inception blocks after the first.
    max_iter : int
        Stop after this many optimisation steps (the papers: 1000).
    min_labels : int
        Stop as soon as the image has at most this many clusters (below ``n_channels``).
    lr : float
        SGD learning rate (momentum 0.9).
    w_sim, w_con, w_scr : float
        Weights of the similarity, continuity and scribble losses.
    color_space : {'lab', 'rgb'}
        The colours the network sees for RGB images.
    train_pixels : int
        Train on a copy of at most this many pixels, then label the full image; 0: all.
    regions : bool
        Turn the clusters into connected regions and their hierarchy (the default
        method); False: the clusters as they are (the papers).
    merge_threshold, level : float
        With regions: adjacent regions whose responses differ less are merged; where the
        hierarchy is cut, 0 (finest) to 1 (one region).
    objects : bool
        Objects on a background (label 0) instead of regions, e.g. nuclei.
    n_clusters : int
        At most this many labels, grouped by response after the run; 0: no limit.
    coarse_scale, coarse_iter, refine_iter : float, int, int
        Coarse-to-fine: steps on a copy downscaled by ``coarse_scale``, then at full
        resolution; ``coarse_scale=1`` turns it off.
    tile_size, memory_gb : int, float
        Tiles of at most this side (0: only when needed); the memory a run may use (0:
        what is free on the device).
    init, precision : str
        Weight initialisation (``'default'``, ``'xavier'``); the network's arithmetic
        (``'float32'``, or ``'bfloat16'``: mixed precision on CUDA and CPUs).
    device : str
        ``'auto'`` (CUDA, then MPS, then CPU), ``'cuda'``, ``'cuda:N'``, ``'mps'`` or ``'cpu'``.
    seed : int, optional
        Seed of the initial weights: the same seed gives the same labels on the CPU.
        None draws one (recorded in the result).

    Raises
    ------
    ValueError
        A value of the wrong type, out of range or not among the choices; the
        message names the setting.

    References
    ----------
    .. [1] W. Kim, A. Kanezaki and M. Tanaka, "Unsupervised learning of image
           segmentation based on differentiable feature clustering", IEEE Transactions
           on Image Processing 29, 8055-8068 (2020). doi:10.1109/TIP.2020.3011269
    .. [2] R. Azad and A. Hamid (2025): the ``inception`` backbone of the method.

    Examples
    --------
    >>> from napari_inceptseg import SegmentParams
    >>> SegmentParams().max_iter, SegmentParams(arch="inception").arch
    (15, 'inception')
    >>> SegmentParams(max_iter=0)
    Traceback (most recent call last):
    ...
    ValueError: max_iter must be >= 1, got 0
    """

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
        "Channels of the response map = the largest possible number of clusters (the papers: 100).",
        minimum=2,
        maximum=1000,
    )
    n_conv: int = _f(
        2,
        "Depth: number of 3x3 conv layers (vanilla) or of Inception blocks after "
        "the first (inception).",
        minimum=1,
        maximum=10,
    )
    max_iter: int = _f(
        15,
        "Stop after this many optimisation steps (the papers: 1000).",
        minimum=1,
        maximum=1_000_000,
    )
    min_labels: int = _f(
        3,
        "Stop as soon as the image has at most this many clusters.",
        minimum=1,
        maximum=999,
    )
    lr: float = _f(0.1, "SGD learning rate (momentum 0.9).", minimum=0.0, maximum=10.0)
    w_sim: float = _f(
        1.0,
        "Weight of the feature-similarity loss (cross-entropy against the argmax); "
        "larger values favour fewer, more confident clusters.",
        minimum=0.0,
        maximum=100.0,
    )
    w_con: float = _f(
        1.0,
        "Weight of the spatial-continuity loss (L1 of neighbour differences); "
        "larger values give smoother, larger segments.",
        minimum=0.0,
        maximum=100.0,
    )
    w_scr: float = _f(
        0.5,
        "Weight of the scribble loss (cross-entropy of scribbled pixels against their "
        "scribble id), used when scribbles are given (Kim et al. 2020: 0.5).",
        minimum=0.0,
        maximum=100.0,
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
        maximum=10**9,
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
        maximum=100.0,
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
    objects: bool = _f(
        False,
        "Objects on a background (e.g. nuclei) instead of regions: 0 is the background, "
        "1..N one per object, found from the image's contrast and split where they touch "
        "(no network is trained).",
    )
    n_clusters: int = _f(
        0,
        "At most this many labels: after the run, labels are grouped by how alike the "
        "network's response is in them (touching or not, so a label may be several "
        "separate pieces, e.g. 2 for nuclei and background); 0: no limit.",
        minimum=0,
        maximum=100_000,
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
        "Coarse-to-fine: steps of the coarse stage (at most max_iter; it also ends at min_labels).",
        minimum=1,
        maximum=1_000_000,
    )
    refine_iter: int = _f(
        1,
        "Coarse-to-fine: full-resolution steps after the coarse stage.",
        minimum=0,
        maximum=1_000_000,
    )
    tile_size: int = _f(
        0,
        "Train on tiles of at most this side (pixels, or voxels in 3D) with one shared "
        "network, then predict tile by tile with no seams; 0 tiles only when the whole "
        "image does not fit in memory.",
        minimum=0,
        maximum=100_000,
    )
    memory_gb: float = _f(
        0.0,
        "Memory a run may use, in GB; larger images are tiled to fit. 0: what is free "
        "on the device.",
        minimum=0.0,
        maximum=100_000.0,
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
        "Where to run: 'auto' picks CUDA, then MPS, then CPU; or 'cuda', 'cuda:N', 'mps', 'cpu'.",
    )
    seed: int | None = _f(
        None,
        "Random seed for the network's initial weights; the same seed gives the "
        "same labels on the CPU. None draws one below 2**31 (it is recorded in the result).",
    )

    def __post_init__(self) -> None:
        for name in (*_CHOICES, *_SWITCHES):
            check_field(name, getattr(self, name))
        for f in dataclasses.fields(self):
            if f.metadata.get("minimum") is not None:
                object.__setattr__(self, f.name, _checked_number(f, getattr(self, f.name)))
        if self.seed is not None:  # a whole number that numpy and torch both take
            seed = as_whole(self.seed)
            if seed is None or not 0 <= seed < 2**63:
                raise ValueError(
                    f"seed must be a whole number from 0 to 2**63 - 1, or None, got {self.seed!r}"
                )
            object.__setattr__(self, "seed", seed)
        if self.min_labels >= self.n_channels:
            raise ValueError(
                f"min_labels ({self.min_labels}) must be below n_channels ({self.n_channels}): "
                "a run stops once it has at most min_labels clusters, so it would stop after "
                "its first step; lower min_labels or raise n_channels"
            )
        device_name(self.device)

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

    def replace(self, **changes: Any) -> SegmentParams:
        """A copy with ``changes`` applied, checked like a new one."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """The parameters as a plain dict (for metadata and recipes)."""
        return dataclasses.asdict(self)


#: the settings that take one of a few words
_CHOICES = {
    "arch": ARCHITECTURES,
    "precision": PRECISIONS,
    "dims": DIMS,
    "init": INITS,
    "color_space": COLOUR_SPACES,
}
_SWITCHES = ("regions", "objects")
_DEVICE = re.compile(r"auto|cpu|mps|cuda(:\d+)?")


def device_name(device) -> str:
    """``device`` stripped and in lower case; a ValueError lists the choices otherwise."""
    name = device.strip().lower() if isinstance(device, str) else ""
    if not _DEVICE.fullmatch(name):
        raise ValueError(f"unknown device {device!r}: use 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'")
    return name


def check_field(name: str, value: Any) -> Any:
    """One setting's value checked on its own (its type, range or choices), as
    :class:`SegmentParams` keeps it; a ValueError that names the setting otherwise.
    Settings that depend on each other are checked when a :class:`SegmentParams` is made.

    Examples
    --------
    >>> check_field("max_iter", 15.0)
    15
    """
    if name in _CHOICES:
        if value not in _CHOICES[name]:
            what = "architecture" if name == "arch" else name
            raise ValueError(f"unknown {what} {value!r}: choose one of {', '.join(_CHOICES[name])}")
        return value
    if name in _SWITCHES:
        if not isinstance(value, bool):
            raise ValueError(f"{name} must be True or False, got {value!r}")
        return value
    f = next((f for f in dataclasses.fields(SegmentParams) if f.name == name), None)
    if f is None:
        raise ValueError(f"unknown setting {name!r}: see SegmentParams for the names")
    if f.metadata.get("minimum") is not None:
        return _checked_number(f, value)
    return getattr(SegmentParams(**{name: value}), name)  # device and seed: their own checks


def _checked_number(f: dataclasses.Field, value: Any) -> Any:
    """A numeric setting as a plain ``int`` or ``float`` within its range: any integral
    number (``15``, ``15.0``, ``numpy.int64(15)``) for a whole-number setting, any real
    number for the others; a ValueError that names the setting for anything else.
    """
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
        raise ValueError(
            f"{f.name} must be {'> 0' if f.name == 'lr' else f'>= {lo}'}, got {value!r}"
        )
    if hi is not None and value > hi:
        raise ValueError(f"{f.name} must be <= {hi}, got {value!r}")
    return value


def as_whole(value: Any) -> int | None:
    """``value`` as an ``int`` if it is a whole number of any numeric type, else None.

    >>> as_whole(3.0), as_whole(2.5), as_whole(True)
    (3, None, None)
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return None
    if not math.isfinite(value) or int(value) != value:
        return None
    return int(value)
