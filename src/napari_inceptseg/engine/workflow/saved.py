"""A trained network that can be saved, loaded and applied to other images.

Files are ``.safetensors``: the tensors of the network's ``state_dict`` and a
JSON header (the parameters, the input normalisation and the channel -> label
mapping). Loading parses tensors and JSON only, so a file cannot execute code,
and every way a file can be wrong (not a model, corrupt, truncated, another
architecture) is a ``ValueError`` that says what is wrong.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ...image import is_rgb, prepare, to_colour_space
from ...io import atomic_write
from ...params import SegmentParams
from ..machine.plan import prediction_tile
from ..machine.runtime import memory_format_for, resolve_device
from ..machine.tiles import predict_tiled
from .model_file import (
    FORMAT,
    STRUCTURE,
    SUFFIX,
    VERSION,
    ModelFileError,
    parse_header,
    read_file,
)
from .progress import SegmentationError, run_to_end


@dataclass
class TrainedModel:
    """A trained network with what it takes to reuse it.

    Made by ``result.trained_model()`` or :func:`load_model`; applied to other images
    without training (:meth:`apply`), saved (:meth:`save`) or used to warm-start a run
    (``segment(..., init_model=model)``).

    Attributes
    ----------
    params : SegmentParams
        Architecture, channels, depth and dims of the network.
    in_channels : int
        Channels of the images it takes.
    ranges : numpy.ndarray
        The per-channel intensity range [lo, hi] mapped to [0, 1]: other images are
        normalised the same way, so the same intensity means the same thing.
    label_map : numpy.ndarray
        The output id of every network channel, so applied labels have the ids and
        colours of the training result.

    Examples
    --------
    >>> import numpy as np
    >>> from napari_inceptseg import segment
    >>> image = np.zeros((48, 48), np.uint8)
    >>> image[:, 24:] = 200
    >>> model = segment(image, preset="paper-vanilla", max_iter=5, seed=0).trained_model()
    >>> model.apply(image[::-1]).shape
    (48, 48)
    """

    params: SegmentParams
    in_channels: int
    state_dict: dict[str, Any] = field(repr=False)
    ranges: np.ndarray = field(repr=False)
    label_map: np.ndarray = field(repr=False)
    scribble_ids: tuple = ()
    spacing: tuple | None = None
    source: str = ""
    #: networks built by :meth:`apply`, per device (applying to a stack builds one)
    _built: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_result(cls, result) -> TrainedModel:
        """The trained network of a finished run."""
        state = {
            k: v.detach().to("cpu", copy=True).contiguous()
            for k, v in result.model.state_dict().items()
        }
        return cls(
            params=result.params,
            in_channels=int(result.ranges.shape[0]),
            state_dict=state,
            ranges=np.asarray(result.ranges, dtype=np.float64),
            label_map=np.asarray(result.label_map, dtype=np.int32),
            scribble_ids=tuple(result.scribble_ids),
            spacing=result.spacing,
        )

    def structure_of(self, params: SegmentParams) -> SegmentParams:
        """``params`` with this network's architecture, dims, channels and depth."""
        return params.replace(**{k: getattr(self.params, k) for k in STRUCTURE})

    def describe(self) -> str:
        """One line on the network: architecture, channels, input."""
        p = self.params
        return (
            f"{p.arch} {p.dims}, {p.n_channels} channels, depth {p.n_conv}, "
            f"{self.in_channels} input channel(s)"
        )

    # -- files -------------------------------------------------------------------------

    def save(self, path, *, overwrite: bool = False) -> Path:
        """Write a ``.safetensors`` file (never replacing one unless ``overwrite``)."""
        from safetensors.torch import save_file

        path = Path(path)
        if path.suffix != SUFFIX:
            raise ValueError(f"model files end in {SUFFIX}: {path}")
        header = {
            "format": FORMAT,
            "version": str(VERSION),
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
    def load(cls, path) -> TrainedModel:
        """Read a file written by :meth:`save`; raises :class:`ModelFileError`."""
        path = Path(path)
        header, tensors = read_file(path)
        names = ("params", "in_channels", "ranges", "label_map", "scribble_ids", "spacing")
        fields = dict(zip(names, parse_header(path, header), strict=True))
        model = cls(**fields, state_dict=tensors, source=str(path))
        model.check_tensors(str(path))
        return model

    def check_tensors(self, where: str = "the model") -> None:
        """Raise :class:`ModelFileError` unless the tensors are exactly those of the
        network the parameters describe (names and shapes).
        """
        import torch

        with torch.device("meta"):  # shapes only: nothing is allocated for a hostile header
            expected = self._network().state_dict()
        missing = sorted(set(expected) - set(self.state_dict))
        extra = sorted(set(self.state_dict) - set(expected))
        wrong = sorted(
            k
            for k in set(expected) & set(self.state_dict)
            if tuple(expected[k].shape) != tuple(self.state_dict[k].shape)
            or expected[k].dtype != self.state_dict[k].dtype
        )
        if missing or extra or wrong:
            parts = [
                f"{len(v)} {what} (e.g. {v[0]})"
                for what, v in (
                    ("missing", missing),
                    ("unexpected", extra),
                    ("of the wrong shape or type", wrong),
                )
                if v
            ]
            raise ModelFileError(
                f"{where}: the weights do not match a {self.describe()} network: {', '.join(parts)}"
            )
        bad = sorted(
            k
            for k, t in self.state_dict.items()
            if t.is_floating_point() and not torch.isfinite(t).all()
        )
        if bad:
            raise ModelFileError(
                f"{where}: {len(bad)} weight tensor(s) hold NaN or infinite values "
                f"(e.g. {bad[0]}): the network that was saved had diverged"
            )

    def _network(self):
        from ..modeling.networks import build_model

        p = self.params
        return build_model(p.arch, self.in_channels, p.n_channels, p.n_conv, dims=p.spatial_dims)

    def build(self, device="cpu"):
        """The ``torch`` network with these weights (BatchNorm in training mode)."""
        net = self._network()
        net.load_state_dict(self.state_dict)
        return net.to(device)

    # -- applying ----------------------------------------------------------------------

    def apply(
        self,
        image,
        *,
        channel_axis: int | None = None,
        device: str = "auto",
        tile_size: int = 0,
        memory_gb: float = 0.0,
    ) -> np.ndarray:
        """Labels of ``image`` (a 2D image, or a volume for a 3D network) without
        training: the network with BatchNorm's learned statistics, so the result
        is a fixed function of each pixel's neighbourhood and ids agree across
        images. Large images are predicted tile by tile (the same result). These
        are the network's clusters: the default method's regions are made per run
        (``segment``), so a network applied to other images gives clusters.
        """
        import torch

        dims = self.params.spatial_dims
        data, _ = prepare(image, channel_axis, dims, self.ranges)
        data = to_colour_space(
            data, self.params.color_space, is_rgb(np.shape(image), channel_axis, dims)
        )
        if data.shape[0] != self.in_channels:  # pragma: no cover - prepare checks the ranges
            raise ValueError(
                f"the network takes {self.in_channels} channel(s), the image has {data.shape[0]}"
            )
        dev = resolve_device(device)
        params = self.params.replace(tile_size=tile_size, memory_gb=memory_gb, device=str(dev))
        try:
            tile = prediction_tile(tuple(data.shape[1:]), self.in_channels, params, str(dev))
        except MemoryError as exc:
            raise SegmentationError(str(exc)) from None
        fmt = memory_format_for(dev, dims)
        net = self._built.get(str(dev))
        if net is None:
            net = self._built[str(dev)] = self.build(dev).to(memory_format=fmt)
        x = torch.from_numpy(data).unsqueeze(0)
        raw = run_to_end(
            predict_tiled(
                net, x, tile, net.radius, device=dev, fmt=fmt, precision=self.params.precision
            )
        ).numpy()
        return self.label_map[raw]


def network_inputs(model: TrainedModel, image, *, channel_axis: int | None = None):
    """``(data, net_in)``: ``image`` normalised as the network's training image was
    (``(C, *spatial)``, float32), and the network's input made from it (its colour space).
    """
    dims = model.params.spatial_dims
    data, _ = prepare(image, channel_axis, dims, model.ranges)
    rgb = is_rgb(np.shape(image), channel_axis, dims)
    return data, to_colour_space(data, model.params.color_space, rgb)


def respond(model: TrainedModel, net_in: np.ndarray, *, device: str = "cpu") -> np.ndarray:
    """The network's response (``(n_channels, *spatial)``, float32) to its input
    ``net_in`` (:func:`network_inputs`) in one pass with BatchNorm's learned statistics;
    its argmax is :meth:`TrainedModel.apply`'s clusters. For blocks of a large image
    (``distributed``), each small enough for one pass.
    """
    import torch

    dev = resolve_device(device)
    fmt = memory_format_for(dev, model.params.spatial_dims)
    net = model._built.get(str(dev))
    if net is None:
        net = model._built[str(dev)] = model.build(dev).to(memory_format=fmt)
    net.eval()
    with torch.no_grad():
        x = torch.from_numpy(np.ascontiguousarray(net_in, np.float32)).unsqueeze(0)
        return net.fast_forward(x.to(dev).contiguous(memory_format=fmt)).float()[0].cpu().numpy()


def load_model(path) -> TrainedModel:
    """Read a model file saved with ``result.save_model(path)`` or ``--save-model``.

    Parameters
    ----------
    path : str or os.PathLike
        A ``.safetensors`` file written by napari-inceptseg.

    Returns
    -------
    TrainedModel

    Raises
    ------
    ModelFileError
        The file is missing, damaged, from another program or describes an
        impossible network; the message says which.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> import numpy as np
    >>> from napari_inceptseg import load_model, segment
    >>> result = segment(np.eye(32) * 255, preset="paper-vanilla", max_iter=3, seed=0)
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "net.safetensors"
    >>> _ = result.save_model(path)
    >>> load_model(path).params.arch
    'vanilla'
    """
    return TrainedModel.load(path)


def apply_model(model, image, **kwargs) -> np.ndarray:
    """Label an image with a trained network, without training.

    Parameters
    ----------
    model : TrainedModel or str or os.PathLike
        A network, or the path of a model file.
    image : array_like
        A 2D image (a volume for a 3D network), with the channels it was trained on.
    **kwargs
        ``channel_axis``, ``device``, ``tile_size``, ``memory_gb`` (see
        :meth:`TrainedModel.apply`).

    Returns
    -------
    numpy.ndarray
        The network's clusters, with the training result's ids.

    Raises
    ------
    ModelFileError
        ``model`` is a path that does not hold a usable model file.
    ValueError
        The image does not fit the network (channels, dimensions).

    Examples
    --------
    >>> import numpy as np
    >>> from napari_inceptseg import apply_model, segment
    >>> image = np.zeros((48, 48), np.uint8)
    >>> image[:, 24:] = 200
    >>> model = segment(image, preset="paper-vanilla", max_iter=5, seed=0).trained_model()
    >>> apply_model(model, image).dtype.name
    'int32'
    """
    if not isinstance(model, TrainedModel):
        model = load_model(model)
    return model.apply(image, **kwargs)
