"""Whole images on a Dask cluster: OME-Zarr in and out, no seams, resumable, bad input refused."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from helpers import PROCESS_DEADLINE, run_command, write_ome_zarr
from napari_inceptseg import score, segment
from napari_inceptseg.distributed.output import RunFolder, is_ours

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


def _mtimes(folder) -> dict[str, int]:
    """The modification time of each block's numbers in ``folder`` (none once it is gone:
    the run finished and removed it)."""
    out = {}
    try:
        for path in folder.glob("*.response"):
            out[path.name] = path.stat().st_mtime_ns
    except FileNotFoundError:
        pass
    return out


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


def test_the_distributed_labels_are_the_in_memory_labels_of_the_same_pixels(tmp_path, cluster):
    """A 2048 x 2048 mosaic of four photos in 512-pixel blocks: the same training copy,
    BatchNorm's statistics over the whole plane, and the regions made by the same steps
    on the same analysis grid (4.2 megapixels: analysed at 2000 x 2000, as in memory),
    so the labels are those of a run in memory but for sums added in another order."""
    from skimage import data
    from skimage.transform import resize

    from napari_inceptseg.distributed import segment_zarr

    tiles = [
        (resize(f(), (1024, 1024), anti_aliasing=True) * 255).round().astype(np.uint8)
        for f in (data.astronaut, data.chelsea, data.coffee, data.rocket)
    ]
    image = np.concatenate([np.concatenate(tiles[:2], 1), np.concatenate(tiles[2:], 1)], 0)
    src = write_ome_zarr(tmp_path / "big.ome.zarr", np.moveaxis(image, -1, 0), "cyx", (3, 512, 512))
    out = segment_zarr(src, tmp_path / "big-out.ome.zarr", scheduler=cluster, block=512, seed=0)
    apart = np.asarray(zarr.open_array(str(out / "0"))[:])
    together = segment(image, seed=0, device="cpu").labels
    assert score(apart, together)["covering"] > 0.97 and score(together, apart)["covering"] > 0.97


def test_any_axes_order_its_metadata_declares(tmp_path, cluster):
    from napari_inceptseg.distributed import segment_zarr

    image, truth = disks(512, 128)
    tczyx = np.stack([np.moveaxis(image, -1, 0)] * 2, axis=1)[None]  # t=1, c=3, z=2
    src = write_ome_zarr(tmp_path / "5d.ome.zarr", tczyx, "tczyx", (1, 3, 1, 128, 128))
    out = segment_zarr(src, tmp_path / "5d-out.ome.zarr", scheduler=cluster, block=128, seed=0)
    labels = np.asarray(zarr.open_array(str(out / "0"))[:])
    assert labels.shape == (1, 2, 512, 512)
    assert one_label_per_disk(labels[0, 0], truth) and one_label_per_disk(labels[0, 1], truth)
    # each plane is the plane segmented in memory (the photo's colours read as RGB)
    together = segment(image, seed=0, device="cpu").labels
    assert score(labels[0, 0], together)["covering"] > 0.99
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
    hostile = []
    for k, value in enumerate(("abc", [5], {"axes": "yx"}, 7)):
        path = write_ome_zarr(
            tmp_path / f"h{k}.ome.zarr", np.zeros((2, 32, 32), np.uint8), "cyx", (2, 32, 32)
        )
        (path / ".zattrs").write_text(json.dumps({"multiscales": value}))
        hostile.append((path, f"o-h{k}", "multiscales"))
    scale = write_ome_zarr(
        tmp_path / "scale.ome.zarr", np.zeros((2, 32, 32), np.uint8), "cyx", (2, 32, 32)
    )
    meta = json.loads((scale / ".zattrs").read_text())
    meta["multiscales"][0]["datasets"][0]["coordinateTransformations"][0]["scale"] = [1, "x", -1]
    (scale / ".zattrs").write_text(json.dumps(meta))
    for src, out, match in (
        *hostile,
        (scale, "o-scale", "positive numbers"),
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
    blocks = RunFolder(out).state / "blocks"  # the run is written beside its output
    deadline = time.monotonic() + PROCESS_DEADLINE
    while len(list(blocks.glob("*.response"))) < 8:
        assert time.monotonic() < deadline and proc.poll() is None, "the run did not get going"
        time.sleep(0.1)
    import os

    os.killpg(proc.pid, signal.SIGKILL)  # the client, its scheduler and workers
    proc.wait(timeout=PROCESS_DEADLINE)
    before = _mtimes(blocks)
    assert 8 <= len(before) < 64
    assert not out.exists()  # no output until it is complete
    seen: dict[str, int] = {}
    # the rerun: watch that no finished block is done again
    proc = spawn(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    while proc.poll() is None:
        seen.update(_mtimes(blocks))
        assert time.monotonic() < deadline + PROCESS_DEADLINE, "the rerun did not finish"
        time.sleep(0.05)
    assert proc.returncode == 0, proc.stderr.read()[-2000:]
    assert all(seen[name] == t for name, t in before.items())  # not redone
    labels = np.asarray(zarr.open_array(str(out / "0"))[:])
    assert one_label_per_disk(labels, truth)
    assert (
        is_ours(out) and not RunFolder(out).partial.exists() and not (out / ".inceptseg").exists()
    )


def test_a_worker_killed_mid_run_is_replaced_and_the_run_completes(tmp_path):
    """Dask's nanny restarts a killed worker and its blocks run again: the labels are
    whole, as if nothing had happened. The test holds a Client of its own, current in a
    ``with`` block, as a notebook does: the run waits on its futures in its own client's
    event loop, not in that one's (a lost block's future is waited on again)."""
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
    assert is_ours(out) and not RunFolder(out).partial.exists()


def _files(folder) -> dict[str, bytes]:
    """Every file under ``folder`` with its bytes (to show that nothing changed)."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def test_nothing_that_is_not_this_programs_output_is_ever_replaced(tmp_path):
    """Refused before any work, whatever ``overwrite`` says: the input itself, a folder
    inside it or around it, a folder of someone else's files, a symbolic link."""
    from napari_inceptseg.distributed import segment_zarr

    src = write_ome_zarr(
        tmp_path / "in.ome.zarr", np.zeros((3, 64, 64), np.uint8), "cyx", (3, 32, 32)
    )
    theirs = tmp_path / "results"
    theirs.mkdir()
    (theirs / "notes.txt").write_text("someone's notes")
    (tmp_path / "link.ome.zarr").symlink_to(theirs)
    before = _files(tmp_path)
    for out, match in (
        (src, "is, holds or lies inside the input"),
        (src / "labels", "is, holds or lies inside the input"),
        (tmp_path, "is, holds or lies inside the input"),
        (theirs, "not an output of napari-inceptseg"),
        (tmp_path / "link.ome.zarr", "symbolic link"),
    ):
        with pytest.raises(ValueError, match=match):
            segment_zarr(src, out, overwrite=True, scheduler="tcp://127.0.0.1:9")
    for workers in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="workers must be a whole number >= 1"):
            segment_zarr(src, tmp_path / "new.ome.zarr", workers=workers)
    assert _files(tmp_path) == before and not (tmp_path / "new.ome.zarr").exists()
    # the command line says the same in one line, and leaves the input as it was
    done = run_command(
        [sys.executable, "-m", "napari_inceptseg", "segment", str(src), "-o", str(src)]
        + ["--overwrite", "-q"]
    )
    assert done.returncode == 2 and "inside the input" in done.stderr
    assert "Traceback" not in done.stderr and _files(tmp_path) == before


