"""napari-inceptseg: unsupervised image segmentation by differentiable feature clustering.

Public API (importing this package does not import torch; a run does)::

    from napari_inceptseg import segment, segment_iter, score

    result = segment(image, arch="inception", max_iter=100)
    result.labels  # int32, numbered 1..K
"""

from __future__ import annotations

__version__ = "0.1.0"

_LAZY = {
    "segment": ".engine.loop",
    "segment_iter": ".engine.loop",
    "run_to_end": ".engine.results",
    "available_devices": ".engine.runtime",
    "Progress": ".engine.results",
    "SegmentationResult": ".engine.segmentation",
    "SegmentationError": ".engine.results",
    "RunInterrupted": ".engine.results",
    "SegmentParams": ".params",
    "TrainedModel": ".engine.saved",
    "load_model": ".engine.saved",
    "apply_model": ".engine.saved",
    "ModelFileError": ".engine.model_file",
    "segment_stack": ".engine.stack",
    "apply_stack": ".engine.stack",
    "prepare_image": ".image",
    "score": ".metrics",
    "contingency_table": ".metrics",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name):
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(__all__)
