"""The command line: outputs, no overwrite, bad files skipped, help."""

from __future__ import annotations

import json
import subprocess
import sys

import imageio.v3 as iio
import numpy as np
import pytest

from helpers import PROCESS_DEADLINE, run_command
from napari_inceptseg.cli.main import build_parser, main
from napari_inceptseg.params import SegmentParams

FAST = [
    "--arch",
    "vanilla",
    "--n-channels",
    "16",
    "--max-iter",
    "4",
    "--seed",
    "0",
    "--device",
    "cpu",
    "-q",
]


@pytest.fixture
def inputs(tmp_path, small_rgb):
    a = tmp_path / "in" / "a.png"
    a.parent.mkdir()
    iio.imwrite(a, small_rgb)
    b = tmp_path / "in" / "b.tif"
    import tifffile

    tifffile.imwrite(b, (small_rgb[..., 0].astype(np.uint16) * 100))
    bad = tmp_path / "in" / "broken.jpg"
    bad.write_bytes(b"this is not a jpeg")
    return a, b, bad


def test_writes_labels_overlay_and_run_record(tmp_path, inputs, small_rgb):
    a, b, _ = inputs
    out = tmp_path / "out"
    assert main(["segment", str(a), str(b), "-o", str(out), *FAST]) == 0
    labels = iio.imread(out / "a_labels.png")
    assert labels.dtype == np.uint16 and labels.shape == small_rgb.shape[:2] and labels.min() >= 1
    overlay = iio.imread(out / "a_overlay.png")
    assert overlay.shape == (*small_rgb.shape[:2], 3)
    run = json.loads((out / "a_run.json").read_text())
    assert (
        run["params"]["arch"] == "vanilla" and run["n_iter"] >= 1 and run["image"].endswith("a.png")
    )
    assert (out / "b_labels.png").exists()


def test_tif_format(tmp_path, inputs):
    import tifffile

    a, _, _ = inputs
    assert main(["segment", str(a), "-o", str(tmp_path / "o"), "--format", "tif", *FAST]) == 0
    assert tifffile.imread(tmp_path / "o" / "a_labels.tif").min() >= 1


def test_never_overwrites_without_flag_and_never_what_it_did_not_write(tmp_path, inputs, capsys):
    a, _, _ = inputs
    out = tmp_path / "out"
    out.mkdir()
    mine = out / "a_overlay.png"
    mine.write_bytes(b"user's file")
    assert main(["segment", str(a), "-o", str(out), *FAST]) == 1
    assert mine.read_bytes() == b"user's file"
    assert not (out / "a_labels.png").exists()  # nothing half-written for that image
    assert "--overwrite" in capsys.readouterr().err
    # --overwrite replaces only this program's outputs: not the user's file
    assert main(["segment", str(a), "-o", str(out), "--overwrite", *FAST]) == 1
    assert mine.read_bytes() == b"user's file" and not (out / "a_labels.png").exists()
    assert "not written by napari-inceptseg" in capsys.readouterr().err
    mine.unlink()
    assert main(["segment", str(a), "-o", str(out), *FAST]) == 0
    assert "a_overlay.png" in json.loads((out / "a_run.json").read_text())["outputs"]
    labels = out / "a_labels.png"
    labels.write_bytes(b"stale")
    assert main(["segment", str(a), "-o", str(out), "--overwrite", *FAST]) == 0
    assert iio.imread(mine).ndim == 3 and iio.imread(labels).min() >= 1


def test_no_output_replaces_an_input(tmp_path, inputs, capsys):
    """``a.png`` and ``a_labels.png`` segmented into their own folder: the first's labels
    would replace the second input. Refused before any image trains, even with
    --overwrite, and both inputs are left as they were."""
    a, _, _ = inputs
    other = a.with_name("a_labels.png")
    iio.imwrite(other, np.zeros((24, 30), np.uint8))
    before = {p: p.read_bytes() for p in (a, other)}
    assert main(["segment", str(a), str(other), "-o", str(a.parent), "--overwrite", *FAST]) == 2
    assert "would replace the input" in capsys.readouterr().err
    assert {p: p.read_bytes() for p in (a, other)} == before