def test_an_old_output_is_replaced_only_once_the_new_one_is_complete(tmp_path, cluster):
    from napari_inceptseg.distributed import segment_zarr, segment_zarr_iter

    image, truth = disks(256, 128)
    src = write_ome_zarr(tmp_path / "in.ome.zarr", np.moveaxis(image, -1, 0), "cyx", (3, 128, 128))
    out = segment_zarr(src, tmp_path / "out.ome.zarr", scheduler=cluster, block=128, seed=0)
    before = _files(out)
    with pytest.raises(ValueError, match="cannot reach the Dask scheduler"):
        segment_zarr(src, out, scheduler="tcp://127.0.0.1:9", overwrite=True, seed=0)
    assert _files(out) == before and not RunFolder(out).partial.exists()
    segment_zarr(src, out, scheduler=cluster, block=128, seed=1, overwrite=True)
    labels = np.asarray(zarr.open_array(str(out / "0"))[:])
    assert one_label_per_disk(labels, truth) and is_ours(out)
    assert (
        json.loads((out / ".zattrs").read_text())["napari-inceptseg"]["request"]["params"]["seed"]
        == 1
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.ome.zarr", "out.ome.zarr"]
    # something that takes the output's place during a run is left alone
    late = tmp_path / "late.ome.zarr"
    run = segment_zarr_iter(src, late, scheduler=cluster, block=128, seed=0)
    next(run)
    late.mkdir()
    (late / "mine.txt").write_text("someone's")
    with pytest.raises(ValueError, match="appeared during the run .* run the same command again"):
        for _ in run:
            pass
    assert _files(late) == {"mine.txt": b"someone's"} and RunFolder(late).partial.exists()
    late.rename(tmp_path / "moved")
    segment_zarr(src, late, scheduler=cluster, block=128, seed=0)  # every block was done
    assert is_ours(late) and one_label_per_disk(
        np.asarray(zarr.open_array(str(late / "0"))[:]), truth
    )


def test_a_resumed_run_whose_input_has_changed_starts_afresh(tmp_path, cluster):
    """An unfinished run (closed after a few blocks) on one image; the image is then
    replaced by another of the same shape: the rerun says it starts afresh, and its
    labels are the new image's."""
    import shutil

    from napari_inceptseg.distributed import segment_zarr, segment_zarr_iter

    first, _ = disks(512, 128, seed=0)
    second, truth = disks(512, 256, seed=2)  # other disks, same shape and chunks
    src = tmp_path / "in.ome.zarr"
    write_ome_zarr(src, np.moveaxis(first, -1, 0), "cyx", (3, 128, 128))
    out = tmp_path / "out.ome.zarr"
    run = segment_zarr_iter(src, out, scheduler=cluster, block=128, seed=0)
    for record in run:
        if record.stage == "blocks" and record.done >= 4:
            break
    run.close()  # cancelled: the partial run is kept for a rerun
    assert RunFolder(out).partial.exists() and not out.exists()
    shutil.rmtree(src)
    write_ome_zarr(src, np.moveaxis(second, -1, 0), "cyx", (3, 128, 128))
    with pytest.warns(UserWarning, match="starting afresh.*input has changed"):
        segment_zarr(src, out, scheduler=cluster, block=128, seed=0)
    labels = np.asarray(zarr.open_array(str(out / "0"))[:])
    assert one_label_per_disk(labels, truth) and score(labels, truth)["covering"] > 0.9


def test_input_the_method_refuses_stops_at_once_and_leaves_nothing(tmp_path, cluster):
    """NaN pixels are met by a worker: the run ends with the method's own message, the
    task is not retried (no worker logs a failed task) and no output or partial folder
    is left. An image too small, or a damaged chunk, is refused before any cluster."""
    from distributed import Client

    from napari_inceptseg.distributed import segment_zarr
    from napari_inceptseg.distributed.blocks import read_window
    from napari_inceptseg.distributed.ngff import open_image

    image = disks(256, 128)[0].astype(np.float32)
    image[200:210, 10:20] = np.nan
    src = write_ome_zarr(tmp_path / "nan.ome.zarr", np.moveaxis(image, -1, 0), "cyx", (3, 128, 128))
    out = tmp_path / "out.ome.zarr"
    with pytest.raises(ValueError, match="NaN or infinite"):
        segment_zarr(src, out, scheduler=cluster, block=128, seed=0)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["nan.ome.zarr"]
    with Client(cluster, set_as_default=False) as client:
        logs = client.get_worker_logs()
    assert not any("Compute Failed" in line for log in logs.values() for _, line in log)
    tiny = write_ome_zarr(tmp_path / "tiny.ome.zarr", np.zeros((6, 6), np.uint8), "yx", (6, 6))
    with pytest.raises(ValueError, match="at least 8 x 8"):
        segment_zarr(tiny, out, scheduler="tcp://127.0.0.1:9")
    good = write_ome_zarr(
        tmp_path / "good.ome.zarr", np.ones((3, 64, 64), np.uint8), "cyx", (3, 32, 32)
    )
    level = json.loads((good / ".zattrs").read_text())["multiscales"][0]["datasets"][0]["path"]
    chunk = sorted(p for p in (good / level).rglob("*") if p.is_file() and p.name[0] != ".")[-1]
    chunk.write_bytes(b"\x28\xb5\x2f\xfd not a chunk")
    key = str(chunk.relative_to(good))
    with pytest.raises(ValueError, match=f"{key}: a damaged chunk"):
        segment_zarr(good, out, scheduler="tcp://127.0.0.1:9")
    with pytest.raises(ValueError, match=f"{key}: a damaged chunk"):  # as a worker reads it
        read_window(open_image(good), (), (0, 64), (0, 64))
    assert not out.exists() and not RunFolder(out).partial.exists()


def test_a_script_without_the_main_guard_is_told_what_to_do(tmp_path):
    src = write_ome_zarr(tmp_path / "in.ome.zarr", np.zeros((32, 32), np.uint8), "yx", (32, 32))
    script = tmp_path / "run.py"
    script.write_text(
        "from napari_inceptseg.distributed import segment_zarr\n"
        f"segment_zarr({str(src)!r}, {str(tmp_path / 'out.ome.zarr')!r}, workers=1)\n"
    )
    done = run_command([sys.executable, str(script)], cwd=tmp_path)
    assert done.returncode != 0
    assert 'if __name__ == "__main__":' in done.stderr.strip().splitlines()[-1]


def test_a_whole_image_run_trains_on_the_in_memory_copy_to_the_bit(tmp_path):
    """The training copy is read a group of rows at a time, never whole, and is still the
    copy a run in memory makes (``interpolate(mode="area")`` of the network's input)."""
    import torch

    from napari_inceptseg.distributed.ngff import open_image
    from napari_inceptseg.distributed.training import training_copy
    from napari_inceptseg.engine.machine.plan import training_size
    from napari_inceptseg.image import prepare, to_colour_space
    from napari_inceptseg.presets import preset_params

    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (700, 530, 3), dtype=np.uint8)
    src = write_ome_zarr(tmp_path / "in.ome.zarr", np.moveaxis(image, -1, 0), "cyx", (3, 128, 128))
    params = preset_params("default", seed=0)
    data, ranges = prepare(image)
    net_in = torch.from_numpy(to_colour_space(data, params.color_space, True))[None]
    size = training_size(image.shape[:2], params.train_pixels)
    expected = torch.nn.functional.interpolate(net_in, size=size, mode="area")[0].numpy()
    copy = training_copy(open_image(src), (), ranges, params)
    assert copy.shape == expected.shape and (copy == expected).all()


