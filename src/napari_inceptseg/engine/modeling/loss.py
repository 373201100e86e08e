"""The clustering and continuity losses (imported lazily: it imports torch).

:class:`ClusterLoss` computes what the reference (Kim et al.'s code as plain torch ops,
kept in the tests) computes; tests compare them value for value and gradient for
gradient. What differs is the memory traffic:
it computes the loss and its gradient in one pass over the response, so autograd
keeps one tensor instead of the log-probabilities, two difference maps, their signs
and the zero-filled gradients of four slices.
"""

from __future__ import annotations

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
    def forward(
        ctx,
        response: torch.Tensor,
        w_sim: float,
        w_con: float,  # type: ignore[override]
        axis_weights=None,
        scribbles=None,
        w_scr: float = 0.0,
    ):
        """The losses of a response; the gradient is computed here and kept for backward."""
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
                    loss_con += add_continuity_grad_(
                        grad, response, dim, w_con * weight / pairs
                    ) * (weight / pairs)
            loss = loss_sim * w_sim + loss_con * w_con
            if loss_scr is not None:
                loss = loss + loss_scr * w_scr
            target = target.squeeze(1)
        ctx.save_for_backward(grad)
        ctx.mark_non_differentiable(loss_sim, loss_con, target)
        return loss, loss_sim, loss_con, target

    @staticmethod
    def backward(ctx, grad_loss, *_unused):  # type: ignore[override]
        """The kept gradient, scaled by the incoming one."""
        (grad,) = ctx.saved_tensors
        return grad.mul_(grad_loss), None, None, None, None, None


def _scribble_grad(response: torch.Tensor, scribbles: torch.Tensor, w_sim: float, w_scr: float):
    """Gradient of ``w_sim * mean CE(unscribbled, argmax) + w_scr * mean CE(scribbled,
    scribble channel)`` (either mean is 0 over an empty set); returns
    ``(grad, argmax, loss_sim, loss_scr)``.
    """
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
    ``(grad, target, nll)``: the argmax (``dim`` kept) and the summed -log p.
    """
    target = response.argmax(dim, keepdim=True)
    grad = torch.log_softmax(response, dim)
    picked = grad.gather(dim, target)
    nll = picked.sum().neg_()
    grad.exp_()  # softmax
    grad.scatter_(dim, target, picked.exp_().sub_(1))  # softmax - one-hot
    grad.mul_(scale)
    return grad, target, nll


def add_continuity_grad_(
    grad: torch.Tensor, response: torch.Tensor, dim: int, scale: float
) -> torch.Tensor:
    """Add ``scale`` times the gradient of ``sum |r[i+1] - r[i]|`` along ``dim`` to
    ``grad`` (in place); return that sum.
    """
    size = response.shape[dim]
    if size < 2:
        return response.new_zeros(())
    diff = response.narrow(dim, 1, size - 1) - response.narrow(dim, 0, size - 1)
    total = torch.linalg.vector_norm(diff, 1)
    diff.sign_()
    grad.narrow(dim, 1, size - 1).add_(diff, alpha=scale)
    grad.narrow(dim, 0, size - 1).sub_(diff, alpha=scale)
    return total


def cluster_loss(
    response: torch.Tensor,
    w_sim: float,
    w_con: float,
    axis_weights=None,
    *,
    scribbles=None,
    w_scr: float = 0.0,
):
    """``(loss, loss_sim, loss_con, target)``; see :class:`ClusterLoss`."""
    return ClusterLoss.apply(
        response, float(w_sim), float(w_con), axis_weights, scribbles, float(w_scr)
    )


# -- the reference: the same losses as plain torch ops (Kim et al.'s code), for tests and ablations