def test_an_output_that_is_a_link_is_refused_before_its_image_trains(
    tmp_path, inputs, capsys, monkeypatch
):
    from napari_inceptseg.cli import segment as cli_segment

    def no_training(*args, **kwargs):
        raise AssertionError("trained although an output cannot be written")

    monkeypatch.setattr(cli_segment, "run_one", no_training)
    a, _, _ = inputs
    out = tmp_path / "out"
    out.mkdir()
    (out / "a_overlay.png").symlink_to(tmp_path / "nowhere.png")  # a dangling link
    for flags in ([], ["--overwrite"]):
        assert main(["segment", str(a), "-o", str(out), *flags, *FAST]) == 1
        assert "is a symbolic link" in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == ["a_overlay.png"]
    assert not (tmp_path / "nowhere.png").exists()


def test_bad_file_is_reported_and_others_processed(tmp_path, inputs, capsys):
    a, b, bad = inputs
    out = tmp_path / "out"
    missing = tmp_path / "nope.png"
    code = main(["segment", str(bad), str(a), str(missing), str(b), "-o", str(out), *FAST])
    err = capsys.readouterr()
    assert code == 1
    assert (out / "a_labels.png").exists() and (out / "b_labels.png").exists()
    assert "broken.jpg" in err.err and "not a readable image" in err.err
    assert "nope.png: no such file" in err.err
    assert "2 of 4 image(s) segmented" in err.out


def test_help_documents_every_option_with_default():
    sub = build_parser()._subparsers._group_actions[0].choices["segment"]
    text = sub.format_help()
    import dataclasses

    for f in dataclasses.fields(SegmentParams):
        flag = "--" + f.name.replace("_", "-")
        assert flag in text
    actions = {a.dest: a for a in sub._actions}
    for f in dataclasses.fields(SegmentParams):
        # left out, an option keeps the preset's value; the help shows the default method's
        assert actions[f.name].default is None
        assert f"(default: {f.default})" in actions[f.name].help
    assert "--overwrite" in text and "--channel-axis" in text and "--preset" in text


def test_options_override_the_preset_and_nothing_else():
    from napari_inceptseg.cli.parser import params_from_args as _params_from_args
    from napari_inceptseg.presets import preset_params

    parser = build_parser()
    args = parser.parse_args(["segment", "x.png", "-o", "o"])
    assert _params_from_args(args) == SegmentParams()
    args = parser.parse_args(
        [
            "segment",
            "x.png",
            "-o",
            "o",
            "--preset",
            "paper-inception",
            "--max-iter",
            "7",
            "--no-regions",
        ]
    )
    assert _params_from_args(args) == preset_params("paper-inception", max_iter=7)
    args = parser.parse_args(["segment", "x.png", "-o", "o", "--n-clusters", "4"])
    assert _params_from_args(args) == SegmentParams(n_clusters=4)


def test_bad_option_is_one_line_error(tmp_path, inputs):
    a, _, _ = inputs
    proc = run_command(
        [
            sys.executable,
            "-m",
            "napari_inceptseg",
            "segment",
            str(a),
            "-o",
            str(tmp_path),
            "--lr",
            "-1",
        ]
    )
    assert proc.returncode == 2
    assert proc.stderr.strip() == "napari-inceptseg: error: lr must be > 0, got -1.0"
    assert "Traceback" not in proc.stderr


def test_absent_device_fails_before_any_image(tmp_path, inputs):
    import torch

    if torch.cuda.is_available():
        pytest.skip("CUDA present")
    a, _, _ = inputs
    assert main(["segment", str(a), "-o", str(tmp_path / "o"), "--device", "cuda"]) == 2
    assert not (tmp_path / "o").exists()


def test_demo_headless(tmp_path, capsys):
    assert (
        main(["demo", "--headless", "--max-iter", "3", "-o", str(tmp_path), "--device", "cpu"]) == 0
    )
    out = capsys.readouterr().out
    assert "pixel accuracy, one-to-one" in out and "Outputs written to" in out
    assert "nuclei (objects=True): " in out and " for 36 nuclei" in out
    (run_dir,) = tmp_path.iterdir()
    assert {p.name for p in run_dir.iterdir()} == {
        "synthetic_labels.png",
        "synthetic_overlay.png",
        "astronaut_labels.png",
        "astronaut_overlay.png",
        "nuclei_objects.png",
        "nuclei_overlay.png",
        "nuclei_objects.csv",
    }
    objects = iio.imread(run_dir / "nuclei_objects.png")
    rows = (run_dir / "nuclei_objects.csv").read_text().splitlines()
    assert len(rows) == len(np.unique(objects))  # a header and one row per object


