"""A trained network that can be saved, loaded and applied to other images.

Files are ``.safetensors``: the tensors of the network's ``state_dict`` and a
JSON header (the parameters, the input normalisation and the channel -> label
mapping). Loading parses tensors and JSON only, so a file cannot execute code,
and every way a file can be wrong (not a model, corrupt, truncated, another
architecture) is a ``ValueError`` that says what is wrong.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Optional

import numpy as np

from ..image import is_rgb, prepare, to_colour_space
from ..params import SegmentParams
from .plan import plan_run
from .results import SegmentationError, run_to_end
from .runtime import memory_format_for, resolve_device
from .tiles import predict_tiled

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
    """A model file that cannot be used; the message says why."""


@dataclass
class TrainedModel:
    """A network trained by :func:`segment`, with what is needed to reuse it:
    ``params`` (architecture, channels, depth, dims), ``in_channels``,
    ``ranges`` (the per-channel intensity range [lo, hi] mapped to [0, 1]: other
    images are normalised the same way, so the same intensity means the same
    thing), and ``label_map`` (the output id of every network channel, so applied
    labels have the ids and colours of the training result)."""

    params: SegmentParams
    in_channels: int
    state_dict: Dict[str, Any] = field(repr=False)
    ranges: np.ndarray = field(repr=False)
    label_map: np.ndarray = field(repr=False)
    scribble_ids: tuple = ()
    spacing: Optional[tuple] = None
    source: str = ""
    #: networks built by :meth:`apply`, per device (applying to a stack builds one)
    _built: Dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_result(cls, result) -> "TrainedModel":
        state = {k: v.detach().to("cpu", copy=True).contiguous() for k, v in result.model.state_dict().items()}
        return cls(params=result.params, in_channels=int(result.ranges.shape[0]), state_dict=state,
                   ranges=np.asarray(result.ranges, dtype=np.float64),
                   label_map=np.asarray(result.label_map, dtype=np.int32),
                   scribble_ids=tuple(result.scribble_ids), spacing=result.spacing)

    def structure_of(self, params: SegmentParams) -> SegmentParams:
        """``params`` with this network's architecture, dims, channels and depth."""
        return params.replace(**{k: getattr(self.params, k) for k in STRUCTURE})

    def describe(self) -> str:
        p = self.params
        return (f"{p.arch} {p.dims}, {p.n_channels} channels, depth {p.n_conv}, "
                f"{self.in_channels} input channel(s)")

    # -- files -------------------------------------------------------------------------

    def save(self, path, *, overwrite: bool = False) -> Path:
        """Write a ``.safetensors`` file (never replacing one unless ``overwrite``)."""
        from safetensors.torch import save_file

        from ..io import atomic_write

        path = Path(path)
        if path.suffix != SUFFIX:
            raise ValueError(f"model files end in {SUFFIX}: {path}")
        header = {
            "format": FORMAT, "version": str(VERSION),
            "params": json.dumps({**self.params.to_dict(), "device": "auto"}),
            "in_channels": str(self.in_channels),
            "ranges": json.dumps(np.asarray(self.ranges).tolist()),
            "label_map": json.dumps(np.asarray(self.label_map).tolist()),
            "scribble_ids": json.dumps(list(self.scribble_ids)),
            "spacing": json.dumps(list(self.spacing) if self.spacing else None),
        }
        tensors = {k: v.contiguous() for k, v in self.state_dict.items()}
        atomic_write(path, lambda p: save_file(tensors, p, metadata=header), overwrite)
        return path

    @classmethod
    def load(cls, path) -> "TrainedModel":
        """Read a file written by :meth:`save`; raises :class:`ModelFileError`."""
        path = Path(path)
        if path.is_dir():
            raise ModelFileError(f"{path}: is a directory, not a model file (name the .safetensors file in it)")
        if not path.is_file():
            raise ModelFileError(f"{path}: no such model file")
        try:
            from safetensors import safe_open

            with safe_open(str(path), framework="pt") as f:
                header = f.metadata() or {}
                tensors = {k: f.get_tensor(k) for k in f.keys()}
        except Exception as exc:  # safetensors reports corrupt and truncated files in several ways
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise ModelFileError(
                f"{path}: not a readable model file (corrupt, truncated or not safetensors: {first})"
            ) from None
        if header.get("format") != FORMAT:
            raise ModelFileError(f"{path}: a safetensors file, but not a napari-inceptseg model")
        try:
            version = int(header.get("version", "0"))
            if version > VERSION:
                raise ModelFileError(f"{path}: written by a newer napari-inceptseg (format {version}); upgrade to read it")
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
            raise ModelFileError(f"{path}: damaged model header ({type(exc).__name__}: {exc})") from None
        claimed = {"n_channels": params.n_channels, "n_conv": params.n_conv, "in_channels": in_ch}
        over = [f"{k}={v} (at most {FILE_LIMITS[k]})" for k, v in claimed.items() if not 1 <= v <= FILE_LIMITS[k]]
        if over:
            raise ModelFileError(f"{path}: the header describes an impossible network: {', '.join(over)}")
        if ranges.shape != (in_ch, 2) or label_map.shape != (params.n_channels,):
            raise ModelFileError(f"{path}: damaged model header (normalisation or label map of the wrong size)")
        model = cls(params=params, in_channels=in_ch, state_dict=tensors, ranges=ranges,
                    label_map=label_map, scribble_ids=scribble_ids,
                    spacing=tuple(spacing) if spacing else None, source=str(path))
        model.check_tensors(str(path))
        return model

    def check_tensors(self, where: str = "the model") -> None:
        """Raise :class:`ModelFileError` unless the tensors are exactly those of the
        network the parameters describe (names and shapes)."""
        import torch

        with torch.device("meta"):  # shapes only: nothing is allocated for a hostile header
            expected = self._network().state_dict()
        missing = sorted(set(expected) - set(self.state_dict))
        extra = sorted(set(self.state_dict) - set(expected))
        wrong = sorted(k for k in set(expected) & set(self.state_dict)
                       if tuple(expected[k].shape) != tuple(self.state_dict[k].shape)
                       or expected[k].dtype != self.state_dict[k].dtype)
        if missing or extra or wrong:
            parts = [f"{len(v)} {what} (e.g. {v[0]})" for what, v in
                     (("missing", missing), ("unexpected", extra), ("of the wrong shape or type", wrong)) if v]
            raise ModelFileError(
                f"{where}: the weights do not match a {self.describe()} network: {', '.join(parts)}"
            )
        bad = sorted(k for k, t in self.state_dict.items() if t.is_floating_point() and not torch.isfinite(t).all())
        if bad:
            raise ModelFileError(f"{where}: {len(bad)} weight tensor(s) hold NaN or infinite values "
                                 f"(e.g. {bad[0]}): the network that was saved had diverged")

    def _network(self):
        from .networks import build_model

        p = self.params
        return build_model(p.arch, self.in_channels, p.n_channels, p.n_conv, dims=p.spatial_dims)

    def build(self, device="cpu"):
        """The ``torch`` network with these weights (BatchNorm in training mode)."""
        net = self._network()
        net.load_state_dict(self.state_dict)
        return net.to(device)

    # -- applying ----------------------------------------------------------------------

    def apply(self, image, *, channel_axis: Optional[int] = None, device: str = "auto",
              tile_size: int = 0, memory_gb: float = 0.0) -> np.ndarray:
        """Labels of ``image`` (a 2D image, or a volume for a 3D network) without
        training: the network with BatchNorm's learned statistics, so the result
        is a fixed function of each pixel's neighbourhood and ids agree across
        images. Large images are predicted tile by tile (the same result). These
        are the network's clusters: the default method's regions are made per run
        (``segment``), so a network applied to other images gives clusters."""
        import torch

        dims = self.params.spatial_dims
        data, _ = prepare(image, channel_axis, dims, self.ranges)
        data = to_colour_space(data, self.params.color_space, is_rgb(np.shape(image), channel_axis, dims))
        if data.shape[0] != self.in_channels:  # pragma: no cover - prepare checks the ranges
            raise ValueError(f"the network takes {self.in_channels} channel(s), the image has {data.shape[0]}")
        dev = resolve_device(device)
        spatial = tuple(data.shape[1:])
        try:  # tiles sized as for training: inference needs less, so this is safe
            plan = plan_run(spatial, self.in_channels,
                            self.params.replace(tile_size=tile_size, memory_gb=memory_gb, device=str(dev)),
                            str(dev), guided=True)
        except MemoryError as exc:
            raise SegmentationError(str(exc)) from None
        tile = plan.tile or spatial
        fmt = memory_format_for(dev, dims)
        net = self._built.get(str(dev))
        if net is None:
            net = self._built[str(dev)] = self.build(dev).to(memory_format=fmt)
        x = torch.from_numpy(data).unsqueeze(0)
        raw = run_to_end(predict_tiled(net, x, tile, net.radius, dev, fmt, self.params.precision)).numpy()
        return self.label_map[raw]


