"""The two networks: ``vanilla`` (Kim et al. 2020) and ``inception`` (Azad & Hamid 2025).

Both map an ``(N, in_ch, H, W)`` image to an ``(N, n_channels, H, W)`` response of
the same spatial size (any H, W); with ``dims=3`` they are the same networks with
3D convolutions, BatchNorm and max-pooling, for ``(N, in_ch, D, H, W)`` volumes. Layer
order follows the published code exactly; BatchNorm is meant to stay in training mode
(batch statistics) for every pass.

``forward`` is the reference definition, layer by layer as published.
``fast_forward`` computes the same function with less memory traffic (the engine
uses it; tests check that both agree, gradients and BatchNorm statistics included):
ReLUs run in place, the 1x1 convolutions of an Inception block that read the same
input run as one convolution with their BatchNorms as one, and the ReLU that the
published code applies to a concatenation of ReLU outputs is skipped (it is the
identity there).
"""

from __future__ import annotations

from functools import partial

import torch
import torch.nn.functional as F
from torch import nn


def _layers(dims: int):
    """(Conv, BatchNorm, MaxPool) classes for 2 or 3 spatial dimensions."""
    if dims == 2:
        return nn.Conv2d, nn.BatchNorm2d, nn.MaxPool2d
    if dims == 3:
        # volumes are often only a few slices deep: zero padding would make the
        # first and last slices look unlike the rest, so 3D pads by replication
        return partial(nn.Conv3d, padding_mode="replicate"), nn.BatchNorm3d, nn.MaxPool3d
    raise ValueError(f"dims must be 2 or 3, got {dims!r}")


