"""A memory-lean training step for the ``vanilla`` network (imported lazily: torch).

Autograd keeps about eight response-sized tensors alive in a ``vanilla`` step
(ReLU and BatchNorm outputs of every layer, the 1x1 layer's output, the loss
gradient, and the gradients in flight): 14 GB for a 2048 x 2048 image. This step
computes the same loss, gradients and BatchNorm statistics by hand with at most
three such tensors (``n_conv = 2``): it keeps only the ReLU outputs ``a_k`` (from
which the BatchNorm outputs are recomputed, exactly, when needed), works in
place, folds the last BatchNorm into the 1x1 convolution, and computes the loss
gradient in row blocks, carrying one row of the response across blocks. Tests
compare it with autograd on the reference network.

Layout: every plane is ``(1, C, H, W)`` channels-last, so ``plane.permute(0, 2, 3, 1)``
is a contiguous ``(1, H, W, C)`` view and a block of rows is a contiguous slab.
"""

from __future__ import annotations

from typing import List, Tuple

import torch
import torch.nn.functional as F

#: rows per block for the blockwise passes (bounded extra memory: rows x W x C floats)
BLOCK_PIXELS = 1 << 16


def _hwc(t: torch.Tensor) -> torch.Tensor:
    """(1, C, H, W) channels-last -> (H, W, C) view."""
    return t.permute(0, 2, 3, 1)[0]


