"""Saving, loading and applying trained networks; bad files are clear errors."""

from __future__ import annotations

import json
import pickle
import sys

import imageio.v3 as iio
import numpy as np
import pytest

from helpers import run_command
from napari_inceptseg import ModelFileError, apply_stack, load_model, score, segment
from napari_inceptseg.engine.workflow.model_file import FORMAT
from sample_images import moving_shapes


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    frames, gts = moving_shapes()
    # clusters (regions=False): applying a network reproduces clusters, and ids across frames
    # are a property of clusters; the default's CIELAB input is kept, so apply must convert too
    res = segment(
        frames[0], regions=False, n_channels=32, max_iter=60, min_labels=4, seed=0, device="cpu"
    )
    path = tmp_path_factory.mktemp("model") / "net.safetensors"
    res.save_model(path)
    return frames, gts, res, path


def test_round_trip_reproduces_the_network(trained):
    frames, _, res, path = trained
    model = load_model(path)
    assert (
        model.params.arch == "vanilla" and model.params.n_channels == 32 and model.in_channels == 3
    )
    np.testing.assert_array_equal(model.label_map, res.label_map)
    np.testing.assert_array_equal(model.ranges, res.ranges)
    direct = res.trained_model().apply(frames[0], device="cpu")
    np.testing.assert_array_equal(model.apply(frames[0], device="cpu"), direct)
    # applying uses BatchNorm's learned statistics: nearly the training result itself
    assert (direct == res.labels).mean() > 0.95


def test_same_object_keeps_its_id_across_frames(trained):
    frames, gts, res, path = trained
    labels = apply_stack(path, frames, rgb=True, device="cpu")
    assert labels.shape == gts.shape
    for obj in (1, 2, 3, 4):
        ids = [np.bincount(labels[t][gts[t] == obj]).argmax() for t in range(len(frames))]
        assert len(set(ids)) == 1, f"object {obj} changes id across frames: {ids}"
        # and it is that object's id in the training result
        assert ids[0] == np.bincount(res.labels[gts[0] == obj]).argmax()
    assert (
        np.mean(
            [score(labels[t], gts[t], matching="majority")["accuracy"] for t in range(len(frames))]
        )
        > 0.9
    )


def test_tiled_prediction_equals_the_whole_image(trained):
    frames, _, res, _ = trained
    model = res.trained_model()
    big = np.concatenate([np.concatenate(list(frames[:3]), axis=1)] * 2, axis=0)  # 128 x 192
    whole = model.apply(big, device="cpu")
    tiled = model.apply(big, device="cpu", tile_size=40)
    assert (whole == tiled).mean() > 0.999  # the same function (float ties aside), no seams


def test_warm_start_from_a_file(trained):
    frames, gts, _, path = trained
    res = segment(
        frames[5], init_model=load_model(path), max_iter=5, seed=1, device="cpu", arch="inception"
    )
    assert res.params.arch == "vanilla"  # the file's architecture wins
    assert score(res.labels, gts[5], matching="majority")["accuracy"] > 0.9


def _header_file(path, tensors, header):
    from safetensors.torch import save_file

    save_file(tensors, str(path), metadata=header)
    return path


