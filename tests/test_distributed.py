"""Whole images on a Dask cluster: OME-Zarr in and out, no seams, resumable, bad input refused."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from helpers import PROCESS_DEADLINE, write_ome_zarr
from napari_inceptseg import score, segment

zarr = pytest.importorskip("zarr")
pytest.importorskip("distributed")

pytestmark = pytest.mark.slow


def disks(size: int, chunk: int, seed: int = 0):
    """Coloured disks centred on every chunk corner (so each crosses block faces) on a
    noisy background, and their ground truth (0 = background)."""
    rng = np.random.default_rng(seed)
    image = np.full((size, size, 3), 60.0)
    truth = np.zeros((size, size), np.int32)
    yy, xx = np.mgrid[0:size, 0:size]
    for k, (cy, cx) in enumerate(
        ((y, x) for y in range(chunk, size, chunk) for x in range(chunk, size, chunk)), 1
    ):
        disc = (yy - cy) ** 2 + (xx - cx) ** 2 <= (chunk // 4) ** 2
        image[disc] = rng.integers(120, 255, 3)
        truth[disc] = k
    return np.clip(image + rng.normal(0, 6, image.shape), 0, 255).astype(np.uint8), truth


def one_label_per_disk(labels, truth) -> bool:
    """Every disk is (almost all) one label, and no two disks share it."""
    majors = []
    for k in range(1, truth.max() + 1):
        ids, counts = np.unique(labels[truth == k], return_counts=True)
        if counts.max() < 0.95 * counts.sum():
            return False
        majors.append(ids[counts.argmax()])
    return len(set(majors)) == len(majors)


@pytest.fixture(scope="module")
def cluster():
    from distributed import Client, LocalCluster

    with (
        LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        ) as lc,
        Client(lc),
    ):
        yield lc.scheduler_address


def test_an_ome_zarr_becomes_an_ome_zarr_label_image_without_seams(tmp_path, cluster):
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Reader

    from napari_inceptseg.distributed import segment_zarr

    image, truth = disks(512, 128)
    src = write_ome_zarr(tmp_path / "in.ome.zarr", np.moveaxis(image, -1, 0), "cyx", (3, 128, 128))
    out = segment_zarr(src, tmp_path / "out.ome.zarr", scheduler=cluster, block=128, seed=0)
    labels = np.asarray(zarr.open_array(str(out / "0"))[:])
    assert labels.shape == truth.shape and labels.min() >= 1
    assert one_label_per_disk(labels, truth) and score(labels, truth)["covering"] > 0.95
    # ome-zarr-py reads it: a label pyramid of the image
    nodes = list(Reader(parse_url(str(out)))())
    (node,) = [n for n in nodes if any(type(spec).__name__ == "Label" for spec in n.specs)]
    pyramid = node.data
    assert len(pyramid) >= 2 and pyramid[1].shape == (256, 256)
    assert (np.asarray(pyramid[1]) == labels[::2, ::2]).all()
    meta = json.loads((out / ".zattrs").read_text())
    assert "image-label" in meta and [a["name"] for a in meta["multiscales"][0]["axes"]] == [
        "y",
        "x",
    ]


def test_the_distributed_labels_agree_with_the_in_memory_labels(tmp_path, cluster):
    """On a 2048 x 2048 image: the same kind of result, not the same pixels. The whole-image
    run trains on a 1-megapixel copy (the in-memory run on 40,000 pixels, its BatchNorm
    statistics from the whole image) and forms regions block by block, so the two agree
    closely but not exactly."""
    from napari_inceptseg.distributed import segment_zarr

    image, truth = disks(2048, 512, seed=1)
    src = write_ome_zarr(tmp_path / "big.ome.zarr", np.moveaxis(image, -1, 0), "cyx", (3, 512, 512))
    out = segment_zarr(src, tmp_path / "big-out.ome.zarr", scheduler=cluster, block=512, seed=0)
    apart = np.asarray(zarr.open_array(str(out / "0"))[:])
    together = segment(image, seed=0, device="cpu").labels
    assert score(apart, together)["covering"] > 0.9 and score(together, apart)["covering"] > 0.9
    assert one_label_per_disk(apart, truth) and one_label_per_disk(together, truth)


def test_any_axes_order_its_metadata_declares(tmp_path, cluster):
    from napari_inceptseg.distributed import segment_zarr

    image, truth = disks(256, 64)
    tczyx = np.stack([np.moveaxis(image, -1, 0)] * 2, axis=1)[None]  # t=1, c=3, z=2
    src = write_ome_zarr(tmp_path / "5d.ome.zarr", tczyx, "tczyx", (1, 3, 1, 64, 64))
    out = segment_zarr(src, tmp_path / "5d-out.ome.zarr", scheduler=cluster, block=64, seed=0)
    labels = np.asarray(zarr.open_array(str(out / "0"))[:])
    assert labels.shape == (1, 2, 256, 256)
    assert one_label_per_disk(labels[0, 0], truth) and one_label_per_disk(labels[0, 1], truth)
    assert not set(np.unique(labels[0, 0])) & set(np.unique(labels[0, 1]))  # each plane its own ids


def test_bad_inputs_and_outputs_are_refused_before_any_work(tmp_path):
    from napari_inceptseg.distributed import segment_zarr

    (tmp_path / "plain.txt").write_text("not zarr")
    group = zarr.open_group(str(tmp_path / "group.zarr"), mode="w", zarr_format=2)
    group.attrs["something"] = 1
    weird = write_ome_zarr(
        tmp_path / "weird.ome.zarr", np.zeros((2, 32, 32), np.uint8), "cyx", (2, 32, 32)
    )
    meta = json.loads((weird / ".zattrs").read_text())
    meta["multiscales"][0]["axes"][0] = {"name": "q", "type": "other"}
    (weird / ".zattrs").write_text(json.dumps(meta))
    good = write_ome_zarr(
        tmp_path / "good.ome.zarr", np.zeros((3, 32, 32), np.uint8), "cyx", (3, 32, 32)
    )
    (tmp_path / "taken.ome.zarr").mkdir()
    for src, out, match in (
        (tmp_path / "plain.txt", "o1", "not a zarr store"),
        (tmp_path / "group.zarr", "o2", "without OME-Zarr 'multiscales'"),
        (weird, "o3", "unknown axis"),
        (good, "taken.ome.zarr", "exists: choose another output"),
    ):
        with pytest.raises(ValueError, match=match):
            segment_zarr(src, tmp_path / out)
    t0 = time.monotonic()
    with pytest.raises(ValueError, match="cannot reach the Dask scheduler"):
        segment_zarr(good, tmp_path / "o4", scheduler="tcp://127.0.0.1:9")
    assert time.monotonic() - t0 < 60


def test_a_rerun_after_a_kill_skips_what_is_done(tmp_path, spawn):
    image, truth = disks(1024, 128)
    src = write_ome_zarr(tmp_path / "in.ome.zarr", np.moveaxis(image, -1, 0), "cyx", (3, 128, 128))
    out = tmp_path / "out.ome.zarr"
    cmd = [
        sys.executable,
        "-m",
        "napari_inceptseg",
        "segment",
        str(src),
        "-o",
        str(out),
        "--workers",
        "2",
        "--block",
        "128",
        "--seed",
        "0",
        "-q",
    ]
    proc = spawn(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    blocks = out / ".inceptseg" / "blocks"
    deadline = time.monotonic() + PROCESS_DEADLINE
    while len(list(blocks.glob("*.npz"))) < 8:
        assert time.monotonic() < deadline and proc.poll() is None, "the run did not get going"
        time.sleep(0.1)
    import os

    os.killpg(proc.pid, signal.SIGKILL)  # the client, its scheduler and workers
    proc.wait(timeout=PROCESS_DEADLINE)
    before = {p.name: p.stat().st_mtime_ns for p in blocks.glob("*.npz")}
    assert 8 <= len(before) < 64
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=PROCESS_DEADLINE)
    assert done.returncode == 0, done.stderr[-2000:]
    after = {p.name: p.stat().st_mtime_ns for p in blocks.glob("*.npz")}
    assert len(after) == 64 and all(after[name] == t for name, t in before.items())  # not redone
    labels = np.asarray(zarr.open_array(str(out / "0"))[:])
    assert one_label_per_disk(labels, truth)
    assert json.loads((out / ".inceptseg" / "run.json").read_text())["complete"] is True


def test_a_worker_killed_mid_run_is_replaced_and_the_run_completes(tmp_path):
    """Dask's nanny restarts a killed worker and its blocks run again: the labels are
    whole, as if nothing had happened."""
    import os

    from distributed import Client, LocalCluster

    from napari_inceptseg.distributed import segment_zarr_iter

    image, truth = disks(1024, 128)
    src = write_ome_zarr(tmp_path / "in.ome.zarr", np.moveaxis(image, -1, 0), "cyx", (3, 128, 128))
    out = tmp_path / "out.ome.zarr"
    with (
        LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        ) as lc,
        Client(lc) as client,
    ):
        killed = False
        for record in segment_zarr_iter(
            str(src), str(out), scheduler=lc.scheduler_address, block=128, seed=0
        ):
            if record.stage == "blocks" and record.done == 4 and not killed:
                pids = client.run(os.getpid)  # {worker address: its process id}
                os.kill(next(iter(pids.values())), signal.SIGKILL)
                killed = True
    assert killed
    labels = np.asarray(zarr.open_array(str(out / "0"))[:])
    assert one_label_per_disk(labels, truth)
    assert json.loads((out / ".inceptseg" / "run.json").read_text())["complete"] is True
