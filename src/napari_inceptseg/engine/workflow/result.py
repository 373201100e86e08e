"""The result of one segmentation: :class:`SegmentationResult` (numpy only; it becomes a
saved network through ``saved.py``, imported when asked).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ...params import SegmentParams
from ...presets import preset_of
from .saved import TrainedModel


@dataclass
class SegmentationResult:
    """What a finished run returns.

    Attributes
    ----------
    labels : numpy.ndarray
        int32 labels numbered 1..K at the image's spatial shape: regions (the
        default method) or clusters (the papers' presets); with ``objects``, 0 is the
        background and 1..N the objects.
    hierarchy : RegionHierarchy or None
        The region hierarchy when ``regions``: ``labels`` is its cut at ``level``
        (unless ``n_clusters`` grouped them further); any other level is one
        ``hierarchy.cut(level)`` away.
    n_iter : int
        Optimisation steps taken.
    history : dict of list of float
        ``loss``, ``loss_sim``, ``loss_con`` and ``n_labels`` per step.
    params : SegmentParams
        The settings the run used.
    seed : int
        The seed of the initial weights (drawn when none was given).
    device, seconds, stop_reason, plan : str, float, str, str
        Where and how long it ran, why it stopped and how it used memory.
    model : torch.nn.Module
        The trained network (see :meth:`trained_model`).
    channel_ids, label_map, ranges : numpy.ndarray
        The network channel of every pixel, the cluster id of every channel and the
        normalisation ranges.

    See Also
    --------
    segment : the run that makes it, and the method's references.

    Examples
    --------
    >>> import numpy as np
    >>> from napari_inceptseg import segment
    >>> result = segment(np.eye(32) * 255, seed=0)
    >>> result.regions, result.level == result.params.level
    (True, True)
    >>> bool((result.hierarchy.cut(result.level) == result.labels).all())
    True
    """

    labels: np.ndarray
    n_iter: int
    history: dict[str, list[float]]
    params: SegmentParams
    device: str
    seconds: float
    stop_reason: str
    seed: int
    model: Any = field(default=None, repr=False)
    #: the network's channel index of every pixel (0..n_channels-1) before
    #: renumbering; stable across slices when a network is warm-started
    channel_ids: np.ndarray | None = field(default=None, repr=False)
    #: cluster id of every network channel: ``label_map[channel_ids]`` are the
    #: clusters (``labels`` themselves unless ``regions`` or ``n_clusters`` changed them)
    label_map: np.ndarray | None = field(default=None, repr=False)
    #: per-channel intensity range [lo, hi] the image was normalised with
    ranges: np.ndarray | None = field(default=None, repr=False)
    scribble_ids: tuple[int, ...] = ()
    spacing: tuple[float, ...] | None = None
    #: how memory was used: whole image, memory-lean step, or tiles (and why)
    plan: str = "the whole image at once"
    #: True when ``labels`` are connected regions made from the clusters (the default
    #: method); False when they are the clusters (``label_map[channel_ids]``)
    regions: bool = False
    #: the region hierarchy (a :class:`~napari_inceptseg.regions.hierarchy.RegionHierarchy`)
    #: when ``regions``: ``labels`` is its cut at ``level`` unless ``n_clusters`` grouped
    #: them further; None for the clusters of the papers' presets
    hierarchy: Any = field(default=None, repr=False)

    @property
    def level(self) -> float | None:
        """The level of the hierarchy that ``labels`` is the cut at (None without one)."""
        return self.params.level if self.hierarchy is not None else None

    def trained_model(self):
        """The trained network with its parameters, normalisation and id mapping,
        as a :class:`~napari_inceptseg.TrainedModel` (to save, apply or warm-start).
        """
        if self.model is None:
            raise ValueError(f"this run trained no network ({self.stop_reason})")
        return TrainedModel.from_result(self)

    def save_model(self, path, *, overwrite: bool = False):
        """Save the trained network to a ``.safetensors`` file (see :class:`TrainedModel`)."""
        return self.trained_model().save(path, overwrite=overwrite)

    @property
    def n_labels(self) -> int:
        """The number of labels in the result."""
        return int(self.labels.max()) if self.labels.size else 0

    @property
    def final_loss(self) -> float | None:
        """The last iteration's loss, or None when no training ran."""
        return self.history["loss"][-1] if self.history["loss"] else None

    def metadata(self) -> dict[str, Any]:
        """JSON-friendly description of the run (for napari layer metadata, files)."""
        return {
            "preset": preset_of(self.params),
            "params": {**self.params.to_dict(), "seed": self.seed},
            "n_iter": self.n_iter,
            "n_labels": self.n_labels,
            "final_loss": self.final_loss,
            "device": self.device,
            "seconds": round(self.seconds, 3),
            "stop_reason": self.stop_reason,
            "plan": self.plan,
            "labels": _kind(self),
            **(
                {"level": self.params.level, "n_regions_finest": self.hierarchy.n_base}
                if self.hierarchy is not None
                else {}
            ),
            **({"scribble_ids": list(self.scribble_ids)} if self.scribble_ids else {}),
            **({"spacing": list(self.spacing)} if self.spacing else {}),
        }


def _kind(result: SegmentationResult) -> str:
    """What a result's labels are: objects, regions or clusters."""
    if result.params.objects:
        return "objects"
    return "regions" if result.regions else "clusters"
