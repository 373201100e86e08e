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

from ..params import SegmentParams

FORMAT = "napari-inceptseg-model"
VERSION = 1
#: the largest networks a model file may describe (the widget offers at most 1000
#: channels, the images at most 64 input channels); checked before anything is built
FILE_LIMITS = {"n_channels": 1024, "n_conv": 64, "in_channels": 64}
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


def parse_header(path: Path, header: dict[str, str]):
    """``(params, in_channels, ranges, label_map, scribble_ids, spacing)`` from a model
    file's header; :class:`ModelFileError` for anything that is not a possible network.
    """
    if header.get("format") != FORMAT:
        raise ModelFileError(f"{path}: a safetensors file, but not a napari-inceptseg model")
    try:
        version = int(header.get("version", "0"))
        if version > VERSION:
            raise ModelFileError(
                f"{path}: written by a newer napari-inceptseg (format {version}); "
                "upgrade to read it"
            )
        raw = {**LEGACY, **json.loads(header["params"])}
        known = {f.name for f in dataclasses.fields(SegmentParams)}
        params = SegmentParams(**{k: v for k, v in raw.items() if k in known})
        in_ch = int(header["in_channels"])
        ranges = np.asarray(json.loads(header["ranges"]), dtype=np.float64)
        label_map = np.asarray(json.loads(header["label_map"]), dtype=np.int32)
        scribble_ids = tuple(int(i) for i in json.loads(header.get("scribble_ids", "[]")))
        spacing = json.loads(header.get("spacing", "null"))
    except ModelFileError:
        raise
    except (KeyError, ValueError, TypeError) as exc:
        raise ModelFileError(
            f"{path}: damaged model header ({type(exc).__name__}: {exc})"
        ) from None
    claimed = {"n_channels": params.n_channels, "n_conv": params.n_conv, "in_channels": in_ch}
    over = [
        f"{k}={v} (at most {FILE_LIMITS[k]})"
        for k, v in claimed.items()
        if not 1 <= v <= FILE_LIMITS[k]
    ]
    if over:
        raise ModelFileError(
            f"{path}: the header describes an impossible network: {', '.join(over)}"
        )
    if ranges.shape != (in_ch, 2) or label_map.shape != (params.n_channels,):
        raise ModelFileError(
            f"{path}: damaged model header (normalisation or label map of the wrong size)"
        )
    spacing = tuple(spacing) if spacing else None
    return params, in_ch, ranges, label_map, scribble_ids, spacing
