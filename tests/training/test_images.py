"""`training.data.images`: an image folder is checked from the files' headers before any image is decoded or the
images are allocated, and the header's (H, W, C, dtype) is the decoded array's."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from learned_manifold_training.data import images, load_image_folder

Image = pytest.importorskip("PIL.Image")


def test_a_folder_is_checked_from_headers_before_any_image_is_decoded(tmp_path: Path, monkeypatch) -> None:
    """One large picture sorted first among small ones: the reader's own size error, naming both files, before a
    single image is decoded (the old reader allocated (N, C, H, W) at the first image's size, then read on)."""
    Image.new("L", (400, 300)).save(tmp_path / "00_holiday_photo.png")
    for i in range(3):
        Image.fromarray(np.full((8, 8), i, np.uint8)).save(tmp_path / f"img{i}.png")
    decoded = []
    monkeypatch.setattr(images, "_pixels", lambda image: decoded.append(image) or np.zeros((8, 8, 1), np.uint8))
    small, large = (re.escape(str(tmp_path / name)) for name in ("img0.png", "00_holiday_photo.png"))
    with pytest.raises(ValueError, match=rf"^image file '{small}': is 8×8 \(H×W\) with 1 channel\(s\) of uint8, but "
                                         rf"'{large}' is 300×400 with 1 of uint8; all images must share one size and "
                                         "mode$"):
        load_image_folder(tmp_path)
    assert decoded == []


def test_a_folder_of_one_size_reads_as_before(tmp_path: Path) -> None:
    pictures = np.arange(3 * 5 * 4 * 3, dtype=np.uint8).reshape(3, 5, 4, 3)
    for i, picture in enumerate(pictures):
        Image.fromarray(picture).save(tmp_path / f"p{i}.png")
    data = load_image_folder(tmp_path)
    np.testing.assert_array_equal(data.x.numpy(), pictures.transpose(0, 3, 1, 2).astype(np.float32))


def _palette_with_transparency():
    image = Image.new("P", (5, 3))
    image.info["transparency"] = 0
    return image


@pytest.mark.parametrize("make", [
    lambda: Image.new("1", (5, 3)), lambda: Image.new("L", (5, 3)), lambda: Image.new("LA", (5, 3)),
    lambda: Image.new("P", (5, 3)), _palette_with_transparency, lambda: Image.new("PA", (5, 3)),
    lambda: Image.new("RGB", (5, 3)), lambda: Image.new("RGBA", (5, 3)), lambda: Image.new("CMYK", (5, 3)),
    lambda: Image.new("YCbCr", (5, 3)), lambda: Image.new("I", (5, 3)), lambda: Image.new("I;16", (5, 3)),
    lambda: Image.new("I;16B", (5, 3)), lambda: Image.new("F", (5, 3)),
], ids=["1", "L", "LA", "P", "P+tRNS", "PA", "RGB", "RGBA", "CMYK", "YCbCr", "I", "I;16", "I;16B", "F"])
def test_the_header_shape_is_the_decoded_shape(make) -> None:
    image = make()
    arr = images._pixels(image)
    assert images._header_shape(image) == (arr.shape, arr.dtype.name)
    assert arr.shape[:2] == (3, 5)
