"""`training.data.idx.read_idx`: one-byte data is not copied for its byte order, and running out of memory names
the file and the size."""

from __future__ import annotations

import re
import struct
from pathlib import Path

import numpy as np
import pytest

from learned_manifold_training.data import idx, read_idx


def _idx_file(path: Path, arr: np.ndarray, code: int) -> Path:
    path.write_bytes(b"\0\0" + bytes([code, arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape) + arr.tobytes())
    return path


def test_one_byte_data_is_returned_without_a_copy_and_wider_data_in_native_order(tmp_path: Path) -> None:
    pictures = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    arr = read_idx(_idx_file(tmp_path / "a.idx", pictures, 0x08))
    np.testing.assert_array_equal(arr, pictures)
    assert arr.dtype == np.uint8 and not arr.flags.owndata and arr.flags.writeable  # a view of the bytes read
    wide = np.arange(-3, 3, dtype=">i2").reshape(2, 3)
    arr = read_idx(_idx_file(tmp_path / "b.idx", wide, 0x0B))
    assert arr.dtype == np.dtype("=i2")
    np.testing.assert_array_equal(arr, wide)


def test_running_out_of_memory_names_the_file_and_the_size(tmp_path: Path, monkeypatch) -> None:
    path = _idx_file(tmp_path / "a.idx", np.zeros((4, 4), dtype=np.uint8), 0x08)

    def out_of_memory(*args, **kwargs):
        raise MemoryError

    monkeypatch.setattr(idx.np, "frombuffer", out_of_memory)
    name = re.escape(str(path))
    with pytest.raises(ValueError, match=rf"^IDX file '{name}': too large for the memory available: shape \(4, 4\) "
                                         r"of uint8 needs 1.49e-08 GiB \(MemoryError\)"):
        read_idx(path)
