"""How much memory a run needs, how much there is, and a clear refusal when it
does not fit -- before anything is allocated (no torch import here).

The model counts the float32 values per pixel that the engine keeps alive at its
peak (activations saved for the backward pass, the loss gradient, BatchNorm
outputs, max-pool indices), fitted to peak RSS measured with
``benchmarks/speed.py`` on the CPU (docs/benchmarks.md).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Tuple

from ._params import SegmentParams

#: process overhead beyond the activations (PyTorch's libraries, the network)
BASE_BYTES = 0.45e9
#: measured peaks are at most this much above the model (THP rounding, allocator slack)
MARGIN = 1.15


#: the memory-lean vanilla step is used when the regular one would need more than this
LEAN_ABOVE_BYTES = 4e9


def bytes_per_pixel(params: SegmentParams, in_channels: int = 3, lean: bool = False) -> float:
    """Peak bytes per pixel of one optimisation step (``lean``: the memory-lean
    ``vanilla`` step of ``_lean.py``)."""
    c, n = params.n_channels, params.n_conv
    if lean and params.arch == "vanilla":
        # ReLU outputs of the 3x3 layers and the response/gradient plane (at least
        # three planes alive at a time), the argmax (int64) and block temporaries
        return 4.0 * (c * (max(n + 1, 3) + 0.15) + in_channels) + 8
    if params.arch == "vanilla":
        # per 3x3 layer: ReLU output and BatchNorm output; then the 1x1 layer's
        # output, the response, its loss gradient and the gradients in flight
        floats = c * (2 * n + 4.2) + in_channels
    else:
        # first block (15 -> 256), second (256 -> 128), later ones (128 -> 128),
        # in float32 values per pixel including max-pool indices (int64), plus the head
        floats = 1250 + 1376 + 1000 * (n - 1) + 4 * c + in_channels
    return 4.0 * floats * 1.02


def estimate_bytes(h: int, w: int, in_channels: int, params: SegmentParams, lean: bool = False) -> float:
    """Peak memory of a run on an ``h x w`` image, in bytes (without the margin)."""
    return BASE_BYTES + h * w * bytes_per_pixel(params, in_channels, lean)


def use_lean(h: int, w: int, in_channels: int, params: SegmentParams, device: str,
             have: Optional[float] = None) -> bool:
    """Whether a run takes the memory-lean ``vanilla`` step: when the regular step
    would need more than ``LEAN_ABOVE_BYTES`` or more than half of the free memory.
    It is slower per iteration (it recomputes cheap layers and works block by
    block). NAPARI_INCEPTSEG_LEAN=0 / 1 forces it off / on."""
    if params.arch != "vanilla" or params.precision != "float32" or str(device).split(":")[0] not in ("cpu", "cuda"):
        return False
    mode = os.environ.get("NAPARI_INCEPTSEG_LEAN", "auto")
    if mode in ("0", "1"):
        return mode == "1"
    need = estimate_bytes(h, w, in_channels, params)
    if have is None:
        have = available_bytes(device)
    return need > LEAN_ABOVE_BYTES or (have is not None and need > have / 2)


def _cgroup_room() -> Optional[int]:
    """Bytes left under a cgroup v2 / v1 memory limit, if there is one."""
    for limit_file, usage_file in (
        ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
        ("/sys/fs/cgroup/memory/memory.limit_in_bytes", "/sys/fs/cgroup/memory/memory.usage_in_bytes"),
    ):
        try:
            limit = Path(limit_file).read_text().strip()
            usage = int(Path(usage_file).read_text().strip())
        except (OSError, ValueError):
            continue
        if limit.isdigit() and int(limit) < 1 << 60:
            return max(0, int(limit) - usage)
    return None


def available_bytes(device: str = "cpu") -> Optional[int]:
    """Memory a run may use now on ``device`` ('cpu', 'cuda', 'cuda:N', 'mps'), or None if unknown."""
    kind = str(device).split(":")[0]
    if kind == "cuda":
        import torch

        index = torch.device(device).index
        free, _total = torch.cuda.mem_get_info(index if index is not None else torch.cuda.current_device())
        return int(free)
    if kind != "cpu":
        return None  # MPS shares system memory, but reports nothing useful
    room = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                room = int(line.split()[1]) * 1024
                break
    except (OSError, ValueError, IndexError):
        pass
    if room is None:
        try:
            import psutil  # optional

            room = int(psutil.virtual_memory().available)
        except Exception:  # noqa: BLE001 - no way to tell: do not refuse
            return None
    cgroup = _cgroup_room()
    return min(room, cgroup) if cgroup is not None else room


def _gb(n: float) -> str:
    return f"{n / 1e9:.1f} GB"


def check_fits(h: int, w: int, in_channels: int, params: SegmentParams, device: str,
               lean: bool = False) -> None:
    """Raise a ``MemoryError`` that says what fits when a run would not fit in memory."""
    if os.environ.get("NAPARI_INCEPTSEG_NO_MEMORY_CHECK"):
        return
    have = available_bytes(device)
    if have is None:
        return
    need = estimate_bytes(h, w, in_channels, params, lean) * MARGIN
    if need <= have:
        return
    per_px = bytes_per_pixel(params, in_channels, lean) * MARGIN
    max_px = max(0.0, (have - BASE_BYTES * MARGIN) / per_px)
    scale = math.sqrt(max_px / (h * w)) if max_px > 0 else 0.0
    side_h, side_w = int(h * scale), int(w * scale)
    hint = [f"downscale it to about {side_h} x {side_w} (a factor of {scale:.2f} per side)"
            if scale > 0 else "free some memory"]
    if params.arch == "inception":
        alt = estimate_bytes(h, w, in_channels, params.replace(arch="vanilla"), lean=True) * MARGIN
        hint.append(f"use arch='vanilla' (needs about {_gb(alt)})")
    if params.n_channels > 16:
        hint.append("use fewer channels (n_channels)")
    raise MemoryError(
        f"a {h} x {w} image needs about {_gb(need)} of memory with {params.arch!r} "
        f"({params.n_channels} channels) but about {_gb(have)} is available on {device}: "
        f"{', or '.join(hint)}"
    )


def heap_mode_ok(h: int, w: int, in_channels: int, params: SegmentParams) -> bool:
    """Whether a CPU run is small enough to keep freed memory in the heap (faster,
    but up to twice the peak): the doubled estimate must fit in half of what is free."""
    have = available_bytes("cpu")
    return have is not None and 2 * estimate_bytes(h, w, in_channels, params) <= have / 2


# -- planning a run: the whole image, the memory-lean step, or tiles ---------------------

#: the largest tile the automatic choice takes (pixels in 2D, voxels in 3D): larger
#: tiles make each step slower without helping the clustering much
AUTO_TILE_PIXELS = {2: 1024 * 1024, 3: 64 * 64 * 64}
#: the smallest tile side a run may use (and at least 2 x receptive radius + 8)
MIN_TILE = 24


def receptive_radius(params: SegmentParams) -> int:
    """Pixels of context each output pixel sees on every side (see ``_models``)."""
    return params.n_conv if params.arch == "vanilla" else 2 * (params.n_conv + 1)


def min_tile_side(params: SegmentParams) -> int:
    return max(MIN_TILE, 2 * receptive_radius(params) + 8)


@dataclass(frozen=True)
class RunPlan:
    """How a run will use memory: ``tile`` is None for the whole image at once."""

    shape: Tuple[int, ...]
    lean: bool
    tile: Optional[Tuple[int, ...]]
    need_bytes: float  # the whole image's estimated peak (with the margin)
    budget_bytes: Optional[float]
    reason: str

    @property
    def tiled(self) -> bool:
        return self.tile is not None

    def describe(self) -> str:
        """One line for the widget's status and the CLI: the path taken and why."""
        return self.reason


