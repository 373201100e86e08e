"""The loss terms against values worked out by hand (a 2-channel 2 x 2 response), and
the fused loss against the reference, value for value and gradient for gradient."""

from __future__ import annotations

import math

import pytest
import torch

from napari_inceptseg.engine.modeling.loss import cluster_loss
from reference_losses import continuity_loss, similarity_loss

# channel 0        channel 1
# [[0, 1],         [[1, 1.5],
#  [2, 4]]          [1, 1  ]]
RESPONSE = torch.tensor([[[[0.0, 1.0], [2.0, 4.0]], [[1.0, 1.5], [1.0, 1.0]]]])


def test_continuity_loss_by_hand():
    # vertical |differences|: ch0 |2-0|, |4-1| ; ch1 |1-1|, |1-1.5|  -> mean (2+3+0+0.5)/4
    # horizontal:             ch0 |1-0|, |4-2| ; ch1 |1.5-1|, |1-1|  -> mean (1+2+0.5+0)/4
    expected = (2 + 3 + 0 + 0.5) / 4 + (1 + 2 + 0.5 + 0) / 4
    assert continuity_loss(RESPONSE).item() == pytest.approx(expected)


def test_continuity_loss_is_zero_for_flat_response():
    assert continuity_loss(torch.ones(1, 3, 5, 4) * 7).item() == 0


def test_similarity_loss_by_hand():
    target = RESPONSE.argmax(1)
    # argmax per pixel: (0,0)->1, (0,1)->1, (1,0)->0, (1,1)->0
    assert target.tolist() == [[[1, 1], [0, 0]]]
    # -log softmax of the winning channel = log(1 + exp(-(margin)))
    margins = [1.0, 0.5, 1.0, 3.0]
    expected = sum(math.log1p(math.exp(-m)) for m in margins) / 4
    assert similarity_loss(RESPONSE, target).item() == pytest.approx(expected, rel=1e-6)


def test_losses_match_reference_formulation():
    """Same values as the published code's permute + L1Loss-against-zeros version."""
    torch.manual_seed(0)
    r = torch.randn(1, 6, 9, 7)
    out = r[0].permute(1, 2, 0).contiguous().view(-1, 6)
    hp = out.reshape(9, 7, 6)
    l1 = torch.nn.L1Loss()
    ref_con = l1(hp[1:] - hp[:-1], torch.zeros(8, 7, 6)) + l1(
        hp[:, 1:] - hp[:, :-1], torch.zeros(9, 6, 6)
    )
    ref_sim = torch.nn.CrossEntropyLoss()(out, out.argmax(1))
    assert continuity_loss(r).item() == pytest.approx(ref_con.item(), rel=1e-6)
    assert similarity_loss(r, r.argmax(1)).item() == pytest.approx(ref_sim.item(), rel=1e-6)


def _reference_guided_loss(r, scr, w_sim, w_con, w_scr, axis_weights):
    """The published scribble loss (cross-entropy over the unscribbled pixels against
    the argmax plus w_scr x cross-entropy over the scribbled pixels against the
    scribbles) with an L1 continuity term per spatial axis, written with autograd."""
    c = r.shape[1]
    flat = r.movedim(1, -1).reshape(-1, c)
    s = scr.reshape(-1)
    target = flat.argmax(1)
    ce = torch.nn.functional.cross_entropy
    loss = w_sim * ce(flat[s < 0], target[s < 0]) + w_scr * ce(flat[s >= 0], s[s >= 0])
    for k, dim in enumerate(range(2, r.dim())):
        n = r.shape[dim]
        loss = (
            loss
            + w_con
            * axis_weights[k]
            * (r.narrow(dim, 1, n - 1) - r.narrow(dim, 0, n - 1)).abs().mean()
        )
    return loss


@pytest.mark.parametrize("shape", [(1, 5, 7, 6), (1, 5, 4, 6, 3)])
def test_fused_loss_with_scribbles_and_axis_weights_matches_autograd(shape):
    from napari_inceptseg.engine.modeling.loss import cluster_loss

    torch.manual_seed(0)
    r = torch.randn(*shape, dtype=torch.float64, requires_grad=True)
    scr = torch.full((shape[0], 1, *shape[2:]), -1, dtype=torch.long)
    scr.view(-1)[:7] = 2
    scr.view(-1)[-5:] = 4
    weights = [0.25, 1.0, 1.0][-(len(shape) - 2) :]
    loss, _, _, target = cluster_loss(r, 1.0, 2.0, weights, scribbles=scr, w_scr=0.5)
    loss.backward()
    ref_r = r.detach().clone().requires_grad_(True)
    ref = _reference_guided_loss(ref_r, scr, 1.0, 2.0, 0.5, weights)
    ref.backward()
    assert loss.item() == pytest.approx(ref.item(), rel=1e-9)
    torch.testing.assert_close(r.grad, ref_r.grad)
    assert target.shape == (shape[0], *shape[2:])


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("weights", [(1.0, 1.0), (0.3, 5.0)])
def test_cluster_loss_matches_reference_value_and_gradient(channels_last, weights):
    w_sim, w_con = weights
    torch.manual_seed(0)
    r = torch.randn(1, 7, 13, 17)
    ref_in = r.clone().requires_grad_()
    target_ref = ref_in.argmax(1)
    l_sim_ref = similarity_loss(ref_in, target_ref)
    l_con_ref = continuity_loss(ref_in)
    (w_sim * l_sim_ref + w_con * l_con_ref).backward()

    fast_in = (
        r.contiguous(memory_format=torch.channels_last) if channels_last else r.clone()
    ).requires_grad_()
    loss, l_sim, l_con, target = cluster_loss(fast_in, w_sim, w_con)
    (2.0 * loss).backward()  # the incoming gradient is applied

    assert torch.equal(target, target_ref)
    torch.testing.assert_close(l_sim, l_sim_ref.detach())
    torch.testing.assert_close(l_con, l_con_ref.detach())
    torch.testing.assert_close(loss, w_sim * l_sim_ref.detach() + w_con * l_con_ref.detach())
    torch.testing.assert_close(fast_in.grad, 2.0 * ref_in.grad, rtol=1e-5, atol=1e-7)
    assert not l_sim.requires_grad and not target.requires_grad
