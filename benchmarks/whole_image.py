"""A whole-image run on a real Dask cluster on this machine, with its time and memory peaks.

    .venv/bin/python benchmarks/whole_image.py --size 6144 --workers 2 \
        --memory-limit 2GB --work /tmp/dist
    .venv/bin/python benchmarks/whole_image.py --size 16384 --workers 2 \
        --memory-limit 2GB --work /tmp/dist
    # and the one-machine path
    .venv/bin/python benchmarks/whole_image.py --size 6144 --workers 1 ... --tiled

It writes an RGB OME-Zarr (``cyx``, 1024-pixel chunks) of coloured disks on every chunk
corner (each disk crosses block faces) on a noisy background, starts ``dask scheduler``
and ``dask worker --nworkers N --nthreads 1 --memory-limit M`` on loopback, runs
``napari-inceptseg segment IN.ome.zarr -o OUT.ome.zarr --scheduler ...`` and samples
the memory (RSS) of the client and of every worker process every 0.2 s. It prints the
time, the throughput (megapixels per second), the peaks, whether a worker was killed
(the scheduler's log), whether every disk came out as one label, and (up to 8192²) the
largest share of a disk's label that lies outside it. ``--tiled`` instead segments the
same image in one process with the one-machine path (the image loaded, ``segment``
with tiles as the memory plan chooses), for comparison.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

CHUNK = 1024


def build(path: Path, size: int, seed: int = 0) -> Path:
    """The disks image, written chunk row by chunk row (never whole in memory)."""
    import zarr
    from ome_zarr.format import FormatV04
    from ome_zarr.writer import write_multiscales_metadata

    if (path / ".zattrs").exists():
        return path
    group = zarr.open_group(str(path), mode="w", zarr_format=2)
    arr = group.create_array("0", shape=(3, size, size), chunks=(3, CHUNK, CHUNK), dtype="uint8")
    rng = np.random.default_rng(seed)
    colours = rng.integers(120, 255, (size // CHUNK + 1, size // CHUNK + 1, 3))
    r = CHUNK // 4
    for y0 in range(0, size, CHUNK):
        yy, xx = np.mgrid[y0 : min(size, y0 + CHUNK), 0:size]
        rows = np.full((yy.shape[0], size, 3), 60.0)
        cy, cx = np.round(yy / CHUNK) * CHUNK, np.round(xx / CHUNK) * CHUNK
        disc = (
            ((yy - cy) ** 2 + (xx - cx) ** 2 <= r * r)
            & (cy > 0)
            & (cx > 0)
            & (cy < size)
            & (cx < size)
        )
        rows[disc] = colours[(cy[disc] // CHUNK).astype(int), (cx[disc] // CHUNK).astype(int)]
        rows += rng.normal(0, 6, rows.shape)
        arr[:, y0 : y0 + yy.shape[0]] = np.moveaxis(np.clip(rows, 0, 255).astype(np.uint8), -1, 0)
    write_multiscales_metadata(
        group,
        [{"path": "0", "coordinateTransformations": [{"type": "scale", "scale": [1.0, 1.0, 1.0]}]}],
        fmt=FormatV04(),
        axes="cyx",
    )
    return path


def check(out: Path, size: int) -> dict:
    """One label per disk: the label at every disk's centre, and at four points inside it."""
    import zarr

    labels = zarr.open_array(str(out / "0"), mode="r")
    r = CHUNK // 4
    centres = [(y, x) for y in range(CHUNK, size, CHUNK) for x in range(CHUNK, size, CHUNK)]
    ids, whole = [], 0
    for cy, cx in centres:
        inside = [
            int(labels[cy + dy, cx + dx])
            for dy, dx in ((0, 0), (-r // 2, 0), (r // 2, 0), (0, -r // 2), (0, r // 2))
        ]
        whole += len(set(inside)) == 1
        ids.append(inside[0])
    return {
        "disks": len(centres),
        "one_label_each": whole,
        "distinct": len(set(ids)),
        "n_labels": int(labels[...].max()) if size <= 8192 else None,
        "largest_spill": _largest_spill(labels[...], centres) if size <= 8192 else None,
    }


def _largest_spill(labels: np.ndarray, centres) -> float:
    """Over the disks: the largest share of a disk's label (the one most of it has) that
    lies outside the disk."""
    r = CHUNK // 4
    sizes = np.bincount(labels.ravel())
    worst = 0.0
    for cy, cx in centres:
        yy, xx = np.mgrid[cy - r : cy + r + 1, cx - r : cx + r + 1]
        disc = (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
        inside = labels[cy - r : cy + r + 1, cx - r : cx + r + 1][disc]
        ids, counts = np.unique(inside, return_counts=True)
        worst = max(worst, 1 - counts.max() / sizes[ids[counts.argmax()]])
    return round(float(worst), 4)


class Sampler:
    """Peak RSS of a set of processes (and their children), sampled."""

    def __init__(self):
        import psutil

        self.psutil, self.peak = psutil, {}

    def sample(self, roots) -> None:
        for name, pid in roots.items():
            try:
                procs = [self.psutil.Process(pid)] + self.psutil.Process(pid).children(
                    recursive=True
                )
            except self.psutil.NoSuchProcess:
                continue
            for p in procs:
                try:
                    key = name if p.pid == pid else f"{name}:{p.pid}"
                    self.peak[key] = max(self.peak.get(key, 0), p.memory_info().rss)
                except self.psutil.NoSuchProcess:
                    pass


def run_cluster(src: Path, out: Path, workers: int, memory: str, block: int, work: Path) -> dict:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    bin_dir = Path(sys.executable).parent
    log = open(work / "scheduler.log", "w")  # noqa: SIM115 (open while the scheduler runs)
    sched = subprocess.Popen(
        [
            str(bin_dir / "dask"),
            "scheduler",
            "--host",
            "127.0.0.1",
            "--port",
            "8799",
            "--no-dashboard",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
        start_new_session=True,
    )
    wlog = open(work / "workers.log", "w")  # noqa: SIM115 (open while the workers run)
    work_procs = subprocess.Popen(
        [
            str(bin_dir / "dask"),
            "worker",
            "tcp://127.0.0.1:8799",
            "--nworkers",
            str(workers),
            "--nthreads",
            "1",
            "--memory-limit",
            memory,
            "--no-dashboard",
        ],
        stdout=wlog,
        stderr=subprocess.STDOUT,
        env=env,
        start_new_session=True,
    )
    sampler = Sampler()
    try:
        time.sleep(5)
        t0 = time.perf_counter()
        client = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "napari_inceptseg",
                "segment",
                str(src),
                "-o",
                str(out),
                "--scheduler",
                "tcp://127.0.0.1:8799",
                "--block",
                str(block),
                "--seed",
                "0",
                "-q",
                "--overwrite",
            ],
            env=env,
        )
        while client.poll() is None:
            sampler.sample({"client": client.pid, "workers": work_procs.pid})
            time.sleep(0.2)
        seconds = time.perf_counter() - t0
    finally:
        for p in (work_procs, sched):
            os.killpg(p.pid, signal.SIGTERM)
            p.wait(timeout=60)
    killed = sum(
        line.count("Worker exceeded") + line.count("restarting") + line.count("KilledWorker")
        for line in (work / "workers.log").read_text().splitlines()
    )
    worker_peaks = [v for k, v in sampler.peak.items() if k.startswith("workers:")]
    return {
        "returncode": client.returncode,
        "seconds": round(seconds, 1),
        "client_peak_gb": round(sampler.peak.get("client", 0) / 1e9, 2),
        "worker_peaks_gb": sorted(round(v / 1e9, 2) for v in worker_peaks),
        "workers_killed": killed,
    }


def run_tiled(src: Path, size: int) -> dict:
    """The one-machine path: the image loaded whole, ``segment`` plans its own tiles."""
    import resource

    import zarr

    from napari_inceptseg import segment

    image = np.moveaxis(np.asarray(zarr.open_array(str(src / "0"), mode="r")[...]), 0, -1)
    t0 = time.perf_counter()
    res = segment(image, seed=0, device="cpu")
    seconds = time.perf_counter() - t0
    return {
        "seconds": round(seconds, 1),
        "plan": res.plan,
        "n_labels": res.n_labels,
        "peak_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6, 2),
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--size", type=int, default=6144)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--memory-limit", default="2GB")
    ap.add_argument("--block", type=int, default=1024)
    ap.add_argument(
        "--work", type=Path, required=True, help="a folder for the image and the output"
    )
    ap.add_argument("--tiled", action="store_true", help="the one-machine path instead")
    args = ap.parse_args(argv)
    args.work.mkdir(parents=True, exist_ok=True)
    src = build(args.work / f"disks-{args.size}.ome.zarr", args.size)
    mpx = args.size * args.size / 1e6
    if args.tiled:
        report = run_tiled(src, args.size)
    else:
        out = args.work / f"labels-{args.size}.ome.zarr"
        report = run_cluster(src, out, args.workers, args.memory_limit, args.block, args.work)
        report.update(check(out, args.size))
    report.update(
        size=args.size,
        workers=None if args.tiled else args.workers,
        mpx_per_s=round(mpx / report["seconds"], 3),
    )
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
