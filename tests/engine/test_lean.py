"""The memory-lean vanilla step computes what autograd computes on the reference network."""

from __future__ import annotations

import pytest
import torch

from napari_inceptseg.engine.modeling import lean as _lean
from napari_inceptseg.engine.modeling import lean_ops
from napari_inceptseg.engine.modeling.networks import build_model
from reference_losses import continuity_loss, similarity_loss


@pytest.mark.parametrize("n_conv", [1, 2, 3])
@pytest.mark.parametrize("block_pixels", [1 << 16, 40])  # one block, and blocks of a row or two
def test_lean_step_matches_autograd(monkeypatch, n_conv, block_pixels):
    monkeypatch.setattr(lean_ops, "BLOCK_PIXELS", block_pixels)
    torch.manual_seed(0)
    ref = build_model("vanilla", 3, n_channels=12, n_conv=n_conv).train()
    lean = build_model("vanilla", 3, n_channels=12, n_conv=n_conv).train()
    lean.load_state_dict(ref.state_dict())
    lean = lean.to(memory_format=torch.channels_last)
    x = torch.rand(1, 3, 17, 23)
    w_sim, w_con = 1.0, 2.5

    r = ref(x)
    target_ref = r.argmax(1)
    l_sim_ref = similarity_loss(r, target_ref)
    l_con_ref = continuity_loss(r)
    (w_sim * l_sim_ref + w_con * l_con_ref).backward()

    loss, l_sim, l_con, target = _lean.LeanVanillaStep(lean)(
        x.contiguous(memory_format=torch.channels_last), w_sim, w_con
    )
    assert torch.equal(target, target_ref[0])
    torch.testing.assert_close(l_sim, l_sim_ref.detach(), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(l_con, l_con_ref.detach(), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(
        loss, (w_sim * l_sim_ref + w_con * l_con_ref).detach(), rtol=1e-5, atol=1e-6
    )
    scale = max(float(p.grad.abs().max()) for p in ref.parameters())
    for (name, p_ref), p_lean in zip(ref.named_parameters(), lean.parameters(), strict=False):
        assert p_lean.grad is not None, name
        torch.testing.assert_close(
            p_lean.grad.reshape(p_ref.shape), p_ref.grad, rtol=1e-3, atol=1e-5 * scale, msg=name
        )
    for (name, b_ref), b_lean in zip(ref.named_buffers(), lean.buffers(), strict=False):
        torch.testing.assert_close(b_lean, b_ref, rtol=1e-4, atol=1e-6, msg=name)


@pytest.mark.parametrize("conv_block", [1 << 18, 30])  # one block, and blocks of a few rows
def test_blocked_convolutions_match_whole_ones(monkeypatch, conv_block):
    monkeypatch.setattr(lean_ops, "CONV_BLOCK_PIXELS", conv_block)
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(5, 7, 3, padding=1)
    x = torch.rand(1, 5, 19, 11).contiguous(memory_format=torch.channels_last)
    g = torch.rand(1, 7, 19, 11).contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(lean_ops.conv3x3(x, conv), conv(x), rtol=1e-5, atol=1e-6)
    xr = x.clone().requires_grad_()
    conv.zero_grad()
    (conv(xr) * g).sum().backward()
    gw, gb = lean_ops.conv3x3_weight_grad(g, x, conv)
    torch.testing.assert_close(gw, conv.weight.grad, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(gb, conv.bias.grad, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(lean_ops.conv3x3_input_grad(g, conv), xr.grad, rtol=1e-4, atol=1e-5)


def test_lean_predict_matches_the_forward_pass():
    torch.manual_seed(0)
    ref = build_model("vanilla", 3, n_channels=12, n_conv=2).train()
    lean = build_model("vanilla", 3, n_channels=12, n_conv=2).train()
    lean.load_state_dict(ref.state_dict())
    lean = lean.to(memory_format=torch.channels_last)
    x = torch.rand(1, 3, 17, 23)
    with torch.no_grad():
        expected = ref(x).argmax(1)[0]
    got = _lean.LeanVanillaStep(lean).predict(x.contiguous(memory_format=torch.channels_last))
    assert (got == expected).float().mean() > 0.999
    for (name, b_ref), b_lean in zip(ref.named_buffers(), lean.buffers(), strict=False):
        torch.testing.assert_close(b_lean, b_ref, rtol=1e-4, atol=1e-6, msg=name)