def test_save_model_then_apply_it_without_training(tmp_path, inputs, small_rgb):
    a, _, _ = inputs
    net = tmp_path / "net.safetensors"
    # clusters: a saved network reproduces the clusters (regions are made per run)
    assert (
        main(
            [
                "segment",
                str(a),
                "-o",
                str(tmp_path / "o1"),
                "--save-model",
                str(net),
                "--no-regions",
                *FAST,
            ]
        )
        == 0
    )
    assert net.is_file()
    trained = iio.imread(tmp_path / "o1" / "a_labels.png")
    stack = tmp_path / "in" / "stack.tif"
    import tifffile

    tifffile.imwrite(stack, np.stack([small_rgb, small_rgb[:, ::-1]]))  # (T, Y, X, RGB)
    assert (
        main(
            [
                "segment",
                str(a),
                str(stack),
                "-o",
                str(tmp_path / "o2"),
                "--model",
                str(net),
                "--device",
                "cpu",
                "-q",
            ]
        )
        == 0
    )
    run = json.loads((tmp_path / "o2" / "a_run.json").read_text())
    assert run["applied"] and run["n_iter"] == 0
    applied = iio.imread(tmp_path / "o2" / "a_labels.png")
    assert (applied == trained).mean() > 0.9
    frames = tifffile.imread(tmp_path / "o2" / "stack_labels.tif")
    assert frames.shape == (2,) + small_rgb.shape[:2]
    assert (frames[0] == applied).all()  # the same network, the same ids


@pytest.mark.parametrize("content", [b"", b"garbage" * 100, b"\x80\x04\x95 pickle"])
def test_bad_model_file_is_one_line_error(tmp_path, inputs, content):
    a, _, _ = inputs
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(content)
    proc = run_command(
        [
            sys.executable,
            "-m",
            "napari_inceptseg",
            "segment",
            str(a),
            "-o",
            str(tmp_path / "o"),
            "--model",
            str(bad),
        ]
    )
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "bad.safetensors" in lines[0] and "Traceback" not in proc.stderr
    assert not (tmp_path / "o").exists()


def test_scribbles_option(tmp_path, inputs, small_rgb):
    a, _, _ = inputs
    scr = np.zeros(small_rgb.shape[:2], np.uint8)
    scr[2:22, 3:6] = 3
    scr[2:22, 22:26] = 9
    iio.imwrite(tmp_path / "scr.png", scr)
    assert (
        main(
            [
                "segment",
                str(a),
                "-o",
                str(tmp_path / "o"),
                "--scribbles",
                str(tmp_path / "scr.png"),
                *FAST,
                "--w-scr",
                "2",
                "--max-iter",
                "30",
            ]
        )
        == 0
    )
    labels = iio.imread(tmp_path / "o" / "a_labels.png")
    assert labels[11, 4] == 3 and labels[11, 24] == 9
    run = json.loads((tmp_path / "o" / "a_run.json").read_text())
    assert run["scribble_ids"] == [3, 9]


def test_volume_with_spacing_and_tiles(tmp_path):
    import tifffile

    rng = np.random.default_rng(0)
    vol = rng.normal(0, 0.1, (6, 40, 40)).astype(np.float32)
    vol[:, :, 20:] += 1
    tifffile.imwrite(tmp_path / "vol.tif", vol)
    code = main(
        [
            "segment",
            str(tmp_path / "vol.tif"),
            "-o",
            str(tmp_path / "o"),
            "--dims",
            "3d",
            "--spacing",
            "3",
            "1",
            "1",
            "--tile-size",
            "24",
            "--arch",
            "vanilla",
            "--n-channels",
            "8",
            "--max-iter",
            "20",
            "--seed",
            "0",
            "--device",
            "cpu",
            "-q",
        ]
    )
    assert code == 0
    labels = tifffile.imread(tmp_path / "o" / "vol_labels.tif")  # volumes are written as TIFF
    assert labels.shape == vol.shape
    assert (labels[:, :, :18] != labels[:, :, 22:].max()).all() or (
        labels[:, :, :18] != labels[:, :, 22:]
    ).mean() > 0.9
    run = json.loads((tmp_path / "o" / "vol_run.json").read_text())
    assert run["plan"].startswith("tiles of 6 x 24 x 24") and run["spacing"] == [3.0, 1.0, 1.0]
    assert (tmp_path / "o" / "vol_overlay.png").is_file()


