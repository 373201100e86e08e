"""The optimisation step, written for speed (imported lazily: it imports torch).

Everything here computes what the reference loop computes (see
``_engine.similarity_loss`` / ``_engine.continuity_loss`` and ``torch.optim.SGD``);
tests compare them value for value and gradient for gradient. What differs is
the memory traffic:

- :class:`ClusterLoss` computes the loss and its gradient in one pass over the
  response, so autograd keeps one tensor instead of the log-probabilities, two
  difference maps, their signs and the zero-filled gradients of four slices;
- :class:`MomentumSGD` is SGD with momentum in three fused ``_foreach`` calls,
  without ``torch.optim``'s lazy import of ``torch._dynamo`` (0.85 s, which
  also stalls napari's event loop once).

On the CPU, :func:`heap_allocator` keeps freed activations in the heap (main
thread, small runs) and large tensors come from transparent huge pages (``THP_MEM_ALLOC_ENABLE``, set
in ``napari_inceptseg/__init__``), so the kernel faults fresh activation memory in
2 MB at a time instead of 4 KB.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import sys
import threading
from typing import Iterator, List, Tuple

import torch


class ClusterLoss(torch.autograd.Function):
    """``w_sim * CE(r, argmax r) + w_con * continuity(r)`` of an ``(N, C, *spatial)``
    response (2 or 3 spatial axes).

    Returns ``(loss, loss_sim, loss_con, target)`` where ``target`` is the
    argmax ``(N, *spatial)``. The gradient is computed in the forward pass and kept
    as the only saved tensor. ``axis_weights`` (one per spatial axis, default 1)
    scale the continuity term of each axis (anisotropic voxels). With
    ``scribbles`` (``(N, 1, *spatial)`` channel ids, -1 where unlabelled) the
    scribbled pixels are pulled towards their channel instead of their argmax,
    with weight ``w_scr`` (Kim et al. 2020): ``loss_sim`` is then the mean over
    the unscribbled pixels and ``w_scr`` times the scribbled pixels' mean
    cross-entropy is added to ``loss``.
    """

    @staticmethod
    def forward(ctx, response: torch.Tensor, w_sim: float, w_con: float,  # type: ignore[override]
                axis_weights=None, scribbles=None, w_scr: float = 0.0):
        n_px = response.numel() // response.shape[1]
        with torch.no_grad():
            loss_scr = None
            if scribbles is None:
                grad, target, nll = similarity_grad(response, 1, w_sim / n_px)
                loss_sim = nll.div_(n_px)
            else:
                grad, target, loss_sim, loss_scr = _scribble_grad(response, scribbles, w_sim, w_scr)
            loss_con = response.new_zeros(())
            for k, dim in enumerate(range(2, response.dim())):
                weight = 1.0 if axis_weights is None else float(axis_weights[k])
                # the reference takes the mean of an empty tensor (NaN) when a side
                # is 1 pixel long; no neighbours, no loss
                pairs = response.numel() // response.shape[dim] * (response.shape[dim] - 1)
                if pairs and weight:
                    loss_con += add_continuity_grad_(grad, response, dim, w_con * weight / pairs) * (weight / pairs)
            loss = loss_sim * w_sim + loss_con * w_con
            if loss_scr is not None:
                loss = loss + loss_scr * w_scr
            target = target.squeeze(1)
        ctx.save_for_backward(grad)
        ctx.mark_non_differentiable(loss_sim, loss_con, target)
        return loss, loss_sim, loss_con, target

    @staticmethod
    def backward(ctx, grad_loss, *_unused):  # type: ignore[override]
        (grad,) = ctx.saved_tensors
        return grad.mul_(grad_loss), None, None, None, None, None


def _scribble_grad(response: torch.Tensor, scribbles: torch.Tensor, w_sim: float, w_scr: float):
    """Gradient of ``w_sim * mean CE(unscribbled, argmax) + w_scr * mean CE(scribbled,
    scribble channel)`` (either mean is 0 over an empty set); returns
    ``(grad, argmax, loss_sim, loss_scr)``."""
    target = response.argmax(1, keepdim=True)
    mask = scribbles >= 0
    n_scr = mask.sum()
    n_sim = (mask.numel() - n_scr).clamp_(min=1)
    goal = torch.where(mask, scribbles, target)
    grad = torch.log_softmax(response, 1)
    picked = grad.gather(1, goal)
    nll_scr = picked.masked_fill(~mask, 0).sum().neg_()
    nll_sim = picked.sum().neg_() - nll_scr
    n_scr = n_scr.clamp_(min=1)
    grad.exp_()
    grad.scatter_(1, goal, picked.exp_().sub_(1))
    grad.mul_(torch.where(mask, w_scr / n_scr, w_sim / n_sim))
    return grad, target, nll_sim / n_sim, nll_scr / n_scr


def similarity_grad(response: torch.Tensor, dim: int, scale: float):
    """``scale * (softmax - one-hot of the argmax)`` along ``dim``, the gradient of
    the summed cross-entropy of ``response`` against its own argmax. Returns
    ``(grad, target, nll)``: the argmax (``dim`` kept) and the summed -log p."""
    target = response.argmax(dim, keepdim=True)
    grad = torch.log_softmax(response, dim)
    picked = grad.gather(dim, target)
    nll = picked.sum().neg_()
    grad.exp_()  # softmax
    grad.scatter_(dim, target, picked.exp_().sub_(1))  # softmax - one-hot
    grad.mul_(scale)
    return grad, target, nll


def add_continuity_grad_(grad: torch.Tensor, response: torch.Tensor, dim: int, scale: float) -> torch.Tensor:
    """Add ``scale`` times the gradient of ``sum |r[i+1] - r[i]|`` along ``dim`` to
    ``grad`` (in place); return that sum."""
    size = response.shape[dim]
    if size < 2:
        return response.new_zeros(())
    diff = response.narrow(dim, 1, size - 1) - response.narrow(dim, 0, size - 1)
    total = torch.linalg.vector_norm(diff, 1)
    diff.sign_()
    grad.narrow(dim, 1, size - 1).add_(diff, alpha=scale)
    grad.narrow(dim, 0, size - 1).sub_(diff, alpha=scale)
    return total


def cluster_loss(response: torch.Tensor, w_sim: float, w_con: float, axis_weights=None,
                 scribbles=None, w_scr: float = 0.0):
    """``(loss, loss_sim, loss_con, target)``; see :class:`ClusterLoss`."""
    return ClusterLoss.apply(response, float(w_sim), float(w_con), axis_weights, scribbles, float(w_scr))


def count_labels(target: torch.Tensor, n_channels: int) -> torch.Tensor:
    """Number of distinct clusters in ``target``, as a tensor on its device (no host sync)."""
    return torch.bincount(target.reshape(-1), minlength=n_channels).count_nonzero()


class MomentumSGD:
    """``torch.optim.SGD(params, lr, momentum)`` (no dampening, no Nesterov, no
    weight decay): ``buf = momentum * buf + grad`` (``buf = grad`` at the first
    step), ``param -= lr * buf``."""

    def __init__(self, params, lr: float, momentum: float = 0.9):
        self.params: List[torch.Tensor] = [p for p in params if p.requires_grad]
        self.lr = float(lr)
        self.momentum = float(momentum)
        self.buffers: List[torch.Tensor] = []

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self) -> None:
        params = [p for p in self.params if p.grad is not None]
        grads = [p.grad for p in params]
        if not self.buffers:
            self.buffers = [g.clone() for g in grads]
        else:
            torch._foreach_mul_(self.buffers, self.momentum)
            torch._foreach_add_(self.buffers, grads)
        torch._foreach_add_(params, self.buffers, alpha=-self.lr)


def memory_format_for(device: torch.device, dims: int = 2):
    """Channels-last on CPU and CUDA (oneDNN and cuDNN prefer it), contiguous elsewhere."""
    if device.type not in ("cpu", "cuda"):
        return torch.contiguous_format
    return torch.channels_last if dims == 2 else torch.channels_last_3d


def stats_tuple(*tensors: torch.Tensor) -> Tuple[float, ...]:
    """Several scalar tensors to Python floats with one device synchronisation."""
    return tuple(torch.stack([t.detach().float() for t in tensors]).tolist())


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
        libc.gnu_get_libc_version  # mallopt's parameters below are glibc's
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
    allocator, so that fragmentation cannot make a run grow beyond its plan."""

    def __init__(self, libc=None, allowance: float = 0.0):
        self.libc = libc
        self.limit = _rss() + allowance if libc is not None else None

    def check(self) -> None:
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
