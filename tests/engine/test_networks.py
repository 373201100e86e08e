"""The two networks: output shapes and the exact layer order of the papers' code."""

from __future__ import annotations

import pytest
import torch
import torch.fx
from torch import nn

from napari_inceptseg.engine.modeling.networks import InceptionNet, VanillaNet, build_model


@pytest.mark.parametrize("arch", ["vanilla", "inception"])
@pytest.mark.parametrize("hw", [(37, 53), (8, 8), (64, 31)])
@pytest.mark.parametrize("in_ch", [1, 3, 5])
def test_output_shape(arch, hw, in_ch):
    model = build_model(arch, in_ch, n_channels=12, n_conv=2)
    out = model(torch.rand(1, in_ch, *hw))
    assert out.shape == (1, 12, *hw)


def _trace(model: nn.Module):
    """The forward pass as tokens: 'conv{k}:{in}->{out}', 'bn:{n}', 'relu', 'pool{k}', 'cat'."""
    gm = torch.fx.symbolic_trace(model)
    mods = dict(gm.named_modules())
    tokens = []
    for node in gm.graph.nodes:
        if node.op == "call_module":
            m = mods[node.target]
            if isinstance(m, nn.Conv2d):
                tokens.append(f"conv{m.kernel_size[0]}:{m.in_channels}->{m.out_channels}")
            elif isinstance(m, nn.BatchNorm2d):
                tokens.append(f"bn:{m.num_features}")
            elif isinstance(m, nn.MaxPool2d):
                assert m.stride == 1 and m.padding == 1
                tokens.append(f"pool{m.kernel_size}")
            else:  # pragma: no cover - would be a new layer type
                tokens.append(type(m).__name__)
        elif node.op in ("call_function", "call_method"):
            name = getattr(node.target, "__name__", str(node.target))
            if name in ("relu", "cat"):
                tokens.append(name)
    return tokens


def test_vanilla_layers_follow_kim_et_al():
    C = 100
    expected = [f"conv3:3->{C}", "relu", f"bn:{C}"]
    expected += [f"conv3:{C}->{C}", "relu", f"bn:{C}"] * 2  # n_conv - 1 = 2
    expected += [f"conv1:{C}->{C}", f"bn:{C}"]
    assert _trace(VanillaNet(3, n_channels=C, n_conv=3)) == expected


def _block(cin, b1, r3, o3, r5, o5, op):
    cbr = lambda k, i, o: [f"conv{k}:{i}->{o}", f"bn:{o}", "relu"]  # noqa: E731
    return (
        cbr(1, cin, b1)
        + cbr(1, cin, r3)
        + cbr(3, r3, o3)
        + cbr(1, cin, r5)
        + cbr(5, r5, o5)
        + ["pool3"]
        + cbr(1, cin, op)
        + ["cat"]
    )


@pytest.mark.parametrize("n_conv", [1, 2, 3])
def test_inception_layers_follow_azad_hamid(n_conv):
    C = 100
    expected = ["conv1:3->15", "relu", "bn:15"]
    expected += _block(15, 160, 96, 64, 16, 16, 16) + ["relu", "bn:256"]
    width = 256
    for _ in range(n_conv):
        expected += _block(width, 96, 32, 16, 16, 8, 8) + ["relu", "bn:128"]
        width = 128
    expected += [f"conv1:128->{C}", f"bn:{C}"]
    assert _trace(InceptionNet(3, n_channels=C, n_conv=n_conv)) == expected


def test_xavier_init_option():
    torch.manual_seed(0)
    default = build_model("vanilla", 3, 10, 2)
    torch.manual_seed(0)
    xavier = build_model("vanilla", 3, 10, 2, init="xavier")
    # xavier-uniform bound for conv1: sqrt(6 / (fan_in + fan_out))
    bound = (6 / (3 * 9 + 10 * 9)) ** 0.5
    assert xavier.conv1.weight.abs().max() <= bound
    assert torch.all(xavier.conv1.bias == 0)
    assert not torch.equal(default.conv1.weight, xavier.conv1.weight)
    assert torch.any(default.conv1.bias != 0)  # PyTorch's default init has non-zero biases


def test_unknown_architecture_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown architecture"):
        build_model("resnet", 3)


@pytest.mark.parametrize("arch", ["vanilla", "inception"])
@pytest.mark.parametrize("channels_last", [False, True])
def test_fast_forward_is_the_reference_function(arch, channels_last):
    """Same response, same gradients, same BatchNorm running statistics."""
    torch.manual_seed(0)
    ref = build_model(arch, 3, n_channels=10, n_conv=2).train()
    fast = build_model(arch, 3, n_channels=10, n_conv=2).train()
    fast.load_state_dict(ref.state_dict())
    x = torch.rand(1, 3, 23, 31)
    if channels_last:
        fast = fast.to(memory_format=torch.channels_last)
    out_ref = ref(x)
    out_fast = fast.fast_forward(
        x.contiguous(memory_format=torch.channels_last) if channels_last else x
    )
    torch.testing.assert_close(out_fast, out_ref, rtol=1e-4, atol=1e-4)
    weights = torch.rand_like(out_ref)
    (out_ref * weights).sum().backward()
    (out_fast * weights).sum().backward()
    # biases right before a BatchNorm have a zero gradient up to rounding: compare
    # every gradient on the scale of the largest one
    scale = max(float(p.grad.abs().max()) for p in ref.parameters())
    for (name, p_ref), p_fast in zip(ref.named_parameters(), fast.parameters(), strict=False):
        torch.testing.assert_close(p_fast.grad, p_ref.grad, rtol=1e-3, atol=1e-5 * scale, msg=name)
    for (name, b_ref), b_fast in zip(ref.named_buffers(), fast.buffers(), strict=False):
        torch.testing.assert_close(b_fast, b_ref, rtol=1e-4, atol=1e-5, msg=name)
