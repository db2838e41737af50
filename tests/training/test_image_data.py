"""Specification tests for image data: users' arrays, PNG/JPEG folders and IDX files read as `ImageData` in their
stored units; the built-in digits and blobs; the blob manifold's exact geometry (SPEC §9)."""

from __future__ import annotations

import gzip
import struct
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from learned_manifold_training.data import (
    Blobs,
    DataFileNotFoundError,
    ImageData,
    get_dataset,
    get_image_dataset,
    images_from_array,
    is_image_source,
    load_idx,
    load_image_array,
    load_image_folder,
    load_images,
    read_idx,
    resolve_data,
    resolve_images,
)

F64 = torch.float64
RNG = np.random.default_rng(0)


def SUBSET(total: int, n: int, seed: int = 0) -> torch.Tensor:  # noqa: N802
    """The rows ``--num-points n`` keeps of ``total`` (sorted, drawn with ``seed``), as a folder draws its files."""
    return torch.randperm(total, generator=torch.Generator().manual_seed(seed))[:n].sort().values


def _nchw(arr: np.ndarray, layout: str) -> np.ndarray:
    """The expected (N, C, H, W) float32 view of a stored array."""
    if layout == "NHW":
        arr = arr[:, None]
    elif layout == "NHWC":
        arr = arr.transpose(0, 3, 1, 2)
    return arr.astype(np.float32)


def _save(path: Path, arr: np.ndarray, labels: np.ndarray | None = None) -> None:
    if path.suffix == ".npy":
        np.save(path, arr)
    elif path.suffix == ".npz":
        np.savez(path, **({"data": arr, "labels": labels} if labels is not None else {"images": arr}))
    else:
        obj = torch.from_numpy(arr)
        torch.save({"data": obj, "labels": torch.from_numpy(labels)} if labels is not None else obj, path)


# ------------------------------------------------------------------------------------------------------
# Arrays
# ------------------------------------------------------------------------------------------------------

LAYOUTS = {"NHW": (5, 6, 7), "NCHW-1": (5, 1, 6, 7), "NCHW-3": (5, 3, 6, 7), "NHWC-3": (5, 6, 7, 3),
           "NHWC-4": (5, 9, 7, 4)}


@pytest.mark.parametrize("suffix", [".npy", ".npz", ".pt"])
@pytest.mark.parametrize("dtype", ["uint8", "float32", "float64"])
@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_array_files_keep_stored_values_in_nchw(tmp_path: Path, suffix: str, dtype: str, layout: str) -> None:
    shape = LAYOUTS[layout]
    arr = (RNG.integers(0, 256, shape) if dtype == "uint8" else RNG.normal(3.0, 2.0, shape)).astype(dtype)
    path = tmp_path / f"img{suffix}"
    _save(path, arr)
    data = load_image_array(path)
    want = _nchw(arr, layout.split("-")[0])
    assert isinstance(data, ImageData) and data.x.dtype == torch.float32 and data.x.is_contiguous()
    np.testing.assert_array_equal(data.x.numpy(), want)  # values as stored: uint8 stays 0..255
    assert data.data_shape == want.shape[1:] and data.labels is None and data.source == str(path)
    assert data.stored_dtype == dtype
    assert data.value_range == ((0.0, 255.0) if dtype == "uint8" else (float(want.min()), float(want.max())))
    torch.testing.assert_close(load_images(path).x, data.x, rtol=0, atol=0)


@pytest.mark.parametrize("suffix", [".npz", ".pt"])
def test_array_files_carry_labels(tmp_path: Path, suffix: str) -> None:
    arr = RNG.integers(0, 256, (4, 1, 5, 5)).astype(np.uint8)
    _save(tmp_path / f"a{suffix}", arr, labels=np.array([3, 0, 1, 3], dtype=np.uint8))
    data = load_image_array(tmp_path / f"a{suffix}")
    assert data.labels.dtype == torch.int64 and data.labels.tolist() == [3, 0, 1, 3]
    assert data.metadata()["num_classes"] == 4
    _save(tmp_path / f"b{suffix}", arr, labels=np.array([1, 2, 3], dtype=np.int64))
    with pytest.raises(ValueError, match="3 labels for 4 images"):
        load_image_array(tmp_path / f"b{suffix}")
    _save(tmp_path / f"c{suffix}", arr, labels=np.ones(4, dtype=np.float32))
    with pytest.raises(ValueError, match="1-D integer"):
        load_image_array(tmp_path / f"c{suffix}")


