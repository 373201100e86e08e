"""Rebuild the call that made a result: the ``segment(...)`` line or the
``napari-inceptseg segment ...`` command, from a result's metadata (a napari layer's
``metadata["inceptseg"]`` or a ``_run.json``). Pure Python: no torch, no napari.
"""

from __future__ import annotations

import dataclasses
import shlex
from collections.abc import Mapping
from typing import Any

from ..params import SegmentParams
from ..presets import PRESETS, preset_params


def _settings(meta: Mapping[str, Any]) -> tuple:
    """``(preset, overrides)``: the preset closest to the run's settings (fewest
    differences) and every setting, seed included, that differs from it.
    """
    if not isinstance(meta, Mapping) or "params" not in meta:
        raise ValueError(
            "this layer has no napari-inceptseg run settings (metadata 'inceptseg' → 'params')"
        )
    if not isinstance(meta["params"], Mapping):
        raise ValueError(
            f"the layer's run settings are not a mapping of names to values: {meta['params']!r}"
        )
    known = {f.name for f in dataclasses.fields(SegmentParams)}
    try:  # metadata may come from anybody's file: every value is checked as a run would check it
        checked = SegmentParams(**{k: v for k, v in meta["params"].items() if k in known})
    except (TypeError, ValueError) as exc:
        raise ValueError(
            f"the layer's run settings are not valid ({exc}); nothing was copied"
        ) from None
    params: dict[str, Any] = {k: getattr(checked, k) for k in known if k in meta["params"]}

    def overrides(name):
        base = preset_params(name)
        return {k: v for k, v in params.items() if v != getattr(base, k)}

    best = min(PRESETS, key=lambda name: len(overrides(name)))
    return best, overrides(best)


def as_python(meta: Mapping[str, Any], image: str = "image") -> str:
    """The Python that gives the same labels (same seed; bit-identical on the CPU)."""
    preset, overrides = _settings(meta)
    if meta.get("applied"):
        raise ValueError(
            "this layer was labelled by a saved network, not trained: load it with "
            "napari_inceptseg.load_model(path).apply(image)"
        )
    args = [image, f"preset={preset!r}"] + [f"{k}={v!r}" for k, v in overrides.items()]
    return (
        "from napari_inceptseg import segment\n\n"
        f"result = segment({', '.join(args)})\n"
        "labels = result.labels\n"
    )


def image_argument(name: Any, source_path: Any = None) -> str:
    """The command's IMAGE: the file the image layer was read from, when napari knows it
    (with its own extension), else a placeholder naming the layer, to be replaced.
    """
    if source_path:
        return str(source_path)
    return f'<path to the image file of layer "{name if isinstance(name, str) else "image"}">'


def as_command(meta: Mapping[str, Any], image: str = "IMAGE", out: str = "out") -> str:
    """The ``napari-inceptseg segment`` command that gives the same labels."""
    preset, overrides = _settings(meta)
    words = ["napari-inceptseg", "segment", image, "-o", out, "--preset", preset]
    for k, v in overrides.items():
        flag = "--" + k.replace("_", "-")
        if isinstance(v, bool):
            words.append(flag if v else "--no-" + k.replace("_", "-"))
        elif v is not None:
            words += [flag, str(v)]
    return " ".join(shlex.quote(w) for w in words)
