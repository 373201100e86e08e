"""The evaluation harness: rows, resume, skips, refusing to mix runs, Dask."""

from __future__ import annotations

import csv
import json
import sys

import numpy as np
import pytest
from PIL import Image

from helpers import PROCESS_DEADLINE, run_command
from napari_inceptseg.bench import evaluate as ev
from napari_inceptseg.bench.datasets import list_items
from napari_inceptseg.bench.tables import read_rows
from napari_inceptseg.cli.main import main
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
    return main(
        [
            "evaluate",
            "--dataset",
            "folder",
            "--images",
            str(folder / "img"),
            "--labels",
            str(folder / "lab"),
            "--method",
            "vanilla",
            "kmeans3",
            "-o",
            str(out),
            *FAST,
            *extra,
        ]
    )


def test_rows_summary_and_skipped_image(folder, capsys):
    out = folder / "out"
    assert _cli(folder, out) == 0
    rows = _rows(out)
    assert sorted((r["image"], r["method"]) for r in rows) == sorted(
        (f"im{k}", m) for k in range(3) for m in ("vanilla", "kmeans3")
    )
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
    items = [
        i
        for i in list_items("folder", images=folder / "img", labels=folder / "lab")
        if i.name != "broken"
    ]
    row = ev.evaluate_one(items[0], "kmeans3", PARAMS)
    assert row["standard_accuracy"] > 0.95 and row["paper_accuracy"] > 0.95


def test_scale_segments_small_and_scores_full_resolution(folder):
    (item,) = [
        i
        for i in list_items("folder", images=folder / "img", labels=folder / "lab")
        if i.name == "im0"
    ]
    row = ev.evaluate_one(item, "kmeans3", PARAMS, scale=0.5)
    assert row["standard_accuracy"] > 0.9
    with pytest.raises(ValueError, match="scale"):
        ev.run_evaluation(
            [item], ["kmeans3"], PARAMS, folder / "o", config={}, scale=2.0, progress=False
        )


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
    # interrupted (one by one: the 5th call is im1's)
    assert _cli(folder, out, "--batch", "1") == 130
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
    assert (
        main(
            [
                "evaluate",
                "--dataset",
                "folder",
                "--images",
                str(folder / "img"),
                "--labels",
                str(folder / "lab"),
                "--method",
                "kmeans3",
                "-o",
                str(out),
                *FAST,
                "--max-iter",
                "5",
            ]
        )
        == 2
    )
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

    items = [
        i
        for i in list_items("folder", images=folder / "img", labels=folder / "lab")
        if i.name != "broken"
    ]
    # Dask's workers run one thread each; oneDNN's channels-last kernels sum in an
    # order that depends on the thread count, so compare at the same thread count
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        seq = ev.run_evaluation(
            items, ["vanilla", "kmeans3"], PARAMS, folder / "seq", config={"x": 1}, progress=False
        )
    finally:
        torch.set_num_threads(threads)
    par = ev.run_evaluation(
        items,
        ["vanilla", "kmeans3"],
        PARAMS,
        folder / "par",
        config={"x": 1},
        workers=2,
        progress=False,
    )
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
    skipped = [
        sorted((folder / out / "skipped.csv").read_text().splitlines()) for out in ("one", "three")
    ]
    # the header and the broken image, twice
    assert skipped[0] == skipped[1] and len(skipped[0]) == 3


def test_files_left_by_a_killed_run_are_repaired(folder):
    out = folder / "out"
    assert _cli(folder, out, "--method", "kmeans3") == 0
    full = _rows(out)
    (out / "skipped.csv").write_text("")  # killed before anything reached the disk
    (out / "results.csv").write_text("image,meth")  # killed while writing the header
    assert _cli(folder, out, "--method", "kmeans3") == 0
    assert [(r["image"], r["method"]) for r in _rows(out)] == [
        (r["image"], r["method"]) for r in full
    ]
    # a real change of columns is refused, and the message says which
    (out / "results.csv").write_text("image,method,seconds,colour\nim0,kmeans3,0.1,red\n")
    with pytest.raises(ValueError, match=r"lacks .*n_iter.*has colour too"):
        read_rows(out / "results.csv", ["image", "method", "seconds", "n_iter"])