def respond(model: TrainedModel, image, *, channel_axis: Optional[int] = None, device: str = "cpu"):
    """``(data, response)`` of ``image`` for a trained network, in one pass with
    BatchNorm's learned statistics: ``data`` the image normalised as the network's was
    (``(C, *spatial)``, float32), ``response`` its output (``(n_channels, *spatial)``,
    float32), whose argmax is :meth:`TrainedModel.apply`'s clusters. For blocks of a
    large image (``distributed``), each small enough for one pass."""
    import torch

    dims = model.params.spatial_dims
    data, _ = prepare(image, channel_axis, dims, model.ranges)
    net_in = to_colour_space(data, model.params.color_space, is_rgb(np.shape(image), channel_axis, dims))
    dev = resolve_device(device)
    fmt = memory_format_for(dev, dims)
    net = model._built.get(str(dev))
    if net is None:
        net = model._built[str(dev)] = model.build(dev).to(memory_format=fmt)
    net.eval()
    with torch.no_grad():
        x = torch.from_numpy(net_in).unsqueeze(0).to(dev).contiguous(memory_format=fmt)
        response = net.fast_forward(x).float()[0].cpu().numpy()
    return data, response


def load_model(path) -> TrainedModel:
    """Load a model file saved with ``result.save_model(path)`` or the CLI's ``--save-model``."""
    return TrainedModel.load(path)


def apply_model(model, image, **kwargs) -> np.ndarray:
    """Segment ``image`` with a trained network (a :class:`TrainedModel` or a file path), no training."""
    if not isinstance(model, TrainedModel):
        model = load_model(model)
    return model.apply(image, **kwargs)