def test_array_layout_rules() -> None:
    ambiguous = np.zeros((2, 3, 8, 4), dtype=np.uint8)
    with pytest.raises(ValueError, match="ambiguous.*layout='NCHW'"):
        images_from_array(ambiguous)
    assert images_from_array(ambiguous, layout="NCHW").data_shape == (3, 8, 4)
    assert images_from_array(ambiguous, layout="NHWC").data_shape == (4, 3, 8)
    for bad, match in [((2, 5, 6, 7), "not an image array"), ((2, 16), "3 or 4 axes"), ((2, 1, 1, 4, 4), "3 or 4")]:
        with pytest.raises(ValueError, match=match):
            images_from_array(np.zeros(bad, dtype=np.float32))
    with pytest.raises(ValueError, match="1 to 4 channels"):
        images_from_array(np.zeros((2, 5, 6, 7)), layout="NCHW")
    with pytest.raises(ValueError, match="layout must be"):
        images_from_array(np.zeros((2, 1, 6, 7)), layout="CHW")
    nan = np.zeros((3, 4, 4), dtype=np.float32)
    nan[1, 2, 2] = np.nan
    with pytest.raises(ValueError, match="non-finite.*row is index 1"):
        images_from_array(nan)
    with pytest.raises(ValueError, match="float32 range"):
        images_from_array(np.full((2, 4, 4), 1e300))
    with pytest.raises(ValueError, match="at least 2 samples"):
        images_from_array(np.zeros((1, 4, 4)))
    hwc = torch.arange(2 * 5 * 6 * 3, dtype=torch.uint8).reshape(2, 5, 6, 3)  # an in-memory tensor, labels a list
    data = load_images(hwc)
    assert torch.equal(data.x, hwc.permute(0, 3, 1, 2).float()) and data.stored_dtype == "uint8"
    assert images_from_array(hwc, labels=[1, 0]).labels.tolist() == [1, 0]
    with pytest.raises(ValueError, match="labels must be a 1-D integer"):
        images_from_array(hwc, labels=["a", "b"])
    with pytest.raises(ValueError, match="labels must be >= 0"):
        images_from_array(hwc, labels=[-1, 0])


def test_resolve_data_reads_arrays_as_stored_unless_asked_for_images(tmp_path: Path) -> None:
    arr = RNG.integers(0, 256, (6, 5, 4, 3)).astype(np.uint8)
    np.save(tmp_path / "hwc.npy", arr)
    x, manifold = resolve_data(tmp_path / "hwc.npy")
    assert manifold is None and x.shape == (6, 5, 4, 3)  # a generic array keeps the user's shape
    x, _ = resolve_data(tmp_path / "hwc.npy", images=True, n=4)  # a random subset, as a folder's (seed 0)
    np.testing.assert_array_equal(x.numpy(), _nchw(arr[SUBSET(6, 4).numpy()], "NHWC"))
    data, _ = resolve_images(tmp_path / "hwc.npy", n=0)
    assert data.x.shape == (6, 3, 5, 4)
    with pytest.raises(ValueError, match="only 6"):
        resolve_images(tmp_path / "hwc.npy", n=7)
    with pytest.raises(ValueError, match="points, not images"):
        resolve_images("sphere")
    with pytest.raises(ValueError, match="neither a built-in data set.*blobs:SIDE"):
        resolve_images("spheer")
    with pytest.raises(DataFileNotFoundError, match="missing.npy"):
        resolve_images(tmp_path / "missing.npy")


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


# ------------------------------------------------------------------------------------------------------
# IDX files
# ------------------------------------------------------------------------------------------------------


