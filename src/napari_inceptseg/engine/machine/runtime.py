"""The machine: devices, precision, memory and the allocator -- the only machine-aware
room of the engine (torch is imported inside the functions, not here).

- devices: :func:`available_devices`, :func:`resolve_device`, :data:`CUDA_SYNC_EVERY`;
- precision and layout: :func:`autocast`, :func:`memory_format_for`;
- memory: :func:`available_bytes` (free memory, cgroup limits), :func:`oom_types`,
  :func:`is_out_of_memory`;
- the CPU's allocator: transparent huge pages (``THP_MEM_ALLOC_ENABLE``, set when the
  engine is first imported) and the fast heap (:func:`heap_allocator`). Large CPU
  tensors come from 2 MB huge pages, so the kernel faults fresh activation memory in
  2 MB at a time instead of 4 KB (docs/benchmarks.md); set the variable to 0 to opt out.
  PyTorch reads it when it first allocates, so it only works when the engine is
  imported before torch allocates.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from ...params import device_name

if TYPE_CHECKING:  # pragma: no cover
    import torch

os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")

#: on CUDA, read losses and cluster counts back every this many iterations
CUDA_SYNC_EVERY = 8


# -- devices and precision -----------------------------------------------------------------


def available_devices() -> list[str]:
    """The devices present on this machine, best first.

    Returns
    -------
    list of str
        ``'cuda'`` and ``'mps'`` when present, then always ``'cpu'``.

    Examples
    --------
    >>> from napari_inceptseg import available_devices
    >>> available_devices()[-1]
    'cpu'
    """
    import torch

    found = []
    if torch.cuda.is_available():
        found.append("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        found.append("mps")
    return found + ["cpu"]


def resolve_device(device: str = "auto") -> torch.device:
    """Turn 'auto' / 'cuda' / 'cuda:N' / 'mps' / 'cpu' into a torch.device.

    Asking for a device that is absent raises a ValueError that says what is.
    """
    import torch

    name = device_name(str(device))
    present = available_devices()
    if name == "auto":
        return torch.device(present[0])
    kind, _, index = name.partition(":")
    if kind not in present:
        raise ValueError(
            f"device {device!r} was requested but is not available here "
            f"(available: {', '.join(present)}); use device='auto' or 'cpu'"
        )
    if kind == "cuda" and index and int(index) >= torch.cuda.device_count():
        raise ValueError(
            f"device {device!r} does not exist: this machine has "
            f"{torch.cuda.device_count()} CUDA device(s)"
        )
    return torch.device(name)


def autocast(device, precision: str):
    """Mixed precision for the network's passes (the loss stays float32)."""
    import contextlib

    import torch

    if precision == "float32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=getattr(torch, precision))


def memory_format_for(device: torch.device, dims: int = 2):
    """Channels-last on CPU and CUDA (oneDNN and cuDNN prefer it), contiguous elsewhere."""
    import torch

    if device.type not in ("cpu", "cuda"):
        return torch.contiguous_format
    return torch.channels_last if dims == 2 else torch.channels_last_3d


def stats_tuple(*tensors: torch.Tensor) -> tuple[float, ...]:
    """Several scalar tensors to Python floats with one device synchronisation."""
    import torch

    return tuple(torch.stack([t.detach().float() for t in tensors]).tolist())


def oom_types() -> tuple:
    """The exceptions that mean out of memory (the CPU's and CUDA's)."""
    import torch

    types = [MemoryError]
    oom = getattr(torch.cuda, "OutOfMemoryError", None)
    if oom is not None:
        types.append(oom)
    return tuple(types)


#: what PyTorch's allocators say in the plain RuntimeError they raise when out of memory
_OOM_WORDS = ("can't allocate memory", "not enough memory", "out of memory")


def is_out_of_memory(exc: BaseException) -> bool:
    """Whether ``exc`` means out of memory: one of :func:`oom_types`, or the plain
    RuntimeError of PyTorch's CPU (and MPS) allocators.
    """
    if isinstance(exc, oom_types()):
        return True
    return isinstance(exc, RuntimeError) and any(w in str(exc) for w in _OOM_WORDS)


# -- free memory ---------------------------------------------------------------------------


def _cgroup_room() -> int | None:
    """Bytes left under a cgroup v2 / v1 memory limit, if there is one."""
    for limit_file, usage_file in (
        ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
        (
            "/sys/fs/cgroup/memory/memory.limit_in_bytes",
            "/sys/fs/cgroup/memory/memory.usage_in_bytes",
        ),
    ):
        try:
            limit = Path(limit_file).read_text().strip()
            usage = int(Path(usage_file).read_text().strip())
        except (OSError, ValueError):
            continue
        if limit.isdigit() and int(limit) < 1 << 60:
            return max(0, int(limit) - usage)
    return None


