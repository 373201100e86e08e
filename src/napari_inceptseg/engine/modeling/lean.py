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

from collections import deque
from typing import NamedTuple

import torch

from .lean_ops import (
    affine,
    bn_backward_inplace,
    bn_stats,
    conv3x3,
    conv3x3_input_grad,
    conv3x3_weight_grad,
    hwc,
    moments,
    rows,
    update_running,
)
from .loss import add_continuity_grad_, similarity_grad


class _Head(NamedTuple):
    """What the head's backward needs from the forward pass (``g_hwc`` starts as the response)."""

    g_hwc: torch.Tensor
    w3: torch.Tensor
    w3f: torch.Tensor
    b3f: torch.Tensor
    gram: torch.Tensor
    a_sum: torch.Tensor
    mean3: torch.Tensor
    invstd3: torch.Tensor
    scale_l: torch.Tensor
    shift_l: torch.Tensor


def _loss_and_grad_(g_hwc: torch.Tensor, w_sim: float, w_con: float):
    """The loss of the response ``g_hwc`` (``(H, W, C)``) and dL/dr in place over it,
    block by block; returns ``(loss, loss_sim, loss_con, target)``.
    """
    h, w, c = g_hwc.shape
    n, device = h * w, g_hwc.device
    target = torch.empty(h, w, dtype=torch.long, device=device)
    loss_sim = torch.zeros((), device=device)
    loss_y = torch.zeros((), device=device)
    loss_x = torch.zeros((), device=device)
    ny, nx = (h - 1) * w * c, h * (w - 1) * c
    ay = w_con / ny if ny else 0.0
    ax = w_con / nx if nx else 0.0
    carry = None  # sign(r[a] - r[a-1]) from the block above, to add to row a
    for a, b in rows(h, w):
        r = g_hwc[a:b]
        grad, tgt, nll = similarity_grad(r, -1, w_sim / n)
        target[a:b] = tgt[..., 0]
        loss_sim += nll
        loss_x += add_continuity_grad_(grad, r, 1, ax)
        loss_y += add_continuity_grad_(grad, r, 0, ay)
        if carry is not None:
            grad[0].add_(carry, alpha=ay)
            carry = None
        if b < h:  # the pair (b-1, b): row b is still the response
            d = g_hwc[b] - r[-1]
            loss_y += torch.linalg.vector_norm(d, 1)
            carry = d.sign_()
            grad[-1].sub_(carry, alpha=ay)
        r.copy_(grad)
        del grad, r
    loss_sim = loss_sim / n
    loss_con = (loss_y / ny if ny else 0.0) + (loss_x / nx if nx else 0.0)
    loss_con = torch.as_tensor(loss_con, dtype=torch.float32, device=device)
    loss = loss_sim * w_sim + loss_con * w_con
    return loss, loss_sim, loss_con, target


