"""The presets: the default method and the papers' exact settings, by name, and what
a preset decides. No torch import here.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from .params import SegmentParams

#: the papers' settings: full resolution, 1000 steps, raw clusters (docs/method.md)
_PAPER = dict(
    n_channels=100,
    n_conv=2,
    max_iter=1000,
    min_labels=3,
    lr=0.1,
    w_sim=1.0,
    w_con=1.0,
    color_space="rgb",
    train_pixels=0,
    regions=False,
    coarse_scale=1.0,
    init="default",
)
#: name -> the settings it fixes; everything else keeps its default or the caller's value
PRESETS: dict[str, dict[str, Any]] = {
    "default": {},
    "paper-vanilla": {**_PAPER, "arch": "vanilla"},
    "paper-inception": {**_PAPER, "arch": "inception"},
}


def preset_params(preset: str = "default", **overrides: Any) -> SegmentParams:
    """The settings of a preset (``'default'``, ``'paper-vanilla'``,
    ``'paper-inception'``) with keyword ``overrides`` applied on top.
    """
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}: choose one of {', '.join(PRESETS)}")
    known = {f.name for f in dataclasses.fields(SegmentParams)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise TypeError(
            f"unknown parameter(s) {', '.join(unknown)}: see SegmentParams for the names"
        )
    return SegmentParams(**{**PRESETS[preset], **overrides})


def preset_of(params: SegmentParams) -> str:
    """The name of the preset whose settings ``params`` has (``'custom'`` if none):
    every method setting counts, but not the device, seed or memory options.
    """
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


def resolve_params(
    params: SegmentParams | None, overrides: dict[str, Any], preset: str | None = None
) -> SegmentParams:
    """``params`` (or the preset's, or the defaults) with keyword ``overrides`` applied."""
    if params is not None and preset is not None:
        raise ValueError("give either params or a preset, not both")
    if params is None:
        return preset_params(preset or "default", **overrides)
    return params.replace(**overrides) if overrides else params
