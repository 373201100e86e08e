"""Synthetic images with ground truth that several test folders (and the docs' pictures)
share."""

from __future__ import annotations

import numpy as np


def moving_shapes(n_frames=12, size=64, seed=0):
    """A sequence of a red disc, a green square and a blue bar moving over a grey
    background in noise, and per frame the ground truth (1 background, 2..4 objects)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    frames, gts = [], []
    colours = np.array([[128, 128, 128], [200, 40, 40], [40, 170, 60], [50, 60, 200]], float)
    for t in range(n_frames):
        gt = np.ones((size, size), np.int32)
        cy, cx = 18 + t, 16 + 2 * t % (size - 32)
        gt[(yy - cy) ** 2 + (xx - cx) ** 2 <= 64] = 2
        gt[40 - t // 2 : 52 - t // 2, 36 + t : 48 + t] = 3
        gt[6:12, 30 - t : 54 - t] = 4
        frames.append(colours[gt - 1] + rng.normal(0, 10, (size, size, 3)))
        gts.append(gt)
    return np.clip(np.stack(frames), 0, 255).astype(np.uint8), np.stack(gts)


def ellipsoids(shape=(24, 48, 48), sigma=0.1, seed=0):
    """Three ellipsoids of intensity 0.33, 0.66 and 1 on 0, in Gaussian noise; ground
    truth 1 (background) and 2..4."""
    rng = np.random.default_rng(seed)
    z, y, x = np.mgrid[: shape[0], : shape[1], : shape[2]].astype(float)
    gt = np.ones(shape, np.int32)
    for k, (c, r) in enumerate(
        [((8, 14, 14), (6, 10, 9)), ((14, 32, 30), (7, 11, 12)), ((12, 16, 36), (5, 8, 8))], start=2
    ):
        gt[((z - c[0]) / r[0]) ** 2 + ((y - c[1]) / r[1]) ** 2 + ((x - c[2]) / r[2]) ** 2 <= 1] = k
    return (np.array((0, 0.0, 0.33, 0.66, 1.0))[gt] + rng.normal(0, sigma, shape)).astype(
        np.float32
    ), gt


def three_close_regions(seed=0):
    """Three vertical bands with distinct but close colours (20 levels apart) in noise."""
    rng = np.random.default_rng(seed)
    gt = np.ones((64, 96), dtype=np.int32)
    gt[:, 32:64] = 2
    gt[:, 64:] = 3
    colours = np.array([[120, 110, 100], [110, 120, 100], [120, 120, 120]], dtype=float)
    img = colours[gt - 1] + rng.normal(0, 6, gt.shape + (3,))
    return np.clip(img, 0, 255).astype(np.uint8), gt


def one_stroke_per_region(gt, ids):
    scr = np.zeros_like(gt)
    for region, sid in zip((1, 2, 3), ids, strict=False):
        xs = np.flatnonzero(gt[32] == region)
        scr[20:44, xs[len(xs) // 2]] = sid  # one vertical stroke in the middle of the band
    return scr
