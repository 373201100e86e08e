"""The evaluation harness: rows, resume, skips, refusing to mix runs, Dask."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from PIL import Image

from napari_inceptseg.bench import evaluate as ev
from napari_inceptseg.bench.tables import read_rows
from napari_inceptseg.cli.main import main
from napari_inceptseg.bench.datasets import list_items
from napari_inceptseg.sample_data import synthetic_regions

#: settings on top of each method's preset
PARAMS = dict(n_channels=8, max_iter=3, min_labels=1, device="cpu", seed=0)
FAST = ["--n-channels", "8", "--max-iter", "3", "--min-labels", "1", "--device", "cpu", "-q"]


@pytest.fixture
def folder(tmp_path):
    """Four small synthetic images with label maps (one of them unreadable)."""
    (tmp_path / "img").mkdir()
    (tmp_path / "lab").mkdir()
    for k in range(3):
        image, gt = synthetic_regions((24, 30), n_regions=3, seed=k)
        Image.fromarray(image).save(tmp_path / "img" / f"im{k}.png")
        Image.fromarray(gt.astype(np.uint8), mode="L").save(tmp_path / "lab" / f"im{k}.png")
    (tmp_path / "img" / "broken.png").write_bytes(b"not a png")
    Image.fromarray(np.ones((24, 30), np.uint8), mode="L").save(tmp_path / "lab" / "broken.png")
    return tmp_path


def _rows(out):
    with open(out / "results.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def _cli(folder, out, *extra):
    return main(["evaluate", "--dataset", "folder", "--images", str(folder / "img"), "--labels", str(folder / "lab"),
                 "--method", "vanilla", "kmeans3", "-o", str(out), *FAST, *extra])


def test_rows_summary_and_skipped_image(folder, capsys):
    out = folder / "out"
    assert _cli(folder, out) == 0
    rows = _rows(out)
    assert sorted((r["image"], r["method"]) for r in rows) == sorted(
        (f"im{k}", m) for k in range(3) for m in ("vanilla", "kmeans3"))
    for r in rows:
        for c in ev.metric_columns(False):
            if c in ("voi", "kim_sum", "kim_segments"):  # VOI is in bits; the others are sums
                assert float(r[c]) >= 0
            else:
                assert 0 <= float(r[c]) <= 1
        assert int(r["n_regions"]) >= int(r["n_clusters"]) >= 1
    summary = json.loads((out / "summary.json").read_text())
    assert summary["n_images_scored"] == 3 and summary["n_images_skipped"] == 1
    km = summary["methods"]["kmeans3"]
    assert km["n_images"] == 3 and km["n_clusters"]["mean"] == 3
    mine = [r for r in rows if r["method"] == "kmeans3"]
    pooled = sum(float(r["kim_sum"]) for r in mine) / sum(float(r["kim_segments"]) for r in mine)
    assert km["kim_pooled"] == pytest.approx(pooled)
    md = (out / "summary.md").read_text()
    assert "standard protocol" in md and "paper protocol" in md and "1 skipped" in md
    assert "region scores" in md and "kim mIoU, pooled" in md and "clusters / image" in md
    assert "skipped broken" in capsys.readouterr().out


def test_quality_is_real(folder):
    """On clean synthetic regions k-means with k=3 is nearly perfect."""
    items = [i for i in list_items("folder", images=folder / "img", labels=folder / "lab") if i.name != "broken"]
    row = ev.evaluate_one(items[0], "kmeans3", PARAMS)
    assert row["standard_accuracy"] > 0.95 and row["paper_accuracy"] > 0.95


def test_scale_segments_small_and_scores_full_resolution(folder):
    (item,) = [i for i in list_items("folder", images=folder / "img", labels=folder / "lab") if i.name == "im0"]
    row = ev.evaluate_one(item, "kmeans3", PARAMS, scale=0.5)
    assert row["standard_accuracy"] > 0.9
    with pytest.raises(ValueError, match="scale"):
        ev.run_evaluation([item], ["kmeans3"], PARAMS, folder / "o", config={}, scale=2.0, progress=False)


def test_resume_after_interruption_loses_nothing_and_repeats_nothing(folder, monkeypatch):
    out = folder / "out"
    real = ev.evaluate_one
    calls = []

    def flaky(item, method, params, scale=1.0):
        calls.append((item.name, method))
        if len(calls) == 5:  # broken x2 (skipped), im0 x2, then Ctrl+C during im1
            raise KeyboardInterrupt
        return real(item, method, params, scale)

    monkeypatch.setattr(ev, "evaluate_one", flaky)
    assert _cli(folder, out, "--batch", "1") == 130  # interrupted (one by one: the 5th call is im1's)
    assert len(_rows(out)) == 2
    # a run killed in the middle of writing a line leaves a torn row behind
    with open(out / "results.csv", "a") as fh:
        fh.write("im2,kmeans3,12")
    monkeypatch.setattr(ev, "evaluate_one", real)
    calls.clear()
    assert _cli(folder, out) == 0
    pairs = [(r["image"], r["method"]) for r in _rows(out)]
    assert len(pairs) == len(set(pairs)) == 6  # every pair exactly once


def test_never_mixes_with_another_run(folder):
    out = folder / "out"
    assert _cli(folder, out) == 0
    before = (out / "results.csv").read_text()
    assert main(["evaluate", "--dataset", "folder", "--images", str(folder / "img"), "--labels", str(folder / "lab"),
                 "--method", "kmeans3", "-o", str(out), *FAST, "--max-iter", "5"]) == 2
    assert (out / "results.csv").read_text() == before
    assert _cli(folder, out, "--max-iter", "5", "--overwrite") == 0
    assert json.loads((out / "config.json").read_text())["params"]["max_iter"] == 5


def test_per_image_seeds_do_not_depend_on_order():
    assert ev.image_seed(0, "a") == ev.image_seed(0, "a") != ev.image_seed(0, "b")
    assert ev.image_seed(1, "a") != ev.image_seed(0, "a")


@pytest.mark.slow
def test_dask_local_cluster_equals_sequential(folder):
    pytest.importorskip("distributed")
    import torch

    items = [i for i in list_items("folder", images=folder / "img", labels=folder / "lab") if i.name != "broken"]
    # Dask's workers run one thread each; oneDNN's channels-last kernels sum in an
    # order that depends on the thread count, so compare at the same thread count
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        seq = ev.run_evaluation(items, ["vanilla", "kmeans3"], PARAMS, folder / "seq", config={"x": 1}, progress=False)
    finally:
        torch.set_num_threads(threads)
    par = ev.run_evaluation(items, ["vanilla", "kmeans3"], PARAMS, folder / "par", config={"x": 1}, workers=2, progress=False)
    assert seq.n_new == par.n_new == 6

    def table(out):
        keep = [c for c in ev.BASE_COLUMNS if c != "seconds"] + ev.metric_columns(False)
        return sorted(tuple(r[c] for c in keep) for r in _rows(out))

    assert table(folder / "seq") == table(folder / "par")


def test_batched_evaluation_gives_the_same_rows(folder):
    """``--batch 3`` runs three images side by side: the same rows as one by one, the
    broken image skipped in either case."""
    assert _cli(folder, folder / "one", "--batch", "1") == 0
    assert _cli(folder, folder / "three", "--batch", "3") == 0
    keep = [c for c in ev.BASE_COLUMNS if c != "seconds"] + ev.metric_columns(False)

    def table(out):
        return sorted(tuple(r[c] for c in keep) for r in _rows(out))

    assert len(_rows(folder / "three")) == 6
    assert table(folder / "one") == table(folder / "three")
    skipped = [sorted((folder / out / "skipped.csv").read_text().splitlines()) for out in ("one", "three")]
    assert skipped[0] == skipped[1] and len(skipped[0]) == 3  # the header and the broken image, twice


def test_files_left_by_a_killed_run_are_repaired(folder):
    out = folder / "out"
    assert _cli(folder, out, "--method", "kmeans3") == 0
    full = _rows(out)
    (out / "skipped.csv").write_text("")  # killed before anything reached the disk
    (out / "results.csv").write_text("image,meth")  # killed while writing the header
    assert _cli(folder, out, "--method", "kmeans3") == 0
    assert [(r["image"], r["method"]) for r in _rows(out)] == [(r["image"], r["method"]) for r in full]
    # a real change of columns is refused, and the message says which
    (out / "results.csv").write_text("image,method,seconds,colour\nim0,kmeans3,0.1,red\n")
    with pytest.raises(ValueError, match=r"lacks .*n_iter.*has colour too"):
        read_rows(out / "results.csv", ["image", "method", "seconds", "n_iter"])


def test_sigkill_at_random_points_then_resume_gives_every_pair_once_with_the_same_values(folder):
    """A run killed with SIGKILL anywhere (even while a file is half written) resumes."""
    import os
    import random
    import signal
    import subprocess
    import sys
    import time

    cmd = [sys.executable, "-m", "napari_inceptseg", "evaluate", "--dataset", "folder",
           "--images", str(folder / "img"), "--labels", str(folder / "lab"),
           "--method", "kmeans3", "kmeans5", "felzenszwalb", "slic", "--seed", "0", "-q"]
    assert subprocess.run(cmd + ["-o", str(folder / "ref")], capture_output=True).returncode == 0
    rng = random.Random(0)
    out = folder / "killed"
    for attempt in range(4):
        proc = subprocess.Popen(cmd + ["-o", str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if attempt == 0:  # the moment a result file is created, before anything is in it
            deadline = time.monotonic() + 60
            while not (out / "skipped.csv").exists() and time.monotonic() < deadline:
                time.sleep(0.001)
        else:
            time.sleep(rng.uniform(0.2, 3.0))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert subprocess.run(cmd + ["-o", str(out)], capture_output=True).returncode == 0

    def table(path):
        return {(r["image"], r["method"]): {k: v for k, v in r.items() if k != "seconds"} for r in _rows(path)}

    pairs = [(r["image"], r["method"]) for r in _rows(out)]
    assert len(pairs) == len(set(pairs)) == 12
    assert table(out) == table(folder / "ref")
    assert os.path.getsize(out / "skipped.csv") > 0


def test_sigterm_stops_like_ctrl_c(folder):
    import signal
    import subprocess
    import sys
    import time

    out = folder / "out"
    cmd = [sys.executable, "-m", "napari_inceptseg", "evaluate", "--dataset", "folder",
           "--images", str(folder / "img"), "--labels", str(folder / "lab"),
           "--method", "vanilla", "-o", str(out), "--n-channels", "8", "--max-iter", "20000",
           "--min-labels", "1", "--device", "cpu"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not (out / "skipped.csv").exists() or (out / "skipped.csv").stat().st_size == 0:
        assert time.monotonic() < deadline, "the run did not start"
        time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "interrupted" in err
