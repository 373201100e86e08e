"""Reading images: what a file is, said plainly; grey + alpha read as grey."""

from __future__ import annotations

import os

import numpy as np
import pytest
from PIL import Image

from napari_inceptseg.cli.main import main
from napari_inceptseg.io import read_image


def test_a_folder_a_fifo_and_a_missing_file_each_say_what_they_are(tmp_path):
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    (tmp_path / "folder.png").mkdir()
    for path, words in (
        (tmp_path / "folder.png", "is a folder, not an image file"),
        (fifo, r"is a FIFO \(named pipe\), not an image file"),
        (tmp_path / "nope.png", "no such file"),
    ):
        with pytest.raises(ValueError, match=words) as info:
            read_image(path)  # (a FIFO is never opened: reading it would wait for a writer)
        assert str(path) in str(info.value)


def test_grey_plus_alpha_images_read_as_grey(tmp_path, small_rgb):
    grey = small_rgb[..., 0]
    alpha = np.full_like(grey, 200)
    Image.fromarray(np.stack([grey, alpha], -1), mode="LA").save(tmp_path / "la.png")
    np.testing.assert_array_equal(read_image(tmp_path / "la.png"), grey)
    out = tmp_path / "out"
    assert (
        main(
            [
                "segment",
                str(tmp_path / "la.png"),
                "-o",
                str(out),
                "--n-channels",
                "8",
                "--max-iter",
                "3",
                "--seed",
                "0",
                "--device",
                "cpu",
                "-q",
            ]
        )
        == 0
    )
    assert (out / "la_labels.png").exists()
