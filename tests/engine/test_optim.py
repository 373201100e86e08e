"""The fused momentum SGD takes the same steps as ``torch.optim.SGD``."""

from __future__ import annotations

import torch

from napari_inceptseg.engine.modeling.optim import MomentumSGD


def test_momentum_sgd_matches_torch_optim():
    torch.manual_seed(0)
    a = torch.nn.Linear(4, 3)
    b = torch.nn.Linear(4, 3)
    b.load_state_dict(a.state_dict())
    ref = torch.optim.SGD(a.parameters(), lr=0.1, momentum=0.9)
    ours = MomentumSGD(b.parameters(), lr=0.1, momentum=0.9)
    for _step in range(4):
        x = torch.randn(5, 4)
        ref.zero_grad()
        (a(x) ** 2).sum().backward()
        ref.step()
        ours.zero_grad()
        (b(x) ** 2).sum().backward()
        ours.step()
        for pa, pb in zip(a.parameters(), b.parameters(), strict=False):
            torch.testing.assert_close(pb, pa)
