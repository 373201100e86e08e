"""The straightforward eager loop of the public reference implementations, as a baseline.

Transcribed from Kim et al.'s ``demo.py`` (and Azad & Hamid's copy of it), as
issue 5 describes it, per iteration:

forward; permute + contiguous copy of the response to (H*W, C); two fresh
H x W x C zero tensors as targets of two ``L1Loss``; argmax; labels copied to
the host and counted with ``np.unique``; cross-entropy; backward; SGD step.

The networks are the package's reference definitions (``model(x)``, i.e.
``forward``, whose layer order tests check against the published code), not
the engine's ``fast_forward``. Nothing here is used by the package.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from napari_inceptseg.engine.modeling.networks import build_model
from napari_inceptseg.image import prepare_image


def reference_run(
    image: np.ndarray,
    arch: str,
    max_iter: int,
    n_channels: int = 100,
    n_conv: int = 2,
    lr: float = 0.1,
    min_labels: int = 3,
    device: str = "cpu",
    seed: int = 0,
    on_iteration: Callable[[int, float, int], None] | None = None,
) -> np.ndarray:
    """Run the reference loop; returns the labels (argmax of the last response)."""
    data = prepare_image(image)
    h, w = data.shape[1:]
    torch.manual_seed(seed)
    model = build_model(arch, data.shape[0], n_channels, n_conv).to(device).train()
    x = torch.from_numpy(data).unsqueeze(0).to(device)
    loss_fn = nn.CrossEntropyLoss()
    loss_hpy = nn.L1Loss()
    loss_hpz = nn.L1Loss()
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    im_target = None
    for it in range(max_iter):
        optimizer.zero_grad()
        output = model(x)[0]
        output = output.permute(1, 2, 0).contiguous().view(-1, n_channels)
        output_hp = output.reshape((h, w, n_channels))
        hp_y = output_hp[1:, :, :] - output_hp[0:-1, :, :]
        hp_z = output_hp[:, 1:, :] - output_hp[:, 0:-1, :]
        hp_y_target = torch.zeros(h - 1, w, n_channels, device=device)
        hp_z_target = torch.zeros(h, w - 1, n_channels, device=device)
        lhpy = loss_hpy(hp_y, hp_y_target)
        lhpz = loss_hpz(hp_z, hp_z_target)
        _, target = torch.max(output, 1)
        im_target = target.data.cpu().numpy()
        n_labels = len(np.unique(im_target))
        loss = 1.0 * loss_fn(output, target) + 1.0 * (lhpy + lhpz)
        loss.backward()
        optimizer.step()
        if on_iteration is not None:
            on_iteration(it + 1, float(loss), n_labels)
        if n_labels <= min_labels:
            break
    return im_target.reshape(h, w)


if __name__ == "__main__":  # pragma: no cover - a quick manual check
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (64, 96, 3), dtype=np.uint8)
    t = time.perf_counter()
    reference_run(img, "vanilla", 5, on_iteration=lambda i, loss, n: print(i, round(loss, 4), n))
    print(f"{time.perf_counter() - t:.2f} s")
