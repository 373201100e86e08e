"""BatchNorm's statistics of a whole-image run's network, measured over the whole
analysis grid of the trained plane, as a run in memory measures them in its one pass
over the image (torch is imported inside the functions).

The statistics of a layer depend on those before it, so they are measured one layer at
a time: in round ``k`` every block of the plane passes through the network, the layers
before ``k`` normalising with what earlier rounds measured, and hands back the count,
sum and sum of squares of layer ``k``'s input over its centre (its halo gives the
centre the whole image's context). The client adds them up: the mean and the variance
over every pixel of the plane, the variance without Bessel's correction, as the pass in
memory normalises with it.
"""

from __future__ import annotations

import numpy as np

from ..engine.machine.runtime import resolve_device
from ..engine.workflow.saved import load_model
from .blocks import block_input, refusing
from .grid import Grid
from .ngff import open_image


class _Measured(Exception):
    """Raised from a hook once the layer's input is measured: the rest of the pass is not needed."""


def batchnorm_layers(model, in_channels: int) -> list:
    """The BatchNorm layers of ``model`` (taking ``in_channels``) in the order a pass
    meets them.
    """
    import torch

    order = []
    bns = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    hooks = [bn.register_forward_pre_hook(lambda m, _: order.append(m)) for bn in bns]
    try:
        with torch.no_grad():
            model.eval()
            model(torch.zeros(1, in_channels, 16, 16))
    finally:
        for hook in hooks:
            hook.remove()
    return list(dict.fromkeys(order))


@refusing
def layer_moments(path: str, network: str, block, layer: int, *, known: list, device: str):
    """``(count, sums, sums of squares)`` per channel of the input of BatchNorm layer
    ``layer`` over ``block``'s centre, the layers before it set to ``known`` ``(mean,
    var)`` pairs.
    """
    import torch

    image = open_image(path)
    model = load_model(network)
    grid = Grid.of(image.shape[image.axes.index(a)] for a in "yx")
    _, net_in, centre = block_input(image, model, block, grid)
    device = resolve_device(device)
    net = model.build(device).eval()
    layers = batchnorm_layers(net, net_in.shape[0])
    set_statistics(layers, known)
    out = {}

    def measure(_module, args):
        x = args[0][(0, slice(None), *centre)].double()
        out["m"] = (x[0].numel(), x.sum((1, 2)).cpu().numpy(), (x * x).sum((1, 2)).cpu().numpy())
        raise _Measured

    hook = layers[layer].register_forward_pre_hook(measure)
    try:
        with torch.no_grad():
            net(torch.from_numpy(net_in)[None].to(device))
    except _Measured:
        pass
    finally:
        hook.remove()
    return out["m"]


def set_statistics(layers: list, known: list) -> None:
    """The first ``len(known)`` BatchNorm ``layers`` given these ``(mean, var)`` pairs."""
    import torch

    for bn, (mean, var) in zip(layers, known, strict=False):
        bn.running_mean.copy_(torch.as_tensor(mean, dtype=bn.running_mean.dtype))
        bn.running_var.copy_(torch.as_tensor(var, dtype=bn.running_var.dtype))


def combined(moments: list) -> tuple[np.ndarray, np.ndarray]:
    """``(mean, var)`` over every block from their ``(count, sums, sums of squares)``."""
    n = sum(m[0] for m in moments)
    total = np.sum([m[1] for m in moments], axis=0)
    squares = np.sum([m[2] for m in moments], axis=0)
    mean = total / n
    return mean, np.maximum(squares / n - mean * mean, 0.0)


def calibrated(model, known: list):
    """``model`` (a :class:`~napari_inceptseg.engine.workflow.saved.TrainedModel`) with the
    BatchNorm statistics ``known``, one ``(mean, var)`` pair per layer.
    """
    import dataclasses

    net = model.build("cpu")
    set_statistics(batchnorm_layers(net, model.in_channels), known)
    state = {k: v.detach().clone() for k, v in net.state_dict().items()}
    return dataclasses.replace(model, state_dict=state, _built={})
