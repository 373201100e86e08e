"""Loss terms against values worked out by hand on a 2-channel 2 x 2 response."""

from __future__ import annotations

import math

import pytest
import torch

from napari_inceptseg._engine import continuity_loss, similarity_loss

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
    ref_con = l1(hp[1:] - hp[:-1], torch.zeros(8, 7, 6)) + l1(hp[:, 1:] - hp[:, :-1], torch.zeros(9, 6, 6))
    ref_sim = torch.nn.CrossEntropyLoss()(out, out.argmax(1))
    assert continuity_loss(r).item() == pytest.approx(ref_con.item(), rel=1e-6)
    assert similarity_loss(r, r.argmax(1)).item() == pytest.approx(ref_sim.item(), rel=1e-6)
