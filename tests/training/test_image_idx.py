"""Specification tests for IDX files (MNIST's format) read as `ImageData`: labels found beside the images, every
IDX type, hostile and corrupt files refused with one clear error."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from learned_manifold_training.data import (
    DataFileNotFoundError,
    is_image_source,
    load_idx,
    read_idx,
    resolve_data,
    resolve_images,
)
from tests.training.test_image_data import SUBSET, _nchw

RNG = np.random.default_rng(0)


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
