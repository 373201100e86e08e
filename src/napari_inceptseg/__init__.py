"""napari-inceptseg: unsupervised image segmentation by differentiable feature clustering.

Public API (importing this package does not import torch; a run does)::

    from napari_inceptseg import segment, segment_iter, score
    result = segment(image, arch="inception", max_iter=100)
    result.labels  # int32, numbered 1..K
"""

from __future__ import annotations

import os as _os

__version__ = "0.1.0"

# PyTorch reads this once, when it first allocates: large CPU tensors then come
# from 2 MB transparent huge pages, which halves the time the kernel spends
# faulting in fresh activation memory every iteration (docs/benchmarks.md).
# Only effective when this package is imported before torch; set it to 0 to opt out.
_os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")

_LAZY = {
    "segment": "._engine",
    "segment_iter": "._engine",
    "run_to_end": "._engine",
    "available_devices": "._engine",
    "Progress": "._engine",
    "SegmentationResult": "._engine",
    "SegmentationError": "._engine",
    "RunInterrupted": "._engine",
    "SegmentParams": "._params",
    "TrainedModel": "._model_io",
    "load_model": "._model_io",
    "apply_model": "._model_io",
    "ModelFileError": "._model_io",
    "segment_stack": "._stack",
    "apply_stack": "._stack",
    "prepare_image": "._preprocess",
    "score": "._metrics",
    "contingency_table": "._metrics",
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
