"""Specification tests for PNG/JPEG folders read as `ImageData`: class sub-folders and their labels, subsets drawn
from every class, flat folders, and the pictures and folders refused by name."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from learned_manifold_training.data import (
    DataFileNotFoundError,
    is_image_source,
    load_image_folder,
    resolve_data,
    resolve_images,
)
from tests.training.test_image_data import _nchw

RNG = np.random.default_rng(0)


# ------------------------------------------------------------------------------------------------------
# PNG/JPEG folders
# ------------------------------------------------------------------------------------------------------


def _png(path: Path, arr: np.ndarray) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)


def test_png_folder_with_class_subfolders(tmp_path: Path) -> None:
    pytest.importorskip("PIL")
    pictures = RNG.integers(0, 256, (5, 6, 7, 3)).astype(np.uint8)
    names = ["dog/b.png", "cat/z.png", "dog/a.png", "cat/y.png", "dog/c.png"]
    for name, pic in zip(names, pictures, strict=True):
        _png(tmp_path / name, pic)
    (tmp_path / ".hidden").mkdir()  # hidden folders are not classes
    data = load_image_folder(tmp_path)
    order = [names.index(n) for n in ["cat/y.png", "cat/z.png", "dog/a.png", "dog/b.png", "dog/c.png"]]
    np.testing.assert_array_equal(data.x.numpy(), _nchw(pictures[order], "NHWC"))  # PNG is lossless
    assert data.labels.tolist() == [0, 0, 1, 1, 1] and data.class_names == ("cat", "dog")
    assert data.stored_dtype == "uint8" and data.value_range == (0.0, 255.0)
    meta = data.metadata()
    assert meta["data_shape"] == [3, 6, 7] and meta["class_names"] == ["cat", "dog"] and meta["num_images"] == 5
    assert is_image_source(tmp_path)
    x, manifold = resolve_data(tmp_path, n=2)
    assert manifold is None and x.shape == (2, 3, 6, 7)
    assert torch.equal(resolve_images(str(tmp_path))[0].labels, data.labels)


def test_a_folder_subset_is_drawn_from_every_class_not_the_first(tmp_path: Path) -> None:
    """``n`` of a class folder is a seeded random subset in file order (the first n would be the first class
    only, the folder being sorted by class): the same seed gives the same images, with their own labels."""
    pytest.importorskip("PIL")
    pictures = RNG.integers(0, 256, (40, 4, 4)).astype(np.uint8)
    for i, pic in enumerate(pictures):
        _png(tmp_path / ("a" if i < 20 else "b") / f"{i:02d}.png", pic)
    whole = load_image_folder(tmp_path)
    part = load_image_folder(tmp_path, n=10, seed=3)
    assert set(part.labels.tolist()) == {0, 1} and part.x.shape[0] == 10
    rows = [int((whole.x == img).flatten(1).all(1).nonzero()) for img in part.x]
    assert rows == sorted(rows) and whole.labels[rows].tolist() == part.labels.tolist()
    assert torch.equal(load_image_folder(tmp_path, n=10, seed=3).x, part.x)
    assert not torch.equal(load_image_folder(tmp_path, n=10, seed=4).x, part.x)
    with pytest.raises(ValueError, match="asked for n=41 images; it holds 40"):
        load_image_folder(tmp_path, n=41)


def test_a_class_folder_without_images_is_refused_by_name(tmp_path: Path) -> None:
    """An empty class, or one whose pictures sit a level further down, would shift every later label (and lose
    its pictures): refused, naming it, as torchvision's ImageFolder refuses an empty class."""
    pytest.importorskip("PIL")
    pictures = RNG.integers(0, 256, (3, 4, 4)).astype(np.uint8)
    _png(tmp_path / "cat" / "a.png", pictures[0])
    _png(tmp_path / "cat" / "b.png", pictures[1])
    _png(tmp_path / "zebra" / "2020" / "c.png", pictures[2])
    (tmp_path / "dog").mkdir()
    with pytest.raises(ValueError, match=r"class folder\(s\) \['dog', 'zebra'\] hold no .*sub-folders are not read"):
        load_image_folder(tmp_path)


