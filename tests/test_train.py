"""The fast optimisation step computes what the reference loop computes."""

from __future__ import annotations

import pytest
import torch

from napari_inceptseg._engine import continuity_loss, similarity_loss
from napari_inceptseg._train import MomentumSGD, cluster_loss, count_labels


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

    fast_in = (r.contiguous(memory_format=torch.channels_last) if channels_last else r.clone()).requires_grad_()
    loss, l_sim, l_con, target = cluster_loss(fast_in, w_sim, w_con)
    (2.0 * loss).backward()  # the incoming gradient is applied

    assert torch.equal(target, target_ref)
    torch.testing.assert_close(l_sim, l_sim_ref.detach())
    torch.testing.assert_close(l_con, l_con_ref.detach())
    torch.testing.assert_close(loss, w_sim * l_sim_ref.detach() + w_con * l_con_ref.detach())
    torch.testing.assert_close(fast_in.grad, 2.0 * ref_in.grad, rtol=1e-5, atol=1e-7)
    assert not l_sim.requires_grad and not target.requires_grad


def test_count_labels():
    t = torch.tensor([[0, 3, 3], [5, 0, 3]])
    assert int(count_labels(t, 8)) == 3


def test_momentum_sgd_matches_torch_optim():
    torch.manual_seed(0)
    a = torch.nn.Linear(4, 3)
    b = torch.nn.Linear(4, 3)
    b.load_state_dict(a.state_dict())
    ref = torch.optim.SGD(a.parameters(), lr=0.1, momentum=0.9)
    ours = MomentumSGD(b.parameters(), lr=0.1, momentum=0.9)
    for step in range(4):
        x = torch.randn(5, 4)
        ref.zero_grad()
        (a(x) ** 2).sum().backward()
        ref.step()
        ours.zero_grad()
        (b(x) ** 2).sum().backward()
        ours.step()
        for pa, pb in zip(a.parameters(), b.parameters()):
            torch.testing.assert_close(pb, pa)