def test_output_problems_are_found_before_any_training(tmp_path, inputs, monkeypatch):
    from napari_inceptseg.cli import segment as _cli

    a, _, _ = inputs
    trained = []
    monkeypatch.setattr(_cli, "run_one", lambda *args, **kw: trained.append(1))
    a_file = tmp_path / "results.txt"
    a_file.write_text("the user's file")
    assert main(["segment", str(a), "-o", str(a_file), *FAST]) == 2
    assert a_file.read_text() == "the user's file"
    assert main(["segment", str(a), "-o", str(a_file / "sub"), *FAST]) == 2  # cannot be created
    twin = tmp_path / "twin"
    twin.mkdir()
    (twin / a.name).write_bytes(a.read_bytes())
    assert main(["segment", str(a), str(twin / a.name), "-o", str(tmp_path / "o"), *FAST]) == 2
    assert not trained


def test_ctrl_c_keeps_finished_images_and_the_interrupted_ones_clusters(
    tmp_path, inputs, monkeypatch, capsys
):
    from napari_inceptseg.cli import segment as _cli

    a, b, _ = inputs
    c = tmp_path / "in" / "c.png"
    c.write_bytes(a.read_bytes())
    calls = []
    plain = _cli._Bar.__call__

    def ctrl_c_in_b(self, p):  # Ctrl+C lands in the progress bar, at b's 3rd iteration
        calls.append(p.iteration)
        if len(calls) > 4 and p.iteration == 3:
            raise KeyboardInterrupt
        return plain(self, p)

    monkeypatch.setattr(_cli._Bar, "__call__", ctrl_c_in_b)
    out = tmp_path / "out"
    assert main(["segment", str(a), str(b), str(c), "-o", str(out), *FAST]) == 130
    err = capsys.readouterr()
    assert "interrupted: 1 of 3 image(s) segmented" in err.out
    assert "interrupted" not in json.loads((out / "a_run.json").read_text())  # finished: kept whole
    run_b = json.loads((out / "b_run.json").read_text())
    assert run_b["interrupted"] is True and run_b["n_iter"] == 3
    labels = iio.imread(out / "b_labels.png")
    assert labels.shape == (24, 30) and labels.min() >= 1 and labels.max() == run_b["n_labels"]
    assert "b.tif: interrupted; the clusters of iteration 3 were written" in err.err
    assert not list(out.glob("c_*"))


