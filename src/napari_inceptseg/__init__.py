"""napari-inceptseg: unsupervised image segmentation by differentiable feature clustering.

Public API (importing this package does not import torch; a run does)::

    from napari_inceptseg import segment, segment_iter, score

    result = segment(image, arch="inception", max_iter=100)
    result.labels  # int32, numbered 1..K
"""

from __future__ import annotations

__version__ = "0.1.0"

_LAZY = {
    "segment": ".engine.workflow.segment",
    "segment_iter": ".engine.workflow.segment",
    "run_to_end": ".engine.workflow.progress",
    "available_devices": ".engine.machine.runtime",
    "Progress": ".engine.workflow.progress",
    "SegmentationResult": ".engine.workflow.result",
    "SegmentationError": ".engine.workflow.progress",
    "RunInterrupted": ".engine.workflow.progress",
    "SegmentParams": ".params",
    "TrainedModel": ".engine.workflow.saved",
    "load_model": ".engine.workflow.saved",
    "apply_model": ".engine.workflow.saved",
    "ModelFileError": ".engine.workflow.model_file",
    "segment_stack": ".engine.workflow.stack",
    "apply_stack": ".engine.workflow.stack",
    "prepare_image": ".image",
    "score": ".scoring.metrics",
    "contingency_table": ".scoring.metrics",
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
