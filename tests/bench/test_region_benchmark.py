"""The BSDS500 region benchmark: covering, PRI and VoI at ODS and OIS, by hand."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from PIL import Image

from napari_inceptseg.bench.region_benchmark import (
    LevelScores,
    levels_scores,
    ods_ois,
    partition_scores,
)
from napari_inceptseg.cli.main import main
from napari_inceptseg.sample_data import synthetic_regions

#: a 2 x 4 image: two annotators; the machine splits the left half in two
MACHINE = np.array([[1, 1, 2, 2], [3, 3, 2, 2]])
HUMAN_A = np.array([[1, 1, 2, 2], [1, 1, 2, 2]])  # left | right
HUMAN_B = np.array([[1, 1, 1, 1], [1, 1, 1, 1]])  # one region


def test_one_partition_by_hand():
    s = partition_scores(MACHINE, [HUMAN_A, HUMAN_B])
    # A's left (4 px) best IoU 2/4, A's right 4/4; B's whole (8 px) best 4/8
    assert s.cnt_r == pytest.approx(4 * 0.5 + 4 * 1.0 + 8 * 0.5) and s.sum_r == 16
    assert s.covering == pytest.approx(10 / 16)
    # Rand index, the benchmark's formula: 1 - (sum a^2/2 + sum b^2/2 - sum n^2) / (N(N-1)/2)
    ri_a = 1 - ((4 + 16 + 4) / 2 + (16 + 16) / 2 - (4 + 16 + 4)) / 28
    ri_b = 1 - ((4 + 16 + 4) / 2 + 64 / 2 - (4 + 16 + 4)) / 28
    assert s.pri == pytest.approx((ri_a + ri_b) / 2)
    # VoI in bits: against A, H(machine | A) = 0.5 bit and H(A | machine) = 0; against B,
    # H(machine) = 1.5
    assert s.voi == pytest.approx((0.5 + 1.5) / 2)


def test_levels_of_a_grouping_equal_the_partitions_they_make():
    luts = [np.array([0, 1, 2, 3]), np.array([0, 1, 2, 1]), np.array([0, 1, 1, 1])]
    grouped = levels_scores(MACHINE, luts, [HUMAN_A, HUMAN_B])
    for lut, s in zip(luts, grouped, strict=False):
        assert s == pytest.approx(partition_scores(lut[MACHINE], [HUMAN_A, HUMAN_B]))
    # left | right: A covered exactly (8 px), B (8 px) best IoU 4/8
    assert grouped[1].cnt_r == pytest.approx(4 + 4 + 4)


def test_ods_pools_one_level_and_ois_takes_each_images_best():
    per = {
        "x": [LevelScores(8, 10, 0.9, 1.0), LevelScores(5, 10, 0.7, 2.0)],
        "y": [LevelScores(10, 40, 0.5, 3.0), LevelScores(30, 40, 0.8, 1.5)],
    }
    r = ods_ois(per)
    assert r["covering_ods"] == pytest.approx(max(18 / 50, 35 / 50)) and r["ods_level"] == 1
    assert r["covering_ois"] == pytest.approx((8 + 30) / 50)
    assert r["pri_ods"] == pytest.approx(max((0.9 + 0.5) / 2, (0.7 + 0.8) / 2))
    assert r["pri_ois"] == pytest.approx((0.9 + 0.8) / 2)
    assert r["voi_ods"] == pytest.approx(min((1.0 + 3.0) / 2, (2.0 + 1.5) / 2))
    assert r["voi_ois"] == pytest.approx((1.0 + 1.5) / 2)
    with pytest.raises(ValueError, match="same levels"):
        ods_ois({"x": per["x"], "y": per["y"][:1]})


def test_evaluate_reports_the_benchmark_for_methods_with_levels(tmp_path):
    (tmp_path / "img").mkdir()
    (tmp_path / "lab").mkdir()
    for k in range(3):
        image, gt = synthetic_regions((48, 64), n_regions=3, seed=k)
        Image.fromarray(image).save(tmp_path / "img" / f"im{k}.png")
        Image.fromarray(gt.astype(np.uint8), mode="L").save(tmp_path / "lab" / f"im{k}.png")
    out = tmp_path / "out"
    assert (
        main(
            [
                "evaluate",
                "--dataset",
                "folder",
                "--images",
                str(tmp_path / "img"),
                "--labels",
                str(tmp_path / "lab"),
                "--method",
                "default",
                "felzenszwalb-sweep",
                "kmeans3",
                "--seed",
                "0",
                "-o",
                str(out),
                "-q",
            ]
        )
        == 0
    )
    with open(out / "region_levels.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    per_method = {
        m: [r for r in rows if r["method"] == m]
        for m in ("default", "felzenszwalb-sweep", "kmeans3")
    }
    assert len(per_method["default"]) == 3 * 42 and len(per_method["felzenszwalb-sweep"]) == 3 * 9
    assert len(per_method["kmeans3"]) == 3
    bench = json.loads((out / "summary.json").read_text())["region_benchmark"]
    d = bench["default"]
    assert d["covering_ois"] >= d["covering_ods"] >= d["cut_covering_ods"] - 1e-9
    # the true regions are in the hierarchy
    assert d["voi_ois"] <= d["voi_ods"] and d["covering_ods"] > 0.85
    assert "covering_ods" not in bench["kmeans3"] and bench["kmeans3"]["cut_covering_ods"] > 0
    assert "region benchmark" in (out / "summary.md").read_text()