class LeanVanillaStep:
    """One optimisation step of :class:`~napari_inceptseg.engine.modeling.networks.VanillaNet`
    (training-mode BatchNorm) on the clustering loss. ``__call__`` sets every
    parameter's ``.grad`` and returns ``(loss, loss_sim, loss_con, target)``
    like ``loss.cluster_loss``.
    """

    def __init__(self, model):
        self.model = model

    def _layers_forward(self, x: torch.Tensor):
        """The 3x3 layers in training mode: yields, per layer, its ReLU output ``a``
        and BatchNorm's ``(mean, invstd, scale, shift)`` (running statistics
        updated). The next layer's input ``BN(a)`` is a fresh plane, freed after
        its convolution.
        """
        m = self.model
        layers = [(m.conv1, m.bn1)] + list(zip(m.conv2, m.bn2, strict=False))
        inp = x
        for k, (conv, bn) in enumerate(layers):
            z = conv3x3(inp, conv)
            inp = None  # freed before the next plane is made
            z.relu_()
            mean, _var, invstd = bn_stats(hwc(z), bn)
            scale, shift = affine(bn, mean, invstd)
            yield z, mean, invstd, scale, shift
            if k + 1 < len(layers):
                inp = torch.addcmul(shift, hwc(z), scale).permute(2, 0, 1)[None]
            del z

    @torch.no_grad()
    def __call__(self, x: torch.Tensor, w_sim: float, w_con: float):
        """One training step: ``(loss, loss_sim, loss_con, target)``, gradients left in place."""
        acts, stats, head = self._forward(x)
        loss, loss_sim, loss_con, target = _loss_and_grad_(head.g_hwc, w_sim, w_con)
        self._head_backward(head, hwc(acts[-1]))
        self._layers_backward(x, acts, stats, head.g_hwc)
        return loss, loss_sim, loss_con, target

    def _forward(self, x: torch.Tensor):
        """The forward pass, keeping only the ReLU outputs ``a_k``, the BN statistics and
        what conv3's backward needs; returns ``(acts, stats, head)`` with the response
        in ``head.g_hwc`` (``(H, W, C)``).
        """
        m = self.model
        _, _, h, w = x.shape
        acts: list[torch.Tensor] = []
        stats = []
        scale_l = shift_l = None  # the last layer's BatchNorm affine, folded into conv3
        for z, mean, invstd, scale, shift in self._layers_forward(x):
            acts.append(z)
            stats.append((mean, invstd))
            scale_l, shift_l = scale, shift
        a_last = hwc(acts[-1])
        c = m.conv3.out_channels
        w3 = m.conv3.weight.reshape(c, -1)
        # conv3(BN(a)) = a @ (W3 * scale)^T + (W3 @ shift + b3)
        w3f = w3 * scale_l
        b3f = w3 @ shift_l + m.conv3.bias
        plane = torch.addmm(b3f, a_last.reshape(h * w, -1), w3f.t())  # z3, (H*W, C)
        c_in = a_last.shape[-1]
        gram = w3.new_zeros(c_in, c_in)  # a^T a and sum(a), for conv3's backward
        a_sum = w3.new_zeros(c_in)
        for a, b in rows(h, w):
            blk = a_last[a:b].reshape(-1, c_in)
            gram.addmm_(blk.t(), blk)
            a_sum += blk.sum(0)
        del blk  # a view keeps the whole plane alive
        g_hwc = plane.view(h, w, c)
        mean3, _var3, invstd3 = bn_stats(g_hwc, m.bn3)
        scale3, shift3 = affine(m.bn3, mean3, invstd3)
        plane.mul_(scale3).add_(shift3)  # the response r
        head = _Head(g_hwc, w3, w3f, b3f, gram, a_sum, mean3, invstd3, scale_l, shift_l)
        return acts, stats, head

    def _head_backward(self, head: _Head, a_last: torch.Tensor) -> None:
        """BN3 (input z3 = a @ w3f^T + b3f) and conv3, without recomputing z3: every sum
        over pixels that involves z3 is expressed with M = g^T a, a^T a and sum(a). Sets
        their gradients and turns ``head.g_hwc`` (dL/dr) into dL/dy in place.
        """
        m, g_hwc = self.model, head.g_hwc
        h, w, c = g_hwc.shape
        n, c_in = h * w, a_last.shape[-1]
        s1 = g_hwc.new_zeros(c)
        mga = head.w3.new_zeros(c, c_in)
        for a, b in rows(h, w):
            g = g_hwc[a:b].reshape(-1, c)
            s1 += g.sum(0)
            mga.addmm_(g.t(), a_last[a:b].reshape(-1, c_in))
        sgz = (mga * head.w3f).sum(1) + head.b3f * s1  # sum of g * z3
        s2 = (sgz - head.mean3 * s1) * head.invstd3  # sum of g * normalised z3
        m.bn3.weight.grad, m.bn3.bias.grad = s2, s1
        k3 = m.bn3.weight * head.invstd3
        alpha = -k3 * head.invstd3 * s2 / n
        beta = -k3 * s1 / n - alpha * head.mean3
        # dL/dz3 = k3 g + alpha z3 + beta = k3 g + a @ w_alpha^T + c0
        w_alpha = alpha[:, None] * head.w3f
        c0 = alpha * head.b3f + beta
        # sum of dL/dz3^T a
        gz_a = k3[:, None] * mga + w_alpha @ head.gram + torch.outer(c0, head.a_sum)
        gsum = k3 * s1 + w_alpha @ head.a_sum + n * c0  # sum of dL/dz3
        # y = a * scale_l + shift_l  ->  dL/dW3 = (dz3^T a) * scale_l + sum(dz3) (x) shift_l
        m.conv3.weight.grad = (gz_a * head.scale_l + torch.outer(gsum, head.shift_l)).reshape(
            m.conv3.weight.shape
        )
        m.conv3.bias.grad = gsum
        # dL/dy = dL/dz3 @ W3 = g @ (k3 W3) + a @ (w_alpha^T W3) + c0 @ W3, in place block by block
        k1 = k3[:, None] * head.w3
        k2 = w_alpha.t() @ head.w3
        c1 = c0 @ head.w3
        for a, b in rows(h, w):
            g = g_hwc[a:b].reshape(-1, c)
            out = torch.addmm(c1, g, k1)
            out.addmm_(a_last[a:b].reshape(-1, c_in), k2)
            g.copy_(out)
            del out

    def _layers_backward(self, x, acts, stats, g_hwc) -> None:
        """The 3x3 layers' gradients, last to first; each conv's input is recomputed and
        each ReLU output freed as soon as it is used (three planes alive at most).
        """
        m = self.model
        layers = [(m.conv1, m.bn1)] + list(zip(m.conv2, m.bn2, strict=False))
        grad_plane = g_hwc.permute(2, 0, 1)[None]  # (1, C, H, W) channels-last view
        for k in range(len(layers) - 1, -1, -1):
            conv, bn = layers[k]
            mean, invstd = stats[k]
            a_k = acts[k]
            # grad_plane becomes dL/dz_k
            bn.weight.grad, bn.bias.grad = bn_backward_inplace(
                hwc(grad_plane), hwc(a_k), mean, invstd, bn, relu_mask=True
            )
            acts[k] = None  # free a_k before the conv input is recomputed: three planes at most
            del a_k
            if k == 0:
                inp = x
            else:  # this conv's input: BN of the previous layer, recomputed
                pscale, pshift = affine(layers[k - 1][1], *stats[k - 1])
                inp = torch.addcmul(pshift, hwc(acts[k - 1]), pscale).permute(2, 0, 1)[None]
            conv.weight.grad, conv.bias.grad = conv3x3_weight_grad(grad_plane, inp, conv)
            if k == 0:
                break
            del inp
            grad_plane = conv3x3_input_grad(grad_plane, conv)  # (the old plane is freed here)

    @torch.no_grad()
    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """The argmax ``(H, W)`` of a training-mode forward pass (BatchNorm on batch
        statistics, running statistics updated), with the same memory bound.
        """
        m = self.model
        _, _, h, w = x.shape
        # the last layer's outputs only: every earlier one is freed as the generator runs on
        z, _mean, _invstd, scale, shift = deque(self._layers_forward(x), maxlen=1)[0]
        a_last = hwc(z)
        del z
        c = m.conv3.out_channels
        w3 = m.conv3.weight.reshape(c, -1)
        w3f = w3 * scale
        b3f = w3 @ shift + m.conv3.bias
        c_in = a_last.shape[-1]

        # BN3's statistics from blocks of z3, then the argmax of each block
        def z3_blocks():
            for a, b in rows(h, w):
                yield torch.addmm(b3f, a_last[a:b].reshape(-1, c_in), w3f.t())

        n = h * w
        mean3, var3 = moments(z3_blocks(), c, n, x.device)
        bn3 = m.bn3
        update_running(bn3, mean3, var3, n)
        scale3, shift3 = affine(bn3, mean3, torch.rsqrt(var3 + bn3.eps))
        target = torch.empty(h, w, dtype=torch.long, device=x.device)
        for a, b in rows(h, w):
            zb = torch.addmm(b3f, a_last[a:b].reshape(-1, c_in), w3f.t())
            target[a:b] = torch.addcmul(shift3, zb, scale3).argmax(-1).view(b - a, w)
        return target