def _xs(shape) -> str:
    return " x ".join(str(int(s)) for s in shape)


def _fit_tile(shape: Tuple[int, ...], max_px: float) -> Tuple[int, ...]:
    """The most cube-like tile of at most ``max_px`` pixels inside ``shape``."""
    tile = [1] * len(shape)
    if max_px < 1:
        return tuple(tile)
    order = sorted(range(len(shape)), key=lambda a: shape[a])
    left = max_px
    for k, a in enumerate(order):
        side = int(left ** (1.0 / (len(order) - k)))
        tile[a] = max(1, min(shape[a], side))
        left /= tile[a]
    return tuple(tile)


def plan_run(shape: Tuple[int, ...], in_channels: int, params: SegmentParams, device: str,
             guided: bool = False) -> RunPlan:
    """Choose between the whole image (regular or memory-lean step) and tiles.

    ``params.tile_size > 0`` asks for tiles of that side wherever the image is
    larger; ``0`` tiles only when the whole image does not fit in the budget
    (``params.memory_gb``, or what is free on ``device``), with the largest
    tile that fits, up to ``AUTO_TILE_PIXELS``. Raises ``MemoryError`` naming
    what fits when not even the smallest tile does.
    """
    shape = tuple(int(s) for s in shape)
    dims = len(shape)
    n_px = float(math.prod(shape))
    budget: Optional[float] = None
    if not os.environ.get("NAPARI_INCEPTSEG_NO_MEMORY_CHECK"):
        have = available_bytes(device)
        budget = None if have is None else float(have)
    if params.memory_gb:
        budget = params.memory_gb * 1e9 if budget is None else min(budget, params.memory_gb * 1e9)
    lean = (dims == 2 and not guided and budget is not None
            and use_lean(shape[0], shape[1], in_channels, params, device, budget))
    need = (BASE_BYTES + n_px * bytes_per_pixel(params, in_channels, lean)) * MARGIN
    per_px = bytes_per_pixel(params, in_channels) * MARGIN
    room_px = float("inf") if budget is None else (budget - BASE_BYTES * MARGIN) / per_px
    smallest = min_tile_side(params)

    if params.tile_size and params.tile_size < smallest:
        raise ValueError(f"tile_size must be 0 (automatic) or at least {smallest} for {params.arch!r} "
                         f"with n_conv={params.n_conv}, got {params.tile_size}")
    if params.tile_size and any(s > params.tile_size for s in shape):
        tile = tuple(min(s, params.tile_size) for s in shape)
        if math.prod(tile) > room_px:
            raise MemoryError(
                f"a tile of {_xs(tile)} needs about {_gb(BASE_BYTES * MARGIN + math.prod(tile) * per_px)} "
                f"of memory with {params.arch!r} but about {_gb(budget)} is available on {device}: "
                f"use a smaller tile_size (at most about {int(max(room_px, 0) ** (1 / dims))})"
            )
        return RunPlan(shape, False, tile, need, budget,
                       f"tiles of {_xs(tile)} (tile_size {params.tile_size}), predicted tile by tile")
    if budget is None or need <= budget:
        how = "the whole image at once" + (", with the memory-lean step" if lean else "")
        avail = "" if budget is None else f" of about {_gb(budget)} available"
        return RunPlan(shape, lean, None, need, budget, f"{how} (needs about {_gb(need)}{avail})")
    max_px = min(room_px, AUTO_TILE_PIXELS[dims])
    tile = _fit_tile(shape, max_px)
    if max_px <= 0 or any(t < min(smallest, s) for t, s in zip(tile, shape)):
        hint = ("free some memory" if room_px < 1
                else f"a tile of {_xs(_fit_tile(shape, room_px))} is all that fits")
        if params.arch == "inception":
            hint += ", or use arch='vanilla'"
        if params.n_channels > 16:
            hint += ", or use fewer channels (n_channels)"
        raise MemoryError(
            f"a {_xs(shape)} image needs about {_gb(need)} of memory with {params.arch!r} "
            f"({params.n_channels} channels) and not even a {smallest}-pixel tile fits in the "
            f"about {_gb(budget)} available on {device}: {hint}"
        )
    return RunPlan(
        shape, False, tile, need, budget,
        f"tiles of {_xs(tile)}: the whole image needs about {_gb(need)} but about "
        f"{_gb(budget)} is available; one network is trained on tiles and predicts tile by tile",
    )