def test_sigkill_at_random_points_then_resume_gives_every_pair_once_with_the_same_values(
    folder, spawn
):
    """A run killed with SIGKILL anywhere (even while a file is half written) resumes."""
    import os
    import random
    import signal
    import subprocess
    import sys
    import time

    cmd = [
        sys.executable,
        "-m",
        "napari_inceptseg",
        "evaluate",
        "--dataset",
        "folder",
        "--images",
        str(folder / "img"),
        "--labels",
        str(folder / "lab"),
        "--method",
        "kmeans3",
        "kmeans5",
        "felzenszwalb",
        "slic",
        "--seed",
        "0",
        "-q",
    ]
    assert run_command(cmd + ["-o", str(folder / "ref")]).returncode == 0
    rng = random.Random(0)
    out = folder / "killed"
    for attempt in range(4):
        proc = spawn(cmd + ["-o", str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if attempt == 0:  # the moment a result file is created, before anything is in it
            deadline = time.monotonic() + PROCESS_DEADLINE
            while not (out / "skipped.csv").exists() and time.monotonic() < deadline:
                time.sleep(0.001)
        else:
            time.sleep(rng.uniform(0.2, 3.0))
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=PROCESS_DEADLINE)
    assert run_command(cmd + ["-o", str(out)]).returncode == 0

    def table(path):
        return {
            (r["image"], r["method"]): {k: v for k, v in r.items() if k != "seconds"}
            for r in _rows(path)
        }

    pairs = [(r["image"], r["method"]) for r in _rows(out)]
    assert len(pairs) == len(set(pairs)) == 12
    assert table(out) == table(folder / "ref")
    assert os.path.getsize(out / "skipped.csv") > 0


@pytest.mark.parametrize("batch", ["1", "2"])
def test_sigterm_stops_within_seconds_like_ctrl_c(folder, spawn, batch):
    """SIGTERM a few seconds into training stops the command within seconds, also with
    images side by side (whose runs stop at their next iteration), and keeps what is done."""
    import signal
    import subprocess
    import sys
    import time

    out = folder / "out"
    cmd = [
        sys.executable,
        "-m",
        "napari_inceptseg",
        "evaluate",
        "--dataset",
        "folder",
        "--images",
        str(folder / "img"),
        "--labels",
        str(folder / "lab"),
        "--method",
        "kmeans3",
        "vanilla",
        "-o",
        str(out),
        "--n-channels",
        "8",
        "--max-iter",
        "1000000",
        "--min-labels",
        "1",
        "--device",
        "cpu",
        "--batch",
        batch,
        "-q",
    ]
    proc = spawn(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + PROCESS_DEADLINE
    # k-means of an image is written
    while not (out / "results.csv").exists() or len(_rows(out)) < 1:
        assert time.monotonic() < deadline and proc.poll() is None, "the run did not start"
        time.sleep(0.1)
    time.sleep(3)  # well into a million-iteration training
    proc.send_signal(signal.SIGTERM)
    sent = time.monotonic()
    _, err = proc.communicate(timeout=PROCESS_DEADLINE)
    assert proc.returncode == 130 and "interrupted" in err
    assert time.monotonic() - sent < 30, "the command took too long to stop"
    assert all(r["method"] == "kmeans3" for r in _rows(out)) and len(_rows(out)) >= 1


def test_an_image_a_method_refuses_is_skipped_with_its_reason_and_the_run_goes_on(folder):
    """An image too large for the memory given is recorded in skipped.csv with the
    planner's reason; the other images are scored, and a rerun resumes without redoing
    or refusing anything."""
    big, gt = synthetic_regions((800, 800), n_regions=3, seed=5)
    Image.fromarray(big).save(folder / "img" / "big.png")
    Image.fromarray(gt.astype(np.uint8), mode="L").save(folder / "lab" / "big.png")
    (folder / "img" / "broken.png").unlink()
    out = folder / "out"
    args = [
        "--method",
        "default",
        "kmeans3",
        "--memory-gb",
        "0.36",
        "--n-channels",
        "8",
        "--seed",
        "0",
        "-q",
    ]
    cmd = [
        "evaluate",
        "--dataset",
        "folder",
        "--images",
        str(folder / "img"),
        "--labels",
        str(folder / "lab"),
        "-o",
        str(out),
        *args,
    ]
    assert main(cmd) == 0
    scored = sorted((r["image"], r["method"]) for r in _rows(out))
    assert scored == sorted(
        [(f"im{k}", m) for k in range(3) for m in ("default", "kmeans3")] + [("big", "kmeans3")]
    )
    (skip,) = read_rows(out / "skipped.csv", ["image", "method", "reason"])
    assert (skip["image"], skip["method"]) == ("big", "default") and "memory" in skip["reason"]
    before = (out / "results.csv").read_text()
    assert main(cmd) == 0  # resumes: nothing redone, nothing counted twice
    assert (out / "results.csv").read_text() == before
    summary = json.loads((out / "summary.json").read_text())
    assert summary["n_images_scored"] == 4 and summary["n_images_skipped"] == 1


def test_a_single_annotator_mat_file_in_a_folder_is_scored_and_summarised(folder):
    """A folder may mix BSDS-style .mat ground truth with one annotator and with several."""
    from scipy.io import savemat

    for k, n_annotators in ((0, 1), (1, 3)):
        gt = np.array(Image.open(folder / "lab" / f"im{k}.png")).astype(np.uint16) + 1
        cells = np.empty((1, n_annotators), dtype=object)
        for a in range(n_annotators):
            cells[0, a] = {"Segmentation": gt, "Boundaries": np.zeros_like(gt, dtype=bool)}
        (folder / "lab" / f"im{k}.png").unlink()
        savemat(folder / "lab" / f"im{k}.mat", {"groundTruth": cells})
    out = folder / "out"
    assert _cli(folder, out, "--method", "kmeans3") == 0
    rows = {r["image"]: r for r in _rows(out)}
    assert set(rows) == {"im0", "im1", "im2"}
    for name in ("im0", "im2"):  # one annotator: the best is that annotator
        assert rows[name]["covering_best"] == rows[name]["covering"] != ""
    summary = json.loads((out / "summary.json").read_text())
    assert summary["methods"]["kmeans3"]["n_images"] == 3
    assert summary["methods"]["kmeans3"]["standard_miou_best"]["mean"] > 0.5
    assert _cli(folder, out, "--method", "kmeans3") == 0  # and it stays readable


def test_images_without_objects_have_undefined_object_scores_left_out_of_the_summary(tmp_path):
    (tmp_path / "img").mkdir()
    (tmp_path / "lab").mkdir()
    for k in range(3):
        image, gt = synthetic_regions((24, 30), n_regions=3, seed=k)
        Image.fromarray(image).save(tmp_path / "img" / f"im{k}.png")
        gt = (gt == 1).astype(np.uint16) * (k > 0)  # im0 has no object
        Image.fromarray(gt).save(tmp_path / "lab" / f"im{k}.png")
    out = tmp_path / "out"
    with pytest.warns(RuntimeWarning, match="no object"):
        assert (
            main(
                [
                    "evaluate",
                    "--dataset",
                    "folder",
                    "--instances",
                    "--images",
                    str(tmp_path / "img"),
                    "--labels",
                    str(tmp_path / "lab"),
                    "--method",
                    "kmeans2",
                    "-o",
                    str(out),
                    "-q",
                ]
            )
            == 0
        )
    rows = {r["image"]: r for r in _rows(out)}
    assert rows["im0"]["f1"] == "nan" and float(rows["im1"]["f1"]) > 0.5
    f1 = json.loads((out / "summary.json").read_text())["methods"]["kmeans2"]["f1"]
    assert f1["n_undefined"] == 1
    assert f1["mean"] == pytest.approx(np.mean([float(rows[n]["f1"]) for n in ("im1", "im2")]))
    assert "(1 undefined)" in (out / "summary.md").read_text()


def test_one_run_at_a_time_per_folder_and_a_rerun_keeps_one_row_per_pair(folder, capsys):
    from napari_inceptseg.bench.output import locked

    out = folder / "out"
    assert _cli(folder, out, "--method", "kmeans3") == 0
    rows = _rows(out)
    with locked(out):  # another run holds the folder
        assert _cli(folder, out, "--method", "kmeans3") == 2
        assert "another evaluate run is writing into" in capsys.readouterr().err
    assert _rows(out) == rows
    # two runs that wrote into one folder before it was locked: every pair twice
    text = (out / "results.csv").read_text()
    (out / "results.csv").write_text(text + "".join(text.splitlines(True)[1:]))
    assert _cli(folder, out, "--method", "kmeans3") == 0
    assert _rows(out) == rows
    assert json.loads((out / "summary.json").read_text())["n_images_scored"] == 3


def test_an_output_or_cluster_that_cannot_serve_is_one_clear_line(folder, capsys):
    taken = folder / "taken.txt"
    taken.write_text("someone's file")
    assert _cli(folder, taken) == 2
    err = capsys.readouterr().err
    assert "is a file, not a folder" in err and "--out" in err and "Traceback" not in err
    out = folder / "out"
    assert _cli(folder, out, "--scheduler", "tcp://127.0.0.1:9") == 2
    assert "cannot reach the Dask scheduler" in capsys.readouterr().err
    assert not out.exists()  # nothing is written before the cluster answers
    for workers in ("0", "-1"):
        assert _cli(folder, out, "--workers", workers) == 2
    with pytest.raises(ValueError, match="workers must be a whole number >= 1"):
        ev.run_evaluation(
            list_items("folder", images=folder / "img", labels=folder / "lab"),
            ["kmeans3"],
            {},
            out,
            config={"dataset": "folder"},
            workers=0,
        )
    assert not out.exists() and taken.read_text() == "someone's file"


def test_an_empty_config_is_named_and_files_not_ours_are_never_replaced(folder, capsys):
    out = folder / "out"
    assert _cli(folder, out, "--method", "kmeans3") == 0
    (out / "config.json").write_text("")  # a run killed while writing it
    assert _cli(folder, out, "--method", "kmeans3", "--overwrite") == 2
    err = capsys.readouterr().err
    assert f"{out / 'config.json'} cannot be read" in err
    (out / "config.json").unlink()
    before = (out / "results.csv").read_text()
    assert _cli(folder, out, "--method", "kmeans3", "--overwrite") == 2
    assert "never replaced" in capsys.readouterr().err
    assert (out / "results.csv").read_text() == before


def test_images_without_ground_truth_are_said_and_counted(folder):
    from PIL import Image

    Image.fromarray(np.zeros((24, 30, 3), np.uint8)).save(folder / "img" / "lonely.png")
    with pytest.warns(UserWarning, match=r"1 of 5 images .* no label map .*lonely\.png"):
        assert _cli(folder, folder / "out", "--method", "kmeans3") == 0
    cmd = [sys.executable, "-m", "napari_inceptseg", "evaluate", "--dataset", "folder"]
    cmd += ["--images", str(folder / "img"), "--labels", str(folder / "lab"), "--method"]
    done = run_command([*cmd, "kmeans3", "-o", str(folder / "out2"), "-q"])
    assert done.returncode == 0
    assert "napari-inceptseg: warning: 1 of 5 images" in done.stderr.splitlines()[0]


def test_an_interruption_while_a_row_is_written_stops_the_runs_under_way(folder):
    """Ctrl+C or SIGTERM may land while an answer is being recorded, outside the runs'
    own generator: the runs are closed at once (their threads stopped), not left to run
    on until the interpreter exits and waits for them."""
    items = list_items("folder", images=folder / "img", labels=folder / "lab")
    closed = []

    def execute(todo):
        try:
            for item, method in todo:
                yield (item.name, method), "unreadable"  # recorded through log()
        finally:
            closed.append(True)

    def log(_line):
        raise KeyboardInterrupt  # the signal, while the consumer writes a skipped pair

    out = folder / "out"
    ev.prepare_output(out, {"dataset": "folder"}, False)
    try:
        ev._run_pairs(items, ["kmeans3"], out, execute, progress=False, log=log)
    except KeyboardInterrupt:  # checked here, while the traceback keeps the frames alive
        assert closed == [True]
    else:
        raise AssertionError("the interruption was swallowed")