def available_bytes(device: str = "cpu") -> int | None:
    """Memory a run may use now on ``device`` ('cpu', 'cuda', 'cuda:N', 'mps'), or None
    if unknown.
    """
    kind = str(device).split(":")[0]
    if kind == "cuda":
        import torch

        index = torch.device(device).index
        free, _total = torch.cuda.mem_get_info(
            index if index is not None else torch.cuda.current_device()
        )
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


# -- allocator ---------------------------------------------------------------------------

_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4
_DEFAULT_MMAP_MAX, _DEFAULT_TRIM = 65536, 128 * 1024  # glibc's defaults
_heap_lock = threading.Lock()
_heap_users = 0


def _glibc():
    if not sys.platform.startswith("linux") or os.environ.get("NAPARI_INCEPTSEG_HEAP", "1") == "0":
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        _ = libc.gnu_get_libc_version  # mallopt's parameters below are glibc's
        return libc
    except (OSError, AttributeError):
        return None


def _rss() -> int:
    """Resident memory of this process in bytes (Linux), 0 where unknown."""
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


class HeapGuard:
    """What :func:`heap_allocator` yields: call :meth:`check` after every step. In heap
    mode, once the process has grown more than ``allowance`` bytes above where it
    started, it gives freed pages back (``malloc_trim``); if that is not enough (small
    live objects pin the freed pages), the rest of the run uses glibc's normal
    allocator, so that fragmentation cannot make a run grow beyond its plan.
    """

    def __init__(self, libc=None, allowance: float = 0.0):
        self.libc = libc
        self.limit = _rss() + allowance if libc is not None else None

    def check(self) -> None:
        """Trim the heap once the process is past its limit; past it still, stop pinning."""
        if self.libc is None or _rss() <= self.limit:
            return
        self.libc.malloc_trim(0)
        if _rss() > self.limit:  # pinned: back to mmap for large blocks, no more checks
            self.libc.mallopt(_M_MMAP_MAX, _DEFAULT_MMAP_MAX)
            self.libc.mallopt(_M_TRIM_THRESHOLD, _DEFAULT_TRIM)
            self.libc = None


@contextlib.contextmanager
def heap_allocator(enabled: bool = True, allowance: float = float("inf")) -> Iterator[HeapGuard]:
    """Keep freed activations in the process heap for the duration of a run.

    glibc hands every tensor over 32 MB to ``mmap`` and back to the kernel when
    it is freed, so each iteration faults in (and the kernel zeroes) gigabytes
    of fresh pages: a third to a half of an iteration's time. Here large blocks
    come from the heap and stay there. Fragmentation makes the heap grow beyond the
    peak (measured: 0.5 to 2.7 times one step's memory over 5 to 150 steps), so the
    yielded :class:`HeapGuard` trims it back once it has grown by ``allowance``
    bytes; the engine enables this only where the step and its allowance fit. At the
    end memory goes back with ``malloc_trim``. glibc honours this only in the main
    thread's arena, so worker threads are left as they are. A no-op elsewhere, or
    with NAPARI_INCEPTSEG_HEAP=0.
    """
    global _heap_users
    on_main = threading.current_thread() is threading.main_thread()
    libc = _glibc() if enabled and on_main else None
    if libc is None:
        yield HeapGuard()
        return
    with _heap_lock:
        _heap_users += 1
        if _heap_users == 1:
            libc.mallopt(_M_MMAP_MAX, 0)
            libc.mallopt(_M_TRIM_THRESHOLD, 2**30)
    try:
        yield HeapGuard(libc, allowance)
    finally:
        with _heap_lock:
            _heap_users -= 1
            if _heap_users == 0:
                libc.mallopt(_M_MMAP_MAX, _DEFAULT_MMAP_MAX)
                libc.mallopt(_M_TRIM_THRESHOLD, _DEFAULT_TRIM)
                libc.malloc_trim(0)


def fast_heap_possible(device: str) -> bool:
    """Whether :func:`heap_allocator` can work here (glibc on Linux, the CPU, not
    turned off with NAPARI_INCEPTSEG_HEAP=0).
    """
    return (
        str(device).split(":")[0] == "cpu"
        and sys.platform.startswith("linux")
        and os.environ.get("NAPARI_INCEPTSEG_HEAP", "1") != "0"
    )