def test_sigint_in_a_real_run_keeps_what_is_finished(tmp_path, inputs, spawn):
    import re
    import signal
    import threading
    import time

    a, _, _ = inputs  # small: finishes in a second or two
    b = tmp_path / "in" / "big.png"  # 320 x 320: its 300 iterations take far longer
    iio.imwrite(b, np.random.default_rng(0).integers(0, 255, (320, 320, 3), dtype=np.uint8))
    out = tmp_path / "out"
    slow = [
        "--preset",
        "paper-vanilla",
        "--n-channels",
        "16",
        "--max-iter",
        "300",
        "--min-labels",
        "1",
        "--seed",
        "0",
        "--device",
        "cpu",
    ]
    # a job started in the background by a non-interactive shell (make, CI) ignores SIGINT,
    # and so would its children: give the command the default, as in a terminal
    proc = spawn(
        [
            sys.executable,
            "-m",
            "napari_inceptseg",
            "segment",
            str(a),
            str(b),
            "-o",
            str(out),
            *slow,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    err = []
    reader = threading.Thread(
        target=lambda: err.extend(iter(lambda: proc.stderr.read(1), "")), daemon=True
    )
    reader.start()

    def big_has_trained() -> bool:  # its progress bar shows a few iterations done
        text = "".join(err)
        return bool(re.search(r"big\.png:\s*\d+%\S*\s*\S*\s*([3-9]|\d\d+)/300", text))

    deadline = time.monotonic() + PROCESS_DEADLINE
    while not big_has_trained() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    proc.wait(timeout=PROCESS_DEADLINE)  # (its few lines of stdout fit in the pipe)
    stdout = proc.stdout.read()
    reader.join(timeout=PROCESS_DEADLINE)
    assert proc.returncode == 130, "".join(err)[-2000:]
    assert "interrupted" not in json.loads((out / "a_run.json").read_text())
    run_b = json.loads((out / "big_run.json").read_text())
    assert run_b["interrupted"] is True and 1 <= run_b["n_iter"] < 300
    assert (out / "big_labels.png").exists() and (out / "big_overlay.png").exists()
    assert "interrupted: 1 of 2 image(s) segmented" in stdout


def test_a_diverging_run_writes_its_last_good_clusters_and_fails(
    tmp_path, inputs, capsys, overflowing_steps
):
    a, _, _ = inputs
    out = tmp_path / "out"
    assert main(["segment", str(a), "-o", str(out), *FAST]) == 1
    err = capsys.readouterr().err
    assert "diverged" in err and "lower learning rate" in err
    run = json.loads((out / "a_run.json").read_text())  # valid JSON: no bare NaN
    assert run["diverged"] is True and run["n_iter"] >= 1 and "lower learning rate" in run["error"]
    assert iio.imread(out / "a_labels.png").min() >= 1


def test_output_files_get_the_users_umask_mode(tmp_path, inputs):
    import os
    import stat

    a, _, _ = inputs
    old = os.umask(0o027)
    try:
        assert (
            main(
                [
                    "segment",
                    str(a),
                    "-o",
                    str(tmp_path / "o"),
                    "--save-model",
                    str(tmp_path / "o" / "net.safetensors"),
                    "--no-regions",
                    *FAST,
                ]
            )
            == 0
        )
    finally:
        os.umask(old)
    written = sorted(f.name for f in (tmp_path / "o").iterdir())
    assert written == ["a_labels.png", "a_overlay.png", "a_run.json", "net.safetensors"]
    for f in (tmp_path / "o").iterdir():  # the network file too
        assert stat.S_IMODE(f.stat().st_mode) == 0o640, f
    mine = tmp_path / "o" / "a_run.json"
    mine.chmod(0o600)  # the user made it private: an overwrite keeps that
    assert main(["segment", str(a), "-o", str(tmp_path / "o"), "--overwrite", *FAST]) == 0
    assert stat.S_IMODE(mine.stat().st_mode) == 0o600


@pytest.mark.parametrize("where", ["under_a_file", "a_folder", "read_only"])
def test_save_model_to_a_place_that_cannot_be_written_fails_before_training(
    tmp_path, inputs, capsys, monkeypatch, where
):
    from napari_inceptseg.engine.workflow import segment as loop

    a, _, _ = inputs
    (tmp_path / "afile").write_text("mine")
    (tmp_path / "afolder").mkdir()
    target = {
        "under_a_file": tmp_path / "afile" / "net.safetensors",
        "a_folder": tmp_path / "afolder",
        "read_only": "/proc/inceptseg-test/net.safetensors",
    }[where]
    monkeypatch.setattr(loop, "segment_iter", lambda *a, **k: pytest.fail("training started"))
    assert (
        main(["segment", str(a), "-o", str(tmp_path / "out"), "--save-model", str(target), *FAST])
        == 2
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--save-model file" in err[0] and "Traceback" not in err[0]
    assert not list((tmp_path / "out").glob("*"))
    assert (tmp_path / "afile").read_text() == "mine"


def test_objects_write_their_measurements(tmp_path, capsys):
    from napari_inceptseg.sample_data import nuclei_image
    from napari_inceptseg.scoring.objects import dsb_scores

    image, truth = nuclei_image()
    src = tmp_path / "nuclei.png"
    iio.imwrite(src, image)
    out = tmp_path / "out"
    assert main(["segment", str(src), "-o", str(out), "--objects"]) == 0
    assert " objects (" in capsys.readouterr().out
    labels = iio.imread(out / "nuclei_labels.png").astype(np.int64)
    assert labels.min() == 0 and dsb_scores(labels, truth)["f1_50"] > 0.8
    rows = (out / "nuclei_objects.csv").read_text().splitlines()
    assert rows[0].startswith("label,area,intensity_mean") and len(rows) == labels.max() + 1
    assert main(["segment", str(src), "-o", str(out), "--objects", "--save-model", "m.st"]) == 2