def test_a_block_averages_its_pixels_down_as_the_in_memory_analysis_copy():
    """A plane of more than ANALYSIS_PIXELS is analysed on a smaller grid; a block's
    window of it, averaged from the plane's pixels under it, is that window of the copy a
    run in memory makes, and labels come back up by the same nearest neighbour."""
    import torch

    from napari_inceptseg.distributed.grid import Grid
    from napari_inceptseg.engine.workflow.final_pass import _upscale_nearest

    grid = Grid.of((2300, 1900))
    assert grid.analysis[0] * grid.analysis[1] <= 4_000_000 < 2300 * 1900
    plane = np.random.default_rng(1).random((2, 2300, 1900), dtype=np.float32)
    whole = torch.nn.functional.interpolate(
        torch.from_numpy(plane)[None], grid.analysis, mode="area"
    )
    y, x = (100, 431), (1200, grid.analysis[1])
    (y0, y1), (x0, x1) = grid.span(0, *y), grid.span(1, *x)
    window = grid.pooled(plane[:, y0:y1, x0:x1], y, x)
    np.testing.assert_allclose(window, whole[0, :, slice(*y), slice(*x)].numpy(), rtol=1e-5)
    labels = np.arange(grid.analysis[0] * grid.analysis[1]).reshape(grid.analysis)
    up = labels[np.ix_(grid.nearest(0, 0, 2300), grid.nearest(1, 0, 1900))]
    assert (up == _upscale_nearest(labels, (2300, 1900))).all()  # as a run in memory
