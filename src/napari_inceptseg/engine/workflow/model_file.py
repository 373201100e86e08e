"""The model file: a safetensors file whose header carries the network's settings,
normalisation and id mapping. Reading it never trusts the header: every value is
checked before a network is built from it.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np

from ...params import SegmentParams

FORMAT = "napari-inceptseg-model"
VERSION = 1
#: the most input channels a model file may describe (its channels and depth are
#: bounded as every run's are, by SegmentParams); checked before anything is built
MAX_IN_CHANNELS = 64
SUFFIX = ".safetensors"
#: the parameters that fix the network and what its input means (taken from the file
#: when warm-starting)
STRUCTURE = ("arch", "dims", "n_channels", "n_conv", "color_space")
#: settings that files written before they existed were trained with (the papers')
LEGACY = {"color_space": "rgb", "train_pixels": 0, "regions": False}


class ModelFileError(ValueError):
    """A model file that cannot be used; the message says why.

    Examples
    --------
    >>> from napari_inceptseg import ModelFileError, load_model
    >>> try:
    ...     load_model("no-such-file.safetensors")
    ... except ModelFileError as exc:
    ...     print(exc)
    no-such-file.safetensors: no such model file
    """


def read_file(path: Path) -> tuple[dict[str, str], dict[str, Any]]:
    """The header and tensors of a safetensors file; :class:`ModelFileError` otherwise."""
    if path.is_dir():
        raise ModelFileError(
            f"{path}: is a directory, not a model file (name the .safetensors file in it)"
        )
    if not path.is_file():
        raise ModelFileError(f"{path}: no such model file")
    try:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            return f.metadata() or {}, {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (safe_open is not iterable)
    except Exception as exc:  # safetensors reports corrupt and truncated files in several ways
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ModelFileError(
            f"{path}: not a readable model file (corrupt, truncated or not safetensors: {first})"
        ) from None


def _whole_numbers(values) -> np.ndarray:
    """A JSON list of whole numbers that fit int32, as an array; a ValueError otherwise."""
    if not isinstance(values, list) or not all(
        isinstance(v, int) and not isinstance(v, bool) and -(2**31) <= v < 2**31 for v in values
    ):
        raise ValueError("ids are not a list of whole numbers")
    return np.asarray(values, dtype=np.int32).reshape(-1)


def parse_header(path: Path, header: dict[str, str]):
    """``(params, in_channels, ranges, label_map, scribble_ids, spacing)`` from a model
    file's header; :class:`ModelFileError` for anything that is not a possible network.
    """
    if header.get("format") != FORMAT:
        raise ModelFileError(f"{path}: a safetensors file, but not a napari-inceptseg model")
    try:
        version = int(header.get("version", "0"))
        raw = {**LEGACY, **json.loads(header["params"])}
        in_ch = int(header["in_channels"])
        ranges = np.asarray(json.loads(header["ranges"]), dtype=np.float64)
        label_map = _whole_numbers(json.loads(header["label_map"]))
        scribble_ids = tuple(_whole_numbers(json.loads(header.get("scribble_ids", "[]"))).tolist())
        spacing = json.loads(header.get("spacing", "null"))
    except (KeyError, ValueError, TypeError) as exc:
        raise ModelFileError(
            f"{path}: damaged model header ({type(exc).__name__}: {exc})"
        ) from None
    if version > VERSION:
        raise ModelFileError(
            f"{path}: written by a newer napari-inceptseg (format {version}); upgrade to read it"
        )
    known = {f.name for f in dataclasses.fields(SegmentParams)}
    try:
        params = SegmentParams(**{k: v for k, v in raw.items() if k in known})
    except ValueError as exc:  # each setting within its range (SegmentParams)
        raise ModelFileError(f"{path}: the header describes an impossible network: {exc}") from None
    if not 1 <= in_ch <= MAX_IN_CHANNELS:
        raise ModelFileError(
            f"{path}: the header describes an impossible network: in_channels={in_ch} "
            f"(at most {MAX_IN_CHANNELS})"
        )
    if ranges.shape != (in_ch, 2) or label_map.shape != (params.n_channels,):
        raise ModelFileError(
            f"{path}: damaged model header (normalisation or label map of the wrong size)"
        )
    why = (
        _bad_ranges(ranges)
        or _bad_ids(label_map, scribble_ids, params.n_channels)
        or _bad_spacing(spacing, params.spatial_dims)
    )
    if why:
        raise ModelFileError(f"{path}: damaged model header ({why})")
    return params, in_ch, ranges, label_map, scribble_ids, tuple(spacing) if spacing else None


def _bad_ranges(ranges: np.ndarray) -> str:
    """Why the normalisation cannot be a trained network's ('' when it can): finite
    ``lo <= hi`` per channel, and not every channel flat (a blank training image).
    """
    if not np.isfinite(ranges).all():
        return "the normalisation holds NaN or infinite values"
    if (ranges[:, 0] > ranges[:, 1]).any() or (ranges[:, 0] == ranges[:, 1]).all():
        return "the normalisation maps no intensity range"
    return ""


def _bad_ids(label_map: np.ndarray, scribble_ids: tuple, n_channels: int) -> str:
    """Why the ids cannot be a trained network's: scribble ids are distinct channels
    (1..n_channels), and the label map gives each channel its own id, at most
    ``n_channels`` above the largest scribble id (see labels.make_label_map).
    """
    if len(set(scribble_ids)) != len(scribble_ids) or any(
        not 1 <= s <= n_channels for s in scribble_ids
    ):
        return f"scribble ids {list(scribble_ids)} are not distinct channels 1..{n_channels}"
    top = max(scribble_ids, default=0) + n_channels
    if label_map.min() < 1 or label_map.max() > top or np.unique(label_map).size != n_channels:
        return f"the label map is not {n_channels} distinct ids from 1 to at most {top}"
    return ""


def _bad_spacing(spacing, dims: int) -> str:
    """Why the pixel spacing cannot be an image's: None, or ``dims`` positive numbers."""
    if spacing is None:
        return ""
    ok = (
        isinstance(spacing, list)
        and len(spacing) == dims
        and all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and 0 < v < float("inf")
            for v in spacing
        )
    )
    return "" if ok else f"the spacing {spacing!r} is not {dims} positive numbers"