def test_bad_files_are_clear_errors(trained, tmp_path):
    _, _, _, good = trained
    data = good.read_bytes()
    cases = {}
    (tmp_path / "trunc.safetensors").write_bytes(data[: len(data) // 2])
    cases["trunc.safetensors"] = "corrupt, truncated"
    (tmp_path / "noise.safetensors").write_bytes(np.random.default_rng(0).bytes(4096))
    cases["noise.safetensors"] = "corrupt, truncated"

    class Boom:
        def __reduce__(self):
            return (open, (str(tmp_path / "EXECUTED"), "w"))

    (tmp_path / "pickle.safetensors").write_bytes(pickle.dumps({"w": Boom()}))
    cases["pickle.safetensors"] = "corrupt, truncated"
    import torch
    from safetensors import safe_open

    with safe_open(str(good), framework="pt") as f:
        header = dict(f.metadata())
        tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (safe_open is not iterable)
    _header_file(tmp_path / "other.safetensors", tensors, {"format": "something else"})
    cases["other.safetensors"] = "not a napari-inceptseg model"
    wrong = dict(header, params=json.dumps({**json.loads(header["params"]), "arch": "inception"}))
    _header_file(tmp_path / "arch.safetensors", tensors, wrong)
    cases["arch.safetensors"] = "do not match a inception"
    shaped = dict(tensors, **{"conv1.weight": torch.zeros(32, 3, 5, 5)})
    _header_file(tmp_path / "shape.safetensors", shaped, header)
    cases["shape.safetensors"] = "wrong shape"
    _header_file(tmp_path / "header.safetensors", tensors, dict(header, params="{not json"))
    cases["header.safetensors"] = "damaged model header"
    nan = dict(tensors, **{"conv1.weight": torch.full_like(tensors["conv1.weight"], float("nan"))})
    _header_file(tmp_path / "nan.safetensors", nan, header)
    cases["nan.safetensors"] = "NaN or infinite values .*conv1.weight"
    (tmp_path / "folder.safetensors").mkdir()
    cases["folder.safetensors"] = "is a directory"
    # hostile headers: refused before any network is built
    for name, change in {
        "wide": {"n_channels": 12000},
        "wider": {"n_channels": 2e6},
        "deep": {"n_conv": 100000},
    }.items():
        claim = dict(header, params=json.dumps({**json.loads(header["params"]), **change}))
        _header_file(tmp_path / f"{name}.safetensors", tensors, claim)
        cases[f"{name}.safetensors"] = "impossible network"
    _header_file(tmp_path / "inputs.safetensors", tensors, dict(header, in_channels="5000000"))
    cases["inputs.safetensors"] = "impossible network"
    # header values that would load and then give nonsense labels
    n_channels = json.loads(header["params"])["n_channels"]
    in_channels = int(header["in_channels"])
    for name, change, expected in (
        ("nan", {"ranges": [[float("nan"), 1.0]] * in_channels}, "NaN or infinite"),
        ("inf", {"ranges": [[0.0, float("inf")]] * in_channels}, "NaN or infinite"),
        ("flat", {"ranges": [[5.0, 5.0]] * in_channels}, "no intensity range"),
        ("upside", {"ranges": [[9.0, 1.0]] * in_channels}, "no intensity range"),
        ("ranges-text", {"ranges": "abc"}, "damaged model header"),
        ("negative", {"label_map": [-5] + list(range(2, n_channels + 1))}, "label map"),
        ("huge", {"label_map": [2**31 - 1] + list(range(2, n_channels + 1))}, "label map"),
        ("twice", {"label_map": [1] * n_channels}, "label map"),
        ("fraction", {"label_map": [1.5] + list(range(2, n_channels + 1))}, "whole numbers"),
        ("scribbles", {"scribble_ids": [0, n_channels + 5]}, "scribble ids"),
        ("spacing-text", {"spacing": "5"}, "spacing"),
        ("spacing-word", {"spacing": "abc"}, "spacing"),
        ("spacing-bad", {"spacing": [-1, 0]}, "spacing"),
        ("spacing-long", {"spacing": [1, 1, 1]}, "spacing"),
    ):
        ((key, value),) = change.items()
        claim = dict(header, **{key: value if name == "ranges-text" else json.dumps(value)})
        _header_file(tmp_path / f"{name}.safetensors", tensors, claim)
        cases[f"{name}.safetensors"] = expected
    huge_spacing = dict(header, spacing="[-1, 0, 1e400]")  # 1e400: infinite once read
    _header_file(tmp_path / "spacing-inf.safetensors", tensors, huge_spacing)
    cases["spacing-inf.safetensors"] = "spacing"
    for name, expected in cases.items():
        with pytest.raises(ModelFileError, match=expected):
            load_model(tmp_path / name)
    assert not (tmp_path / "EXECUTED").exists()  # nothing was unpickled
    # the command line says the same in one line, before any image is read
    image = tmp_path / "image.png"
    iio.imwrite(image, np.zeros((32, 32, 3), np.uint8))
    cmd = [sys.executable, "-m", "napari_inceptseg", "segment", str(image), "-o"]
    done = run_command([*cmd, str(tmp_path / "o"), "--model", str(tmp_path / "flat.safetensors")])
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines()[-1].startswith("napari-inceptseg: error:")
    with pytest.raises(ModelFileError, match="no such model file"):
        load_model(tmp_path / "absent.safetensors")


def test_save_never_overwrites(trained):
    _, _, res, path = trained
    with pytest.raises(FileExistsError):
        res.save_model(path)
    assert load_model(path).params.arch == "vanilla"


def test_model_for_other_channels_is_a_clear_error(trained):
    _, _, res, _ = trained
    with pytest.raises(ValueError, match="channel"):
        res.trained_model().apply(
            np.zeros((32, 32), np.uint8) + np.arange(32, dtype=np.uint8), device="cpu"
        )


def test_format_constant_in_header(trained):
    from safetensors import safe_open

    with safe_open(str(trained[3]), framework="pt") as f:
        assert f.metadata()["format"] == FORMAT
