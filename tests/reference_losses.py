"""The published losses as plain torch ops (Kim et al. 2020), which the engine's fused
loss and the memory-lean step are compared with, value for value and gradient for
gradient."""

from __future__ import annotations


def continuity_loss(response):
    """Mean |vertical differences| + mean |horizontal differences| of an
    ``(N, C, H, W)`` response (the L1 losses against zero of the reference)."""
    dy = response[:, :, 1:, :] - response[:, :, :-1, :]
    dx = response[:, :, :, 1:] - response[:, :, :, :-1]
    return dy.abs().mean() + dx.abs().mean()


def similarity_loss(response, target):
    """Cross-entropy of an ``(N, C, H, W)`` response against its own argmax ``(N, H, W)``."""
    import torch.nn.functional as F

    return F.cross_entropy(response, target)