def _rows(h: int, w: int):
    step = max(1, BLOCK_PIXELS // max(1, w))
    for a in range(0, h, step):
        yield a, min(h, a + step)


def _bn_stats(a_hwc: torch.Tensor, bn) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Batch mean, biased variance and 1/std per channel of a (H, W, C) tensor;
    updates ``bn``'s running statistics as ``nn.BatchNorm2d`` does in training."""
    h, w, c = a_hwc.shape
    n = h * w
    # two blockwise passes (sum, then centred sum of squares): much faster than
    # var_mean's Welford over the outer dimension, and as accurate
    mean = a_hwc.new_zeros(c)
    for a, b in _rows(h, w):
        mean += a_hwc[a:b].reshape(-1, c).sum(0)
    mean /= n
    var = a_hwc.new_zeros(c)
    for a, b in _rows(h, w):
        d = a_hwc[a:b].reshape(-1, c) - mean
        var += (d * d).sum(0)
    var /= n
    if bn.track_running_stats and bn.running_mean is not None:
        m = bn.momentum if bn.momentum is not None else 1.0 / float(bn.num_batches_tracked + 1)
        bn.running_mean.mul_(1 - m).add_(mean, alpha=m)
        bn.running_var.mul_(1 - m).add_(var * (n / max(1, n - 1)), alpha=m)
        bn.num_batches_tracked.add_(1)
    return mean, var, torch.rsqrt(var + bn.eps)


def _affine(bn, mean, invstd):
    """BatchNorm as y = a * scale + shift."""
    scale = bn.weight * invstd
    return scale, bn.bias - mean * scale


def _bn_backward_inplace(g_hwc, a_hwc, mean, invstd, bn, relu_mask: bool):
    """Turn dL/dy (``g_hwc``, in place) into dL/d(BN input) -- and through the
    preceding ReLU when ``relu_mask`` (``a`` is that ReLU's output) -- and
    return (dL/dgamma, dL/dbeta)."""
    h, w, c = g_hwc.shape
    n = h * w
    s1 = g_hwc.new_zeros(c)
    s2 = g_hwc.new_zeros(c)
    for a, b in _rows(h, w):
        g = g_hwc[a:b].reshape(-1, c)
        xh = (a_hwc[a:b].reshape(-1, c) - mean).mul_(invstd)
        s1 += g.sum(0)
        s2 += (g * xh).sum(0)
    k = bn.weight * invstd
    for a, b in _rows(h, w):
        g = g_hwc[a:b].reshape(-1, c)
        av = a_hwc[a:b].reshape(-1, c)
        xh = (av - mean) * invstd
        g.sub_(s1 / n).sub_(xh * (s2 / n)).mul_(k)
        if relu_mask:
            g.mul_(av > 0)
    return s2, s1


class LeanVanillaStep:
    """One optimisation step of :class:`~napari_inceptseg._models.VanillaNet`
    (training-mode BatchNorm) on the clustering loss. ``__call__`` sets every
    parameter's ``.grad`` and returns ``(loss, loss_sim, loss_con, target)``
    like ``_train.cluster_loss``."""

    def __init__(self, model):
        self.model = model

    @torch.no_grad()
    def __call__(self, x: torch.Tensor, w_sim: float, w_con: float):
        m = self.model
        _, _, h, w = x.shape
        n = h * w
        layers = [(m.conv1, m.bn1)] + list(zip(m.conv2, m.bn2))
        cl = torch.channels_last

        # ---- forward: keep only the ReLU outputs a_k and the BN statistics -------------
        acts: List[torch.Tensor] = []
        stats = []
        inp = x
        for k, (conv, bn) in enumerate(layers):
            z = F.conv2d(inp, conv.weight, conv.bias, padding=1).contiguous(memory_format=cl)
            del inp
            z.relu_()
            mean, _var, invstd = _bn_stats(_hwc(z), bn)
            acts.append(z)
            stats.append((mean, invstd))
            if k + 1 < len(layers):  # next input: y = BN(a), a fresh plane, freed after the conv
                scale, shift = _affine(bn, mean, invstd)
                inp = (_hwc(z) * scale + shift).permute(2, 0, 1)[None]
        a_last = _hwc(acts[-1])
        c = m.conv3.out_channels
        mean_l, invstd_l = stats[-1]
        scale_l, shift_l = _affine(layers[-1][1], mean_l, invstd_l)
        w3 = m.conv3.weight.reshape(c, -1)
        # conv3(BN(a)) = a @ (W3 * scale)^T + (W3 @ shift + b3)
        w3f = w3 * scale_l
        b3f = w3 @ shift_l + m.conv3.bias
        plane = torch.addmm(b3f, a_last.reshape(n, -1), w3f.t())  # z3, (H*W, C)
        g_hwc = plane.view(h, w, c)
        mean3, _var3, invstd3 = _bn_stats(g_hwc, m.bn3)
        scale3, shift3 = _affine(m.bn3, mean3, invstd3)
        plane.mul_(scale3).add_(shift3)  # the response r

        # ---- loss and dL/dr, in place over r, block by block ------------------------------
        target = torch.empty(h, w, dtype=torch.long, device=x.device)
        loss_sim = torch.zeros((), device=x.device)
        loss_y = torch.zeros((), device=x.device)
        loss_x = torch.zeros((), device=x.device)
        ny, nx = (h - 1) * w * c, h * (w - 1) * c
        ay = w_con / ny if ny else 0.0
        ax = w_con / nx if nx else 0.0
        carry = None  # sign(r[a] - r[a-1]) from the block above, to add to row a
        for a, b in _rows(h, w):
            r = g_hwc[a:b]
            tgt = r.argmax(-1)
            target[a:b] = tgt
            grad = torch.log_softmax(r, -1)
            picked = grad.gather(-1, tgt[..., None])
            loss_sim -= picked.sum()
            grad.exp_()
            grad.scatter_(-1, tgt[..., None], picked.exp_().sub_(1))
            grad.mul_(w_sim / n)
            if w > 1:
                d = r[:, 1:] - r[:, :-1]
                loss_x += d.abs().sum()
                d.sign_()
                grad[:, 1:].add_(d, alpha=ax)
                grad[:, :-1].sub_(d, alpha=ax)
            if b - a > 1:
                d = r[1:] - r[:-1]
                loss_y += d.abs().sum()
                d.sign_()
                grad[1:].add_(d, alpha=ay)
                grad[:-1].sub_(d, alpha=ay)
            if carry is not None:
                grad[0].add_(carry, alpha=ay)
                carry = None
            if b < h:  # the pair (b-1, b): row b is still the response
                d = g_hwc[b] - r[-1]
                loss_y += d.abs().sum()
                carry = d.sign_()
                grad[-1].sub_(carry, alpha=ay)
            r.copy_(grad)
            del grad, picked, r
        loss_sim = loss_sim / n
        loss_con = (loss_y / ny if ny else 0.0) + (loss_x / nx if nx else 0.0)
        loss_con = torch.as_tensor(loss_con, dtype=torch.float32, device=x.device)
        loss = loss_sim * w_sim + loss_con * w_con

        # ---- backward -------------------------------------------------------------------
        # BN3 (input z3 = a @ w3f^T + b3f, recomputed block by block), then conv3
        s1 = g_hwc.new_zeros(c)
        s2 = g_hwc.new_zeros(c)
        for a, b in _rows(h, w):
            g = g_hwc[a:b].reshape(-1, c)
            xh = (torch.addmm(b3f, a_last[a:b].reshape(-1, a_last.shape[-1]), w3f.t()) - mean3) * invstd3
            s1 += g.sum(0)
            s2 += (g * xh).sum(0)
        m.bn3.weight.grad, m.bn3.bias.grad = s2, s1
        k3 = m.bn3.weight * invstd3
        gw3 = torch.zeros_like(w3)
        gsum = torch.zeros(c, dtype=w3.dtype, device=w3.device)
        for a, b in _rows(h, w):
            g = g_hwc[a:b].reshape(-1, c)
            av = a_last[a:b].reshape(-1, a_last.shape[-1])
            xh = (torch.addmm(b3f, av, w3f.t()) - mean3) * invstd3
            g.sub_(s1 / n).sub_(xh * (s2 / n)).mul_(k3)  # dL/dz3
            gw3.addmm_(g.t(), av)
            gsum += g.sum(0)
            g.copy_(g @ w3)  # dL/dy of the last 3x3 layer, in place
        # y = a * scale_l + shift_l  ->  dL/dW3 = (g^T a) * scale_l + gsum (x) shift_l
        m.conv3.weight.grad = (gw3 * scale_l + torch.outer(gsum, shift_l)).reshape(m.conv3.weight.shape)
        m.conv3.bias.grad = gsum

        grad_plane = g_hwc.permute(2, 0, 1)[None]  # (1, C, H, W) channels-last view
        for k in range(len(layers) - 1, -1, -1):
            conv, bn = layers[k]
            mean, invstd = stats[k]
            a_k = acts[k]
            bn.weight.grad, bn.bias.grad = _bn_backward_inplace(
                _hwc(grad_plane), _hwc(a_k), mean, invstd, bn, relu_mask=True
            )  # grad_plane is now dL/dz_k
            if k == 0:
                inp = x
            else:  # this conv's input: BN of the previous layer, recomputed
                pscale, pshift = _affine(layers[k - 1][1], *stats[k - 1])
                inp = (_hwc(acts[k - 1]) * pscale + pshift).permute(2, 0, 1)[None]
            acts[k] = None
            del a_k
            _, gw, gb = torch.ops.aten.convolution_backward(
                grad_plane, inp, conv.weight, [conv.out_channels], [1, 1], [1, 1], [1, 1],
                False, [0, 0], 1, [False, True, True],
            )
            conv.weight.grad, conv.bias.grad = gw, gb
            if k == 0:
                break
            del inp
            g_in = torch.nn.grad.conv2d_input(
                (1, conv.in_channels, h, w), conv.weight, grad_plane, padding=1
            ).contiguous(memory_format=cl)
            del grad_plane
            grad_plane = g_in
            del g_in
        return loss, loss_sim, loss_con, target