def test_pictures_in_sub_folders_of_a_class_are_named_and_counted_not_dropped_silently(tmp_path: Path) -> None:
    """``root/<class>/*.png`` beside ``root/<class>/day2/*.png`` read the top images of each class only (20 of 40),
    without a word: the reader now warns, naming the sub-folders and how many pictures they hold (any depth)."""
    pytest.importorskip("PIL")
    pictures = RNG.integers(0, 256, (4, 4)).astype(np.uint8)
    for path in ["a/1.png", "a/2.png", "a/day2/3.png", "a/day2/4.png", "b/5.png", "b/day2/deep/6.png"]:
        _png(tmp_path / path, pictures)
    (tmp_path / "b" / "notes").mkdir()  # a sub-folder without pictures is not named
    (tmp_path / "b" / "notes" / "x.txt").write_text("")
    with pytest.warns(UserWarning, match=r"3 \.png/.* file\(s\) in 2 sub-folder\(s\) are not read: '.*a/day2' \(2\), "
                                         r"'.*b/day2' \(1\); only root/\*\.png or root/<class>/\*\.png"):
        data = load_image_folder(tmp_path)
    assert data.x.shape[0] == 3 and data.class_names == ("a", "b")
    _png(tmp_path / "flat" / "1.png", pictures)
    _png(tmp_path / "flat" / "2.png", pictures)
    _png(tmp_path / "flat" / "old" / "2019" / "3.png", pictures)  # (flat/old/3.png: a mixed layout, refused)
    with pytest.warns(UserWarning, match=r"1 \.png/.* in 1 sub-folder\(s\) are not read: '.*flat/old' \(1\)"):
        assert load_image_folder(tmp_path / "flat").x.shape[0] == 2


def test_pictures_in_other_formats_are_named_not_dropped_silently(tmp_path: Path) -> None:
    pytest.importorskip("PIL")
    from PIL import Image

    pictures = RNG.integers(0, 256, (3, 4, 4)).astype(np.uint8)
    _png(tmp_path / "a.png", pictures[0])
    _png(tmp_path / "b.png", pictures[1])
    Image.fromarray(pictures[2]).save(tmp_path / "c.bmp")
    with pytest.warns(UserWarning, match=r"1 picture\(s\) in other formats are not read \(e.g. '.*c.bmp'\)"):
        data = load_image_folder(tmp_path)
    assert data.x.shape[0] == 2


def test_sixteen_bit_colour_pngs_are_refused_not_cut_to_eight_bits(tmp_path: Path) -> None:
    """Pillow decodes 16-bit RGB/RGBA/LA PNGs to their high bytes: refused (16-bit grey, ``I;16``, is exact)."""
    pytest.importorskip("PIL")
    import struct
    import zlib

    def png16(path: Path, arr: np.ndarray) -> None:  # a minimal PNG writer: 16 bits per channel
        h, w, c = arr.shape
        rows = b"".join(b"\x00" + arr[i].astype(">u2").tobytes() for i in range(h))

        def chunk(kind: bytes, data: bytes) -> bytes:
            return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

        head = struct.pack(">IIBBBBB", w, h, 16, {1: 0, 2: 4, 3: 2, 4: 6}[c], 0, 0, 0)
        path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", head) + chunk(b"IDAT", zlib.compress(rows))
                         + chunk(b"IEND", b""))

    for c in (2, 3, 4):
        folder = tmp_path / f"c{c}"
        folder.mkdir()
        for i in range(2):
            png16(folder / f"{i}.png", RNG.integers(0, 65536, (5, 6, c)).astype(np.uint16))
        with pytest.raises(ValueError, match=r"0.png': has 16 bits per channel in mode (LA|RGB|RGBA), which Pillow"):
            load_image_folder(folder)
    grey = tmp_path / "grey"
    grey.mkdir()
    stored = RNG.integers(0, 65536, (2, 5, 6, 1)).astype(np.uint16)
    for i in range(2):
        png16(grey / f"{i}.png", stored[i])
    np.testing.assert_array_equal(load_image_folder(grey).x.numpy(), stored.transpose(0, 3, 1, 2))


