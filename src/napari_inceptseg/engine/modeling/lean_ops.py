"""The blocked operations of the memory-lean ``vanilla`` step (``lean.py``): 3x3
convolutions and their gradients computed a block of rows at a time, and BatchNorm's
statistics, affine and backward pass worked in place over ``(H, W, C)`` views.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.nn.functional as F

#: rows per block for the blockwise passes (bounded extra memory: rows x W x C floats)
BLOCK_PIXELS = 1 << 16


def hwc(t: torch.Tensor) -> torch.Tensor:
    """(1, C, H, W) channels-last -> (H, W, C) view."""
    return t.permute(0, 2, 3, 1)[0]


#: output pixels per block of the blocked 3x3 convolutions: oneDNN reorders its
#: operands into blocked layouts, which for a whole plane would cost two more planes
CONV_BLOCK_PIXELS = 1 << 18


def rows(h: int, w: int, pixels: int | None = None, min_rows: int = 1):
    """``(first, end)`` row ranges of about ``pixels`` pixels (default ``BLOCK_PIXELS``)."""
    step = max(min_rows, (pixels or BLOCK_PIXELS) // max(1, w))
    for a in range(0, h, step):
        yield a, min(h, a + step)


def _conv_rows(h: int, w: int):
    return rows(h, w, CONV_BLOCK_PIXELS, min_rows=4)


def _padded_rows(t: torch.Tensor, a: int, b: int) -> torch.Tensor:
    """Rows a-1 .. b of a (1, C, H, W) tensor, zero-padded by one pixel on every
    side where that is outside the image: the input of rows a .. b-1 of a 3x3 conv.
    """
    h = t.shape[2]
    lo, hi = max(0, a - 1), min(h, b + 1)
    return F.pad(t[:, :, lo:hi], (1, 1, 1 if a == 0 else 0, 1 if b == h else 0))


def conv3x3(inp: torch.Tensor, conv) -> torch.Tensor:
    """``conv(inp)`` (3x3, padding 1) computed in blocks of rows, channels-last out."""
    _, _, h, w = inp.shape
    out = torch.empty(
        (1, conv.out_channels, h, w),
        dtype=inp.dtype,
        device=inp.device,
        memory_format=torch.channels_last,
    )
    for a, b in _conv_rows(h, w):
        out[:, :, a:b] = F.conv2d(_padded_rows(inp, a, b), conv.weight, conv.bias)
    return out


def conv3x3_weight_grad(grad: torch.Tensor, inp: torch.Tensor, conv):
    """dL/dW and dL/db of a 3x3 conv (padding 1), in blocks of rows."""
    _, _, h, w = inp.shape
    gw = torch.zeros_like(conv.weight)
    gb = torch.zeros_like(conv.bias)
    for a, b in _conv_rows(h, w):
        _, gwb, gbb = torch.ops.aten.convolution_backward(
            grad[:, :, a:b],
            _padded_rows(inp, a, b),
            conv.weight,
            [conv.out_channels],
            [1, 1],
            [0, 0],
            [1, 1],
            False,
            [0, 0],
            1,
            [False, True, True],
        )
        gw += gwb
        gb += gbb
    return gw, gb


def conv3x3_input_grad(grad: torch.Tensor, conv) -> torch.Tensor:
    """dL/d(input) of a 3x3 conv (padding 1), in blocks of rows: input rows a..b-1
    depend on output rows a-1..b only.
    """
    _, _, h, w = grad.shape
    out = torch.empty(
        (1, conv.in_channels, h, w),
        dtype=grad.dtype,
        device=grad.device,
        memory_format=torch.channels_last,
    )
    for a, b in _conv_rows(h, w):
        lo, hi = max(0, a - 1), min(h, b + 1)
        part = torch.nn.grad.conv2d_input(
            (1, conv.in_channels, hi - lo, w), conv.weight, grad[:, :, lo:hi], padding=1
        )
        out[:, :, a:b] = part[:, :, a - lo : b - lo]
        del part
    return out


def moments(
    blocks: Iterable[torch.Tensor], c: int, n: int, device
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and biased variance per channel over ``(pixels, c)`` blocks of ``n``
    pixels in all, in one pass: sum and sum of squares (the inputs are ReLU or
    BatchNorm-bound outputs, of one magnitude, so nothing cancels badly).
    """
    total = torch.zeros(c, device=device)
    squares = torch.zeros(c, device=device)
    for blk in blocks:
        total += blk.sum(0)
        squares += torch.linalg.vector_norm(blk, 2, dim=0).square_()
    mean = total / n
    return mean, (squares / n - mean * mean).clamp_(min=0)


def update_running(bn, mean: torch.Tensor, var: torch.Tensor, n: int) -> None:
    """``bn``'s running statistics, updated as ``nn.BatchNorm2d`` does in training."""
    if bn.track_running_stats and bn.running_mean is not None:
        m = bn.momentum if bn.momentum is not None else 1.0 / float(bn.num_batches_tracked + 1)
        bn.running_mean.mul_(1 - m).add_(mean, alpha=m)
        bn.running_var.mul_(1 - m).add_(var * (n / max(1, n - 1)), alpha=m)
        bn.num_batches_tracked.add_(1)


def bn_stats(a_hwc: torch.Tensor, bn) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Batch mean, biased variance and 1/std per channel of a (H, W, C) tensor;
    updates ``bn``'s running statistics.
    """
    h, w, c = a_hwc.shape
    mean, var = moments((a_hwc[a:b].reshape(-1, c) for a, b in rows(h, w)), c, h * w, a_hwc.device)
    update_running(bn, mean, var, h * w)
    return mean, var, torch.rsqrt(var + bn.eps)


def affine(bn, mean, invstd):
    """BatchNorm as y = a * scale + shift."""
    scale = bn.weight * invstd
    return scale, bn.bias - mean * scale


def bn_backward_inplace(g_hwc, a_hwc, mean, invstd, bn, *, relu_mask: bool):
    """Turn dL/dy (``g_hwc``, in place) into dL/d(BN input) -- and through the
    preceding ReLU when ``relu_mask`` (``a`` is that ReLU's output) -- and
    return (dL/dgamma, dL/dbeta).
    """
    h, w, c = g_hwc.shape
    n = h * w
    s1 = g_hwc.new_zeros(c)
    sga = g_hwc.new_zeros(c)
    for a, b in rows(h, w):
        g = g_hwc[a:b].reshape(-1, c)
        s1 += g.sum(0)
        sga += (g * a_hwc[a:b].reshape(-1, c)).sum(0)
    s2 = (sga - mean * s1) * invstd  # sum of g * normalised input
    # dL/da = k (g - s1/n - xhat s2/n) with xhat = (a - mean) invstd, i.e. k g + alpha a + beta
    k = bn.weight * invstd
    alpha = -k * invstd * s2 / n
    beta = -k * s1 / n - alpha * mean
    for a, b in rows(h, w):
        g = g_hwc[a:b].reshape(-1, c)
        av = a_hwc[a:b].reshape(-1, c)
        g.mul_(k).addcmul_(av, alpha).add_(beta)
        if relu_mask:
            g.masked_fill_(av <= 0, 0)
    return s2, s1
