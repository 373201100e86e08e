"""What each part of a run costs in memory: the process, the image's copies, one
training step and the final pass per pixel, and the network's weights. The numbers are
fitted to peak RSS measured per phase on the CPU with ``benchmarks/memory_plan.py``;
``plan.py`` decides with them.
"""

from __future__ import annotations

import math

from ...params import SegmentParams

#: process overhead beyond the activations (PyTorch's libraries, the network)
BASE_BYTES = 0.3e9
#: measured peaks are at most this much above the model (THP rounding, allocator slack)
MARGIN = 1.15
#: a run plans for this part of the free memory, leaving the rest to napari, the
#: system and other programs (``memory_gb`` sets the budget outright)
SAFETY_FRACTION = 0.8
#: bytes per pixel and channel while the image is prepared (its float copies and the
#: colour conversion's float64 temporaries), and kept during the run (two float32
#: copies); plus the int32 outputs (channel ids, labels), all at full resolution
PREPARE_BYTES_PER_VALUE = 27.0
KEPT_BYTES_PER_VALUE = 8.0
OUTPUT_BYTES_PER_PIXEL = 8.0
#: on the CPU, the fast heap may keep this many steps' worth of freed memory before
#: it is trimmed back (``runtime.heap_allocator``)
HEAP_ALLOWANCE = 0.5


def bytes_per_pixel(params: SegmentParams, in_channels: int = 3, lean: bool = False) -> float:
    """Peak bytes per pixel of one optimisation step (``lean``: the memory-lean
    ``vanilla`` step of ``lean.py``); each network knows its own (``networks.py``).
    """
    from ..modeling.networks import NETWORKS

    return NETWORKS[params.arch].step_bytes_per_pixel(
        params.n_channels, params.n_conv, in_channels, lean
    )


def pass_bytes_per_pixel(params: SegmentParams, in_channels: int = 3) -> float:
    """Peak bytes per pixel of the final forward pass (no gradients): a few layers'
    outputs, the response and its argmax; the regions' edge map adds a little.
    """
    from ..modeling.networks import NETWORKS

    floats = NETWORKS[params.arch].pass_floats_per_pixel(params.n_channels, in_channels)
    return 4.0 * floats + (16 if params.regions else 0)


#: float32 values kept per learnable value of the network: the weight, its gradient and
#: the optimiser's momentum
WEIGHT_COPIES = 3


def weight_bytes(params: SegmentParams, in_channels: int = 3, dims: int = 2) -> float:
    """The network's learnable values, their gradients and momentum, in bytes."""
    from ..modeling.networks import NETWORKS

    n = NETWORKS[params.arch].n_weights(params.n_channels, params.n_conv, in_channels, dims)
    return 4.0 * WEIGHT_COPIES * n


def input_bytes(full_shape, in_channels: int, preparing: bool = False) -> float:
    """The image's copies and the outputs at full resolution (``preparing``: the
    larger amount while the image is normalised and converted).
    """
    per_value = PREPARE_BYTES_PER_VALUE if preparing else KEPT_BYTES_PER_VALUE
    return float(math.prod(full_shape)) * (in_channels * per_value + OUTPUT_BYTES_PER_PIXEL)


def estimate_bytes(
    h: int, w: int, in_channels: int, params: SegmentParams, lean: bool = False
) -> float:
    """Peak memory of a run on an ``h x w`` image, in bytes (without the margin)."""
    return BASE_BYTES + h * w * bytes_per_pixel(params, in_channels, lean)


def gb(n: float) -> str:
    """``n`` bytes in gigabytes, for messages."""
    return f"{n / 1e9:.1f} GB"