def test_flat_folder_modes(tmp_path: Path) -> None:
    pytest.importorskip("PIL")
    from PIL import Image

    gray = RNG.integers(0, 256, (3, 4, 5)).astype(np.uint8)
    for i, pic in enumerate(gray):
        _png(tmp_path / "gray" / f"{i}.PNG", pic)
    data = load_image_folder(tmp_path / "gray")
    np.testing.assert_array_equal(data.x.numpy(), _nchw(gray, "NHW"))
    assert data.labels is None and data.class_names is None
    rgba = RNG.integers(0, 256, (2, 4, 5, 4)).astype(np.uint8)
    for i, pic in enumerate(rgba):
        _png(tmp_path / "rgba" / f"{i}.png", pic)
    assert load_image_folder(tmp_path / "rgba").data_shape == (4, 4, 5)
    (tmp_path / "pal").mkdir()
    for i in range(2):
        Image.fromarray(rgba[i, :, :, :3]).convert("P").save(tmp_path / "pal" / f"{i}.png")
    assert load_image_folder(tmp_path / "pal").data_shape == (3, 4, 5)  # palette -> RGB
    (tmp_path / "jpg").mkdir()
    h, w, c = np.meshgrid(np.arange(4), np.arange(5), np.arange(3), indexing="ij")
    smooth = np.stack([20 * h + 15 * w + 50 * c + 9 * i for i in range(2)])  # JPEG keeps smooth pictures well
    for i in range(2):
        Image.fromarray(smooth[i].astype(np.uint8)).save(tmp_path / "jpg" / f"{i}.jpeg", quality=95, subsampling=0)
    jpg = load_image_folder(tmp_path / "jpg")
    error = (jpg.x - torch.from_numpy(_nchw(smooth, "NHWC"))).abs().max()
    assert jpg.data_shape == (3, 4, 5) and jpg.stored_dtype == "uint8" and float(error) < 8  # lossy


def test_folder_errors(tmp_path: Path) -> None:
    pytest.importorskip("PIL")
    _png(tmp_path / "sizes" / "a.png", np.zeros((4, 5), dtype=np.uint8))
    _png(tmp_path / "sizes" / "b.png", np.zeros((4, 6), dtype=np.uint8))
    _png(tmp_path / "sizes" / "c.png", np.zeros((5, 5), dtype=np.uint8))
    with pytest.raises(ValueError, match=r"b\.png'.*4×6.*a\.png'.*4×5"):  # the first mismatch, both sizes
        load_image_folder(tmp_path / "sizes")
    _png(tmp_path / "modes" / "a.png", np.zeros((4, 5), dtype=np.uint8))
    _png(tmp_path / "modes" / "b.png", np.zeros((4, 5, 3), dtype=np.uint8))
    with pytest.raises(ValueError, match=r"b\.png'.*3 channel"):
        load_image_folder(tmp_path / "modes")
    _png(tmp_path / "mixed" / "a.png", np.zeros((4, 5), dtype=np.uint8))
    _png(tmp_path / "mixed" / "cls" / "b.png", np.zeros((4, 5), dtype=np.uint8))
    with pytest.raises(ValueError, match="both images.*class sub-folders"):
        load_image_folder(tmp_path / "mixed")
    (tmp_path / "none").mkdir()
    (tmp_path / "none" / "notes.txt").write_text("no pictures")
    with pytest.raises(ValueError, match="holds no .png"):
        load_image_folder(tmp_path / "none")
    _png(tmp_path / "bad" / "a.png", np.zeros((4, 5), dtype=np.uint8))
    (tmp_path / "bad" / "b.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    with pytest.raises(ValueError, match=r"b\.png'.*unreadable"):
        load_image_folder(tmp_path / "bad")
    with pytest.raises(DataFileNotFoundError, match="does not exist"):
        load_image_folder(tmp_path / "nowhere")


def test_missing_pillow_names_the_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "a.png").write_bytes(b"")
    monkeypatch.setitem(sys.modules, "PIL", None)
    with pytest.raises(ImportError, match=r'pip install "learned-manifold\[images\]"'):
        load_image_folder(tmp_path)
    with pytest.raises(ImportError, match="Pillow"):
        resolve_data(tmp_path)
