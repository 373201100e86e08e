"""Fingerprints of the labels that fixed seeds give, to prove a refactor changed nothing.

Runs the default method with seed 0 on every image of each development set in
``../shared/data`` (or the first ``--n``), both paper presets (shortened) on the first
``--n-presets``, plus a small stack, a tiled run, scribbles, a volume and a saved network
applied (and, with ``--distributed N``, the whole-image path on a local Dask cluster on
the first N images of each set), and writes one SHA-256 per output::

    .venv/bin/python benchmarks/same_labels.py --save before.json   # on the old code
    .venv/bin/python benchmarks/same_labels.py --check before.json  # on the new code

``--check`` exits 1 and names every output that differs. CPU only: the same seed gives
the same labels there, not across devices.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

import numpy as np

from napari_inceptseg import apply_model, segment, segment_stack
from napari_inceptseg.io import read_image

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
SETS = {
    "bsds500": ("bsds500/images/val", "*.jpg"),
    "camvid": ("camvid/val", "*.png"),
    "dsb2018": ("dsb2018/images", "*.png"),
}
METHODS = {
    "default": dict(preset="default"),
    "paper-vanilla": dict(preset="paper-vanilla", max_iter=15),
    "paper-inception": dict(preset="paper-inception", max_iter=8),
}


def _digest(labels: np.ndarray) -> str:
    a = np.ascontiguousarray(labels)
    return hashlib.sha256(str(a.shape).encode() + str(a.dtype).encode() + a.tobytes()).hexdigest()[
        :16
    ]


def _images(n: int):
    for name, (folder, pattern) in SETS.items():
        for path in sorted((DATA / folder).glob(pattern))[:n]:
            yield name, path.stem, read_image(path)


def _extras(image: np.ndarray) -> dict:
    """Paths beyond one plain image: stacks, tiles, scribbles, warm start, apply."""
    out = {}
    crop = image[:96, :128]
    stack = np.stack([crop, crop[::-1], crop[:, ::-1]])
    out["stack"] = segment_stack(stack, rgb=crop.ndim == 3, seed=0, max_iter=6).labels
    res = segment(crop, preset="paper-vanilla", max_iter=6, seed=0, tile_size=64)
    out["tiled"] = res.labels
    out["apply"] = apply_model(res.trained_model(), crop[::-1])
    scr = np.zeros(crop.shape[:2], np.int32)
    scr[5:10, 5:40], scr[60:70, 80:120] = 3, 7
    out["scribbles"] = segment(crop, scribbles=scr, seed=0, max_iter=6).labels
    vol = np.stack([crop.mean(-1) if crop.ndim == 3 else crop] * 8)
    out["volume"] = segment(vol, dims="3d", seed=0, max_iter=5).labels
    return out


#: the whole-image path's settings (``--distributed``)
DASK_RUNS = {"default": {}, "n_clusters=3": {"n_clusters": 3}, "level=0.3": {"level": 0.3}}


def _write_zarr(path: Path, image: np.ndarray) -> Path:
    """``image`` as an OME-Zarr image in 128-pixel chunks (the test suite's writer)."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from helpers import write_ome_zarr

    if image.ndim == 3:
        return write_ome_zarr(path, np.moveaxis(image[..., :3], -1, 0), "cyx", (3, 128, 128))
    return write_ome_zarr(path, image, "yx", (128, 128))


def distributed_fingerprints(n: int) -> dict:
    """``segment_zarr`` on a local Dask cluster (two worker processes), 128-pixel blocks:
    the first ``n`` images of each set with each of :data:`DASK_RUNS`.
    """
    import tempfile

    import zarr
    from distributed import Client, LocalCluster

    from napari_inceptseg.distributed import segment_zarr

    found = {}
    cluster = LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
    )
    with cluster, Client(cluster), tempfile.TemporaryDirectory() as tmp:
        for set_name, stem, image in _images(n):
            src = _write_zarr(Path(tmp) / f"{stem}.ome.zarr", image)
            for name, kw in DASK_RUNS.items():
                out = Path(tmp) / f"{stem}-{len(found)}.ome.zarr"
                segment_zarr(src, out, scheduler=cluster.scheduler_address, block=128, seed=0, **kw)
                key = f"dask/{set_name}/{stem}/{name}"
                found[key] = _digest(np.asarray(zarr.open_array(str(out / "0"))[:]))
                print(key, found[key], flush=True)
    return found


def fingerprints(n: int, n_presets: int) -> dict:
    found = {}
    first = None
    seen = {}
    for set_name, stem, image in _images(n):
        first = image if first is None else first
        seen[set_name] = seen.get(set_name, 0) + 1
        for method, kw in METHODS.items():
            if method != "default" and seen[set_name] > n_presets:
                continue
            key = f"{set_name}/{stem}/{method}"
            found[key] = _digest(segment(image, seed=0, device="cpu", **kw).labels)
            print(key, found[key], flush=True)
    if first is not None:
        for key, labels in _extras(first).items():
            found[f"extra/{key}"] = _digest(labels)
            print(f"extra/{key}", found[f"extra/{key}"], flush=True)
    return found


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--save", type=Path, help="write the fingerprints to this JSON file")
    what.add_argument("--check", type=Path, help="compare with fingerprints saved before")
    parser.add_argument("--n", type=int, default=1000, help="images per set (default: all)")
    parser.add_argument(
        "--n-presets", type=int, default=3, help="images per set for the paper presets (default 3)"
    )
    parser.add_argument(
        "--distributed",
        type=int,
        default=0,
        help="also the whole-image path on a local Dask cluster, on this many images per set",
    )
    args = parser.parse_args(argv)
    if not DATA.is_dir():
        print(f"no development data at {DATA}", file=sys.stderr)
        return 2
    found = fingerprints(args.n, args.n_presets)
    if args.distributed:
        found.update(distributed_fingerprints(args.distributed))
    if args.save:
        args.save.write_text(json.dumps(found, indent=1))
        print(f"{len(found)} fingerprints written to {args.save}")
        return 0
    saved = json.loads(args.check.read_text())
    differ = sorted(k for k in saved.keys() | found.keys() if saved.get(k) != found.get(k))
    for key in differ:
        print(f"DIFFERS {key}: {saved.get(key)} -> {found.get(key)}")
    print(f"{len(found) - len(differ)} of {len(saved)} outputs identical")
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())