class VanillaNet(nn.Module):
    """conv3x3(in->C)+ReLU+BN, (n_conv-1) x [conv3x3(C->C)+ReLU+BN], conv1x1(C->C)+BN."""

    def __init__(self, in_channels: int, n_channels: int = 100, n_conv: int = 2, dims: int = 2):
        super().__init__()
        Conv, BN, _ = _layers(dims)
        self.dims = dims
        self.conv1 = Conv(in_channels, n_channels, kernel_size=3, padding=1)
        self.bn1 = BN(n_channels)
        self.conv2 = nn.ModuleList(
            Conv(n_channels, n_channels, kernel_size=3, padding=1) for _ in range(n_conv - 1)
        )
        self.bn2 = nn.ModuleList(BN(n_channels) for _ in range(n_conv - 1))
        self.conv3 = Conv(n_channels, n_channels, kernel_size=1)
        self.bn3 = BN(n_channels)
        self.radius = self.receptive_radius(n_conv)

    @staticmethod
    def receptive_radius(n_conv: int) -> int:
        """Pixels of context each output pixel sees on every side (one per 3x3 layer)."""
        return n_conv

    @staticmethod
    def step_bytes_per_pixel(
        n_channels: int, n_conv: int, in_channels: int, lean: bool = False
    ) -> float:
        """Peak bytes per pixel of one training step (``lean``: the memory-lean step of
        ``lean.py``), fitted to measured peaks (``benchmarks/memory_plan.py``).
        """
        c, n = n_channels, n_conv
        if lean:
            # ReLU outputs of the 3x3 layers and the response/gradient plane (at least
            # three planes alive at a time), the argmax (int64) and block temporaries
            return 4.0 * (c * (max(n + 1, 3) + 0.15) + in_channels) + 8
        # per 3x3 layer: ReLU output and BatchNorm output; then the 1x1 layer's
        # output, the response, its loss gradient and the gradients in flight
        return 4.0 * (c * (2 * n + 4.2) + in_channels) * 1.02

    @staticmethod
    def pass_floats_per_pixel(n_channels: int, in_channels: int) -> float:
        """float32 values per pixel of a forward pass without gradients."""
        return 3 * n_channels + in_channels

    @staticmethod
    def n_weights(n_channels: int, n_conv: int, in_channels: int, dims: int = 2) -> int:
        """Learnable values: 3x3 layers, the 1x1 layer and BatchNorm (weights, biases)."""
        c, k = n_channels, 3**dims
        return (
            (in_channels * k + 1) * c
            + (n_conv - 1) * (c * k + 1) * c
            + (c + 1) * c
            + 2 * c * (n_conv + 1)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The reference forward pass, layer by layer as published."""
        x = self.bn1(F.relu(self.conv1(x)))
        for conv, bn in zip(self.conv2, self.bn2, strict=False):
            x = bn(F.relu(conv(x)))
        return self.bn3(self.conv3(x))

    def fast_forward(self, x: torch.Tensor) -> torch.Tensor:
        # a convolution's backward needs its input, not its output: ReLU in place
        """The same function as :meth:`forward` with less memory traffic."""
        x = self.bn1(F.relu_(self.conv1(x)))
        for conv, bn in zip(self.conv2, self.bn2, strict=False):
            x = bn(F.relu_(conv(x)))
        return self.bn3(self.conv3(x))


class ConvBlock(nn.Module):
    """Conv + BN + ReLU, the unit of every Inception branch."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, dims: int = 2):
        super().__init__()
        Conv, BN, _ = _layers(dims)
        self.conv = Conv(in_channels, out_channels, kernel_size, padding=kernel_size // 2)
        self.bn = BN(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The reference forward pass, layer by layer as published."""
        return F.relu(self.bn(self.conv(x)))

    def fast_forward(self, x: torch.Tensor) -> torch.Tensor:
        # BatchNorm's backward needs its input, not its output: ReLU in place
        """The same function as :meth:`forward` with less memory traffic."""
        return F.relu_(self.bn(self.conv(x)))


def _joint_conv_bn_relu(blocks, x: torch.Tensor) -> list[torch.Tensor]:
    """Several ConvBlocks with 1x1 kernels on the same input, as one convolution
    and one BatchNorm over the stacked channels (BatchNorm is per channel, so this
    is the same function). Each module's running statistics are updated as if it
    had run alone.
    """
    convs = [b.conv for b in blocks]
    bns = [b.bn for b in blocks]
    sizes = [c.out_channels for c in convs]
    conv = F.conv2d if x.dim() == 4 else F.conv3d
    y = conv(x, torch.cat([c.weight for c in convs]), torch.cat([c.bias for c in convs]))
    track = bns[0].training and bns[0].track_running_stats
    mean = torch.cat([b.running_mean for b in bns]) if bns[0].running_mean is not None else None
    var = torch.cat([b.running_var for b in bns]) if bns[0].running_var is not None else None
    momentum = bns[0].momentum
    if momentum is None:  # cumulative average, as nn.BatchNorm does
        momentum = 1.0 / float(bns[0].num_batches_tracked + 1) if track else 0.0
    y = F.batch_norm(
        y,
        mean,
        var,
        torch.cat([b.weight for b in bns]),
        torch.cat([b.bias for b in bns]),
        bns[0].training or mean is None,
        momentum,
        bns[0].eps,
    )
    if track and mean is not None:
        with torch.no_grad():
            for bn, m, v in zip(bns, mean.split(sizes), var.split(sizes), strict=False):
                bn.running_mean.copy_(m)
                bn.running_var.copy_(v)
                bn.num_batches_tracked.add_(1)
    F.relu_(y)
    return list(torch.split(y, sizes, 1))


class InceptionBlock(nn.Module):
    """Four parallel branches, concatenated along channels; ``widths`` are ``(out1, red3,
    out3, red5, out5, out_pool)``:

    [1x1 -> out1 | 1x1 -> red3, 3x3 -> out3 | 1x1 -> red5, 5x5 -> out5 |
    maxpool3x3 (stride 1) -> 1x1 -> out_pool]
    """

    def __init__(self, in_channels: int, widths: tuple[int, ...], dims: int = 2):
        super().__init__()
        out1, red3, out3, red5, out5, out_pool = widths
        _, _, Pool = _layers(dims)
        self.branch1 = ConvBlock(in_channels, out1, 1, dims)
        self.branch2 = nn.Sequential(
            ConvBlock(in_channels, red3, 1, dims), ConvBlock(red3, out3, 3, dims)
        )
        self.branch3 = nn.Sequential(
            ConvBlock(in_channels, red5, 1, dims), ConvBlock(red5, out5, 5, dims)
        )
        self.branch4 = nn.Sequential(
            Pool(kernel_size=3, stride=1, padding=1), ConvBlock(in_channels, out_pool, 1, dims)
        )
        self.out_channels = out1 + out3 + out5 + out_pool

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The reference forward pass, layer by layer as published."""
        return torch.cat([self.branch1(x), self.branch2(x), self.branch3(x), self.branch4(x)], 1)

    def fast_forward(self, x: torch.Tensor) -> torch.Tensor:
        """The same function as :meth:`forward` with less memory traffic."""
        y1, y2, y3 = _joint_conv_bn_relu([self.branch1, self.branch2[0], self.branch3[0]], x)
        y2 = self.branch2[1].fast_forward(y2)
        y3 = self.branch3[1].fast_forward(y3)
        y4 = self.branch4[1].fast_forward(self.branch4[0](x))
        return torch.cat([y1, y2, y3, y4], 1)


class InceptionNet(nn.Module):
    """conv1x1(in->15)+ReLU+BN; Inception 15->256 +ReLU+BN; n_conv x [Inception ->128
    +ReLU+BN]; conv1x1(128->C)+BN.
    """

    STEM = 15
    FIRST = (160, 96, 64, 16, 16, 16)  # -> 256
    NEXT = (96, 32, 16, 16, 8, 8)  # -> 128

    def __init__(self, in_channels: int, n_channels: int = 100, n_conv: int = 2, dims: int = 2):
        super().__init__()
        Conv, BN, _ = _layers(dims)
        self.dims = dims
        self.conv1 = Conv(in_channels, self.STEM, kernel_size=1)
        self.bn1 = BN(self.STEM)
        self.inception1 = InceptionBlock(self.STEM, self.FIRST, dims=dims)
        self.bn_i1 = BN(self.inception1.out_channels)
        blocks, bns = [], []
        width = self.inception1.out_channels
        for _ in range(n_conv):
            block = InceptionBlock(width, self.NEXT, dims=dims)
            width = block.out_channels
            blocks.append(block)
            bns.append(BN(width))
        self.inception2 = nn.ModuleList(blocks)
        self.bn_i2 = nn.ModuleList(bns)
        self.conv3 = Conv(width, n_channels, kernel_size=1)
        self.bn3 = BN(n_channels)
        self.radius = self.receptive_radius(n_conv)

    @staticmethod
    def receptive_radius(n_conv: int) -> int:
        """Pixels of context each output pixel sees on every side (a 5x5 branch per block)."""
        return 2 * (n_conv + 1)

    @staticmethod
    def step_bytes_per_pixel(
        n_channels: int, n_conv: int, in_channels: int, lean: bool = False
    ) -> float:
        """Peak bytes per pixel of one training step (there is no lean step: ``lean`` is
        ignored): the first block (15 -> 256), the second (256 -> 128), later ones
        (128 -> 128), in float32 values per pixel including max-pool indices (int64),
        plus the head.
        """
        return 4.0 * (1250 + 1376 + 1000 * (n_conv - 1) + 4 * n_channels + in_channels) * 1.02

    @staticmethod
    def pass_floats_per_pixel(n_channels: int, in_channels: int) -> float:
        """float32 values per pixel of a forward pass without gradients."""
        return 1200 + 4 * n_channels + in_channels

    @classmethod
    def n_weights(cls, n_channels: int, n_conv: int, in_channels: int, dims: int = 2) -> int:
        """Learnable values: the stem, the Inception blocks and the head (weights,
        biases and BatchNorm's scale and shift).
        """

        def unit(cin, cout, k):  # ConvBlock, or a conv with its BatchNorm
            return (cin * k**dims + 1) * cout + 2 * cout

        def block(cin, widths):
            out1, red3, out3, red5, out5, out_pool = widths
            return (
                unit(cin, out1, 1)
                + unit(cin, red3, 1)
                + unit(red3, out3, 3)
                + unit(cin, red5, 1)
                + unit(red5, out5, 5)
                + unit(cin, out_pool, 1)
            ), out1 + out3 + out5 + out_pool

        total, width = block(cls.STEM, cls.FIRST)
        total += unit(in_channels, cls.STEM, 1) + 2 * width
        for _ in range(n_conv):
            extra, width = block(width, cls.NEXT)
            total += extra + 2 * width
        return total + unit(width, n_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The reference forward pass, layer by layer as published."""
        x = self.bn1(F.relu(self.conv1(x)))
        x = self.bn_i1(F.relu(self.inception1(x)))
        for block, bn in zip(self.inception2, self.bn_i2, strict=False):
            x = bn(F.relu(block(x)))
        return self.bn3(self.conv3(x))

    def fast_forward(self, x: torch.Tensor) -> torch.Tensor:
        # every branch ends in a ReLU, so ReLU(cat(branches)) is cat(branches)
        """The same function as :meth:`forward` with less memory traffic."""
        x = self.bn1(F.relu_(self.conv1(x)))
        x = self.bn_i1(self.inception1.fast_forward(x))
        for block, bn in zip(self.inception2, self.bn_i2, strict=False):
            x = bn(block.fast_forward(x))
        return self.bn3(self.conv3(x))


#: every network by its name (``SegmentParams.arch``); each class knows its own facts:
#: ``receptive_radius``, ``step_bytes_per_pixel`` and ``pass_floats_per_pixel``
NETWORKS = {"vanilla": VanillaNet, "inception": InceptionNet}


class calibrating_batchnorm:
    """Within this block, the BatchNorm layers of ``model`` forget their running
    statistics and average the batches that pass (momentum None): after one
    training-mode pass over an image, or over tiles covering it, the running
    statistics are that image's, so eval mode reproduces the training result.
    """

    def __init__(self, model: nn.Module):
        self.bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]

    def __enter__(self):
        self.momenta = [b.momentum for b in self.bns]
        for b in self.bns:
            b.reset_running_stats()
            b.momentum = None
        return self

    def __exit__(self, *exc):
        for b, m in zip(self.bns, self.momenta, strict=False):
            b.momentum = m
        return False


def build_model(
    arch: str,
    in_channels: int,
    n_channels: int = 100,
    n_conv: int = 2,
    *,
    init: str = "default",
    dims: int = 2,
) -> nn.Module:
    """Create a network by name. ``init='xavier'`` re-initialises conv weights
    with Xavier-uniform and zero biases (the paper's text); ``'default'`` keeps
    PyTorch's initialisation (the published code). ``dims=3`` builds the 3D
    (Conv3d) version for volumes.
    """
    try:
        cls = NETWORKS[arch]
    except KeyError:
        raise ValueError(
            f"unknown architecture {arch!r}: choose one of {', '.join(NETWORKS)}"
        ) from None
    model = cls(in_channels, n_channels=n_channels, n_conv=n_conv, dims=dims)
    if init == "xavier":
        for m in model.modules():
            if isinstance(m, (nn.Conv2d, nn.Conv3d)):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)
    elif init != "default":
        raise ValueError(f"unknown init {init!r}: choose 'default' or 'xavier'")
    return model
