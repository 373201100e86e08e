"""How closely a whole-image run on a Dask cluster gives the in-memory method's labels.

    .venv/bin/python benchmarks/dask_agreement.py --work /tmp/agree

Two images, each written as an OME-Zarr (``cyx``) and segmented by ``segment_zarr`` on
a local cluster of two worker processes, and by ``segment`` in memory on the same
pixels, both with ``seed=0``:

- a 2048 x 2048 mosaic of four photos from scikit-image (astronaut, chelsea, coffee,
  rocket, each resized to 1024 x 1024), in 512-pixel blocks: the covering of each
  result by the other;
- 2048 x 2048 coloured disks on every 512-pixel chunk corner (each crosses block
  faces): per disk, the share of its label that lies outside it (its spill).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from helpers import write_ome_zarr  # noqa: E402
from napari_inceptseg import score, segment  # noqa: E402


def mosaic(side: int = 1024) -> np.ndarray:
    """Four scikit-image photos, each resized to ``side`` a side, in a 2 x 2 mosaic."""
    from skimage import data
    from skimage.transform import resize

    tiles = [
        (resize(f(), (side, side), anti_aliasing=True) * 255).round().astype(np.uint8)
        for f in (data.astronaut, data.chelsea, data.coffee, data.rocket)
    ]
    return np.concatenate(
        [np.concatenate(tiles[:2], axis=1), np.concatenate(tiles[2:], axis=1)], axis=0
    )


def disks(size: int = 2048, chunk: int = 512, seed: int = 1):
    """Coloured disks on every chunk corner over a noisy background, and their truth."""
    rng = np.random.default_rng(seed)
    image = np.full((size, size, 3), 60.0)
    truth = np.zeros((size, size), np.int32)
    yy, xx = np.mgrid[0:size, 0:size]
    corners = [(y, x) for y in range(chunk, size, chunk) for x in range(chunk, size, chunk)]
    for k, (cy, cx) in enumerate(corners, 1):
        disc = (yy - cy) ** 2 + (xx - cx) ** 2 <= (chunk // 4) ** 2
        image[disc] = rng.integers(120, 255, 3)
        truth[disc] = k
    noisy = np.clip(image + rng.normal(0, 6, image.shape), 0, 255).astype(np.uint8)
    return noisy, truth


def spills(labels: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Per disk: the share of its majority label's pixels that lie outside the disk."""
    out = []
    for k in range(1, int(truth.max()) + 1):
        ids, counts = np.unique(labels[truth == k], return_counts=True)
        major = ids[counts.argmax()]
        total = int((labels == major).sum())
        out.append(1 - counts.max() / total)
    return np.array(out)


def both(image: np.ndarray, work: Path, name: str, address: str, block: int):
    """The labels of a Dask run and of an in-memory run on ``image``."""
    import zarr

    from napari_inceptseg.distributed import segment_zarr

    src = write_ome_zarr(
        work / f"{name}.ome.zarr", np.moveaxis(image, -1, 0), "cyx", (3, block, block)
    )
    out = segment_zarr(
        src,
        work / f"{name}-labels.ome.zarr",
        scheduler=address,
        block=block,
        seed=0,
        overwrite=True,
    )
    apart = np.asarray(zarr.open_array(str(out / "0"))[:])
    together = segment(image, seed=0, device="cpu").labels
    return apart, together


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--block", type=int, default=512)
    args = parser.parse_args()
    from distributed import Client, LocalCluster

    args.work.mkdir(parents=True, exist_ok=True)
    with (
        LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=None) as lc,
        Client(lc),
    ):
        apart, together = both(mosaic(), args.work, "mosaic", lc.scheduler_address, args.block)
        a_by_t = score(apart, together)["covering"]
        t_by_a = score(together, apart)["covering"]
        print(
            f"mosaic: covering dask by memory {a_by_t:.3f}, memory by dask {t_by_a:.3f}; "
            f"labels {int(apart.max())} (dask) {int(together.max())} (memory)"
        )
        image, truth = disks()
        apart, together = both(image, args.work, "disks", lc.scheduler_address, args.block)
        for name, labels in (("dask", apart), ("memory", together)):
            s = spills(labels, truth)
            print(
                f"disks, {name}: largest spill {s.max():.3f}, "
                f"disks over 10 %: {(s > 0.1).sum()} of {s.size}"
            )


if __name__ == "__main__":
    main()