def _idx(arr: np.ndarray, code: int = 0x08, dims: tuple[int, ...] | None = None) -> bytes:
    big = {0x08: "u1", 0x09: "i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}[code]
    dims = arr.shape if dims is None else dims
    return bytes([0, 0, code, len(dims)]) + struct.pack(f">{len(dims)}I", *dims) + arr.astype(big).tobytes()


@pytest.mark.parametrize("images_gz,labels_gz", [(False, False), (True, True), (True, False)])
def test_idx_images_with_labels_beside(tmp_path: Path, images_gz: bool, labels_gz: bool) -> None:
    pics = RNG.integers(0, 256, (7, 4, 3)).astype(np.uint8)
    labels = RNG.integers(0, 10, 7).astype(np.uint8)
    img_name = "train-images-idx3-ubyte" + (".gz" if images_gz else "")
    lab_name = "train-labels-idx1-ubyte" + (".gz" if labels_gz else "")
    (tmp_path / img_name).write_bytes(gzip.compress(_idx(pics)) if images_gz else _idx(pics))
    (tmp_path / lab_name).write_bytes(gzip.compress(_idx(labels)) if labels_gz else _idx(labels))
    data = load_idx(tmp_path / img_name)
    np.testing.assert_array_equal(data.x.numpy(), _nchw(pics, "NHW"))
    assert data.labels.tolist() == labels.tolist() and data.stored_dtype == "uint8"
    assert data.value_range == (0.0, 255.0)
    assert load_idx(tmp_path / img_name, labels=False).labels is None
    assert is_image_source(tmp_path / img_name)
    x, manifold = resolve_data(str(tmp_path / img_name))
    assert manifold is None and torch.equal(x, data.x)
    assert torch.equal(resolve_images(tmp_path / img_name, n=3)[0].labels, data.labels[SUBSET(7, 3)])


def test_idx_types_round_trip_and_labels_checks(tmp_path: Path) -> None:
    for code, dtype in [(0x09, "int8"), (0x0B, "int16"), (0x0C, "int32"), (0x0D, "float32"), (0x0E, "float64")]:
        arr = (RNG.normal(0, 50, (3, 2, 5))).astype(dtype)
        (tmp_path / "t.idx").write_bytes(_idx(arr, code))
        out = read_idx(tmp_path / "t.idx")
        assert out.dtype == np.dtype(dtype) and out.dtype.isnative
        np.testing.assert_array_equal(out, arr)
    pics = np.zeros((4, 2, 2), dtype=np.uint8)
    (tmp_path / "x-images-idx3-ubyte").write_bytes(_idx(pics))
    (tmp_path / "x-labels-idx1-ubyte").write_bytes(_idx(np.zeros(3, dtype=np.uint8)))
    with pytest.raises(ValueError, match="3 labels for 4 images"):
        load_idx(tmp_path / "x-images-idx3-ubyte")
    (tmp_path / "y.idx").write_bytes(_idx(np.zeros(4, dtype=np.float32), 0x0D))
    with pytest.raises(ValueError, match="labels must be integers"):
        load_idx(tmp_path / "x-images-idx3-ubyte", labels=tmp_path / "y.idx")
    with pytest.raises(ValueError, match="has 1 axes, expected 3"):
        load_idx(tmp_path / "y.idx")
    with pytest.raises(DataFileNotFoundError):
        load_idx(tmp_path / "x-images-idx3-ubyte", labels=tmp_path / "nowhere-idx1-ubyte")


HOSTILE = {
    "bad magic": (b"\x00\x01\x08\x03" + bytes(12), "not an IDX file"),
    "unknown type": (b"\x00\x00\x07\x03" + bytes(12), "not an IDX file"),
    "no header": (b"\x00\x00", "truncated"),
    "no axes": (b"\x00\x00\x08\x00", "0 axes"),
    "nine axes": (b"\x00\x00\x08\x09" + bytes(36), "9 axes"),
    "short shape": (b"\x00\x00\x08\x03\x00\x00\x00\x02", "truncated: the shape"),
    "zero axis": (_idx(np.zeros((0, 2, 2), dtype=np.uint8)), "empty axis"),
    "huge claim": (_idx(np.zeros((1, 1, 1), dtype=np.uint8), dims=(2**32 - 1,) * 3), "claims shape"),
    "truncated": (_idx(np.zeros((3, 4, 4), dtype=np.uint8))[:-5], "claims shape"),
    "trailing": (_idx(np.zeros((3, 4, 4), dtype=np.uint8)) + b"\x00", "data after"),
}


@pytest.mark.parametrize("compressed", [False, True])
@pytest.mark.parametrize("case", list(HOSTILE))
def test_hostile_idx_files_get_one_clear_error(tmp_path: Path, case: str, compressed: bool) -> None:
    payload, match = HOSTILE[case]
    if compressed and match == "claims shape" and case == "truncated":
        match = "truncated"  # a gzip file may hold that much once decompressed: found short while reading
    path = tmp_path / ("train-images-idx3-ubyte" + (".gz" if compressed else ""))
    path.write_bytes(gzip.compress(payload) if compressed else payload)
    with pytest.raises(ValueError, match=match) as info:
        load_idx(path)
    assert str(path) in str(info.value)


def test_corrupt_gzip_stream(tmp_path: Path) -> None:
    packed = gzip.compress(_idx(RNG.integers(0, 256, (50, 8, 8)).astype(np.uint8)))
    (tmp_path / "cut-idx3-ubyte.gz").write_bytes(packed[: len(packed) // 2])
    with pytest.raises(ValueError, match="cut-idx3-ubyte.gz'.*(corrupt|truncated)"):
        read_idx(tmp_path / "cut-idx3-ubyte.gz")
    (tmp_path / "junk-idx3-ubyte.gz").write_bytes(b"\x1f\x8b" + bytes(30))
    with pytest.raises(ValueError, match="junk-idx3-ubyte.gz'.*corrupt"):
        read_idx(tmp_path / "junk-idx3-ubyte.gz")


# ------------------------------------------------------------------------------------------------------
# Built-in image data sets
# ------------------------------------------------------------------------------------------------------


def test_digits_as_images_with_labels() -> None:
    pytest.importorskip("sklearn")
    data, manifold = get_image_dataset("digits")
    assert manifold is None and data.x.shape == (1797, 1, 8, 8) and data.labels.shape == (1797,)
    assert sorted(set(data.labels.tolist())) == list(range(10)) and data.class_names == tuple("0123456789")
    assert float(data.x.min()) == 0.0 and float(data.x.max()) == 16.0 and torch.equal(data.x, data.x.round())
    assert data.value_range == (0.0, 16.0) and data.stored_dtype == "float64"
    # The point view keeps its old convention, (n, 8, 8) in [0, 1].
    torch.testing.assert_close(get_dataset("digits", 0)[0], data.x[:, 0] / 16, rtol=0, atol=0)
    sub, _ = get_image_dataset("digits", 100, seed=1)
    pairs = {(bytes(x.numpy()), int(y)) for x, y in zip(data.x, data.labels, strict=True)}
    assert sub.x.shape == (100, 1, 8, 8)
    assert all((bytes(x.numpy()), int(y)) in pairs for x, y in zip(sub.x, sub.labels, strict=True))
    assert torch.equal(get_image_dataset("digits", 100, seed=1)[0].labels, sub.labels)
    assert torch.equal(resolve_data("digits")[0], data.x) and is_image_source("digits")


def test_blobs_data_set_and_names() -> None:
    data, manifold = resolve_images("blobs:32", n=6, seed=3)
    assert isinstance(manifold, Blobs) and manifold.ambient_dim == 1024
    assert data.x.shape == (6, 1, 32, 32) and data.source == "blobs:32" and data.value_range == (0.0, 1.0)
    assert float(manifold.distance(data.x.reshape(6, -1)).max()) < 1e-5
    assert torch.equal(resolve_data("blobs:32", n=6, seed=3)[0], data.x)
    x, m = resolve_data("blobs", n=4)
    assert x.shape == (4, 1, 16, 16) and m.ambient_dim == 256
    flat, m = get_dataset("blobs", 4)
    assert flat.shape == (4, 256) and m.name == "blobs"
    for bad in ["blobs:3", "blobs:x", "digits:8", "blobs:"]:
        with pytest.raises(ValueError, match="blobs:SIDE"):
            resolve_data(bad)
    with pytest.raises(ValueError, match="positive"):
        get_image_dataset("blobs", 0)


# ------------------------------------------------------------------------------------------------------
# The blob manifold's geometry
# ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("side,chart_dim", [(16, 2), (16, 3), (32, 2), (64, 2)])
def test_blob_tangent_is_exact(side: int, chart_dim: int) -> None:
    m = Blobs(side, chart_dim=chart_dim)
    chart = m.sample_chart(6, generator=torch.Generator().manual_seed(side + chart_dim))
    jac = m.chart_jacobian(chart)
    auto = torch.vmap(torch.func.jacfwd(lambda c: m.render(c[None])[0]))(chart)
    torch.testing.assert_close(jac, auto, rtol=0, atol=1e-12)
    h = 1e-5
    for k in range(chart_dim):
        step = torch.zeros(chart_dim, dtype=F64)
        step[k] = h
        fd = (m.render(chart + step) - m.render(chart - step)) / (2 * h)
        torch.testing.assert_close(jac[:, :, k], fd, rtol=0, atol=1e-8)
    basis = m.tangent_basis(m.render(chart))
    assert basis.shape == (6, side * side, chart_dim)
    eye = torch.eye(chart_dim, dtype=F64).expand(6, -1, -1)
    torch.testing.assert_close(basis.transpose(1, 2) @ basis, eye, rtol=0, atol=1e-12)
    residual = jac - basis @ (basis.transpose(1, 2) @ jac)  # the basis spans exactly the derivatives
    assert float(residual.norm() / jac.norm()) < 1e-12
    assert m.point_dimension(m.render(chart)).tolist() == [chart_dim] * 6


@pytest.mark.parametrize("chart_dim", [2, 3])
def test_blob_projection(chart_dim: int) -> None:
    m = Blobs(16, chart_dim=chart_dim)
    gen = torch.Generator().manual_seed(7)
    chart = m.sample_chart(40, generator=gen)
    assert bool(((chart >= m.low) & (chart <= m.high)).all())
    x = m.render(chart)
    torch.testing.assert_close(m.chart_of(x), chart, rtol=0, atol=1e-9)
    assert float(m.distance(x).max()) < 1e-9
    basis = m.tangent_basis(x)
    normal = torch.randn(x.shape, generator=gen, dtype=F64)
    normal -= torch.einsum("ndk,nk->nd", basis, torch.einsum("ndk,nd->nk", basis, normal))
    normal /= normal.norm(dim=1, keepdim=True)
    for t in (0.05, 0.5):  # along a normal the nearest image is the one we left
        torch.testing.assert_close(m.distance(x + t * normal), torch.full((40,), t, dtype=F64), rtol=0, atol=1e-7)
        torch.testing.assert_close(m.project(x + t * normal), x, rtol=0, atol=1e-6)
    noisy = x + 0.1 * torch.randn(x.shape, generator=gen, dtype=F64)
    proj = m.project(noisy)
    torch.testing.assert_close(m.project(proj), proj, rtol=0, atol=1e-8)
    if chart_dim == 2:  # no worse than a brute-force search over a 0.05-pixel grid of centres
        grid = torch.linspace(float(m.low[0]), float(m.high[0]), 141, dtype=F64)
        brute = torch.cdist(noisy, m.render(torch.cartesian_prod(grid, grid))).min(dim=1).values
        assert float((m.distance(noisy) - brute).max()) < 1e-9
    x32 = m.sample(5, generator=gen)
    assert x32.dtype == torch.float32 and m.tangent_basis(x32).dtype == torch.float32
    assert float(x32.max()) <= 1.0 and float(x32.min()) > 0.0
    assert m.as_images(x32).shape == (5, 1, 16, 16)


def test_blob_arguments() -> None:
    for kwargs, match in [({"side": 3}, "side"), ({"chart_dim": 4}, "chart_dim"), ({"width": -1.0}, "width"),
                          ({"width_range": (1.0, 2.0)}, "chart_dim=3"), ({"margin": 8.0}, "margin"),
                          ({"chart_dim": 3, "width_range": (2.0, 1.0)}, "width_range")]:
        with pytest.raises(ValueError, match=match):
            Blobs(**kwargs)
    with pytest.raises(ValueError, match=r"shape \(n, 2\)"):
        Blobs(16).render(torch.zeros(3, 3))


def test_idx_labels_are_found_beside_upper_case_names(tmp_path: Path) -> None:
    pics = RNG.integers(0, 256, (4, 3, 3)).astype(np.uint8)
    (tmp_path / "TRAIN-IMAGES-IDX3-UBYTE").write_bytes(_idx(pics))
    (tmp_path / "TRAIN-LABELS-IDX1-UBYTE").write_bytes(_idx(np.arange(4, dtype=np.uint8)))
    assert load_idx(tmp_path / "TRAIN-IMAGES-IDX3-UBYTE").labels.tolist() == [0, 1, 2, 3]


def test_a_layout_for_a_folder_or_an_idx_file_is_refused_not_ignored(tmp_path: Path) -> None:
    from learned_manifold_training.data import resolve_source

    (tmp_path / "t10k-images-idx3-ubyte").write_bytes(_idx(RNG.integers(0, 256, (4, 3, 3)).astype(np.uint8)))
    with pytest.raises(ValueError, match="layout applies to array files .*not to the IDX file"):
        resolve_source(str(tmp_path / "t10k-images-idx3-ubyte"), layout="NHWC")
    with pytest.raises(ValueError, match="layout applies to array files .*not to the folder"):
        resolve_source(str(tmp_path), layout="NCHW")
