"""MNIST-style IDX files (MNIST, Fashion-MNIST), plain or gzip-compressed, read with strict checks as `ImageData`
in their stored units (SPEC §1, §9): a truncated, inflated or hostile file gets one ValueError naming it, and
nothing larger than the file can hold is ever allocated."""

from __future__ import annotations

import gzip
import math
import os
import re
import struct
import zlib
from pathlib import Path

import numpy as np

from .images import ImageData, _from_raw
from .labels import labels_tensor
from .readers import path_text

__all__ = ["is_idx_path", "load_idx", "read_idx"]


_IDX_TYPES = {0x08: np.dtype("u1"), 0x09: np.dtype("i1"), 0x0B: np.dtype(">i2"), 0x0C: np.dtype(">i4"),
              0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}
_GZIP_MAGIC = b"\x1f\x8b"
_DEFLATE_MAX_RATIO = 1032  # deflate cannot expand data by more than about 1032:1
_BLOCK = 1 << 24  # bytes read at a time
_IDX_NAME = re.compile(r"idx[1-4]-ubyte(\.gz)?$|\.idx[1-4]?(\.gz)?$", re.IGNORECASE)


def is_idx_path(path: str | os.PathLike[str]) -> bool:
    """Whether a file name looks like an IDX file: ``*idx3-ubyte``, ``*.idx`` (each optionally ``.gz``)."""
    return bool(_IDX_NAME.search(Path(path).name))


def _read_exact(fh, size: int, label: str, what: str) -> bytes:
    data = fh.read(size)
    if len(data) < size:
        raise ValueError(f"{label}: truncated: {what} needs {size} bytes, the file holds only {len(data)}")
    return data


def read_idx(path: str | os.PathLike[str], *, ndim: int | None = None) -> np.ndarray:
    """Read an IDX array (the MNIST format), plain or gzip-compressed, with strict checks.

    Layout: two zero bytes, a type code (0x08 uint8, 0x09 int8, 0x0B int16, 0x0C int32, 0x0D float32,
    0x0E float64), the number of axes, one big-endian uint32 per axis, then the values in C order. The header's
    size must match the data exactly; nothing larger than the file can hold (a compressed file: 1032 times its
    size, deflate's limit) is ever allocated.

    Args:
        path: the file (gzip is recognised by its signature, whatever the name).
        ndim: required number of axes (None: 1 to 4).

    Returns:
        np.ndarray in native byte order, of the stored type and shape.

    Raises:
        DataFileNotFoundError: the file does not exist.
        ValueError: bad signature or type code, wrong number of axes, a zero-length axis, a header that claims
            more data than the file holds, truncated or trailing data, a corrupt gzip stream.
    """
    from .readers import DataFileNotFoundError, DataPathIsAFolderError

    path = Path(path)
    label = f"IDX file '{path}'"
    if not path.exists():
        raise DataFileNotFoundError(f"{label}: does not exist")
    if path.is_dir():
        raise DataPathIsAFolderError(f"{label}: is a directory, expected a file")
    if not path.is_file():
        raise ValueError(f"{label}: is not a regular file")
    size = path.stat().st_size
    with open(path, "rb") as raw:
        compressed = raw.read(2) == _GZIP_MAGIC
    limit = size * _DEFLATE_MAX_RATIO if compressed else size
    try:
        with (gzip.open(path, "rb") if compressed else open(path, "rb")) as fh:
            head = _read_exact(fh, 4, label, "the header")
            if head[:2] != b"\x00\x00" or head[2] not in _IDX_TYPES:
                raise ValueError(f"{label}: not an IDX file (first bytes {head!r}; expected 00 00, a type code in "
                                 f"{sorted(_IDX_TYPES)} and the number of axes)")
            axes = head[3]
            if not 1 <= axes <= 4 or (ndim is not None and axes != ndim):
                raise ValueError(f"{label}: has {axes} axes, expected {ndim if ndim is not None else '1 to 4'}")
            dims = struct.unpack(f">{axes}I", _read_exact(fh, 4 * axes, label, "the shape"))
            if 0 in dims:
                raise ValueError(f"{label}: has an empty axis (shape {dims})")
            dtype = _IDX_TYPES[head[2]]
            nbytes = math.prod(dims) * dtype.itemsize
            if 4 + 4 * axes + nbytes > limit:
                held = f"at most {limit:,} bytes once decompressed" if compressed else f"{size:,} bytes"
                raise ValueError(f"{label}: its header claims shape {dims} ({nbytes:,} bytes of {dtype.name}), "
                                 f"but the file holds {held}: truncated or not an IDX file")
            data = bytearray()
            while len(data) < nbytes:  # in blocks: memory follows the data actually there, not the header's claim
                block = fh.read(min(_BLOCK, nbytes - len(data)))
                if not block:
                    raise ValueError(f"{label}: truncated: shape {dims} of {dtype.name} needs {nbytes:,} bytes of "
                                     f"data, the file holds only {len(data):,}")
                data += block
            if fh.read(1):
                raise ValueError(f"{label}: has data after the {nbytes:,} bytes its header claims (shape {dims})")
        arr = np.frombuffer(data, dtype=dtype).reshape(dims)  # a view of ``data`` (a bytearray: writable)
        # one byte a value (uint8, int8) has no byte order: only wider types are copied into the native order
        return arr if dtype.itemsize == 1 else arr.astype(dtype.newbyteorder("="))
    except MemoryError as err:
        raise ValueError(f"{label}: too large for the memory available: shape {dims} of {dtype.name} needs "
                         f"{nbytes / 2**30:.3g} GiB ({type(err).__name__}); use a machine with more memory") from None
    except (OSError, EOFError, zlib.error) as err:  # gzip.BadGzipFile is an OSError
        raise ValueError(f"{label}: corrupt or unreadable ({type(err).__name__}: {err})") from None


def _labels_beside(path: Path) -> Path | None:
    def swap(match: re.Match) -> str:  # in the name's own case: TRAIN-IMAGES-IDX3 -> TRAIN-LABELS-IDX1
        word = "labels" if match.group(1).islower() else "LABELS" if match.group(1).isupper() else "Labels"
        return f"{word}{match.group(2)}{match.group(3)}1"

    name = re.sub(r"(images)([.-])(idx)3", swap, path.name, flags=re.IGNORECASE)
    if name == path.name:
        return None
    stem = name[:-3] if name.lower().endswith(".gz") else name
    gz = ".GZ" if path.name.endswith(".GZ") else ".gz"
    for candidate in (path.with_name(stem), path.with_name(stem + gz)):
        if candidate.is_file():
            return candidate
    return None


def load_idx(images: str | os.PathLike[str], labels: str | os.PathLike[str] | bool = True) -> ImageData:
    """MNIST-style images from an IDX file ``(N, H, W)`` (plain or ``.gz``) and optionally their labels.

    Args:
        images: e.g. ``train-images-idx3-ubyte`` or ``train-images-idx3-ubyte.gz``.
        labels: True: read ``train-labels-idx1-ubyte[.gz]`` when it lies beside the images (the name with
            "images-idx3" replaced by "labels-idx1"); False: none; a path: that file (must exist).

    Returns:
        `ImageData` (N, 1, H, W), values as stored (MNIST: 0..255, uint8), labels int64 or None.

    Raises:
        ValueError: any `read_idx` error, images that are not 3-axis, labels that are not 1-axis integers or
            whose count differs from the images'.
    """
    path = Path(images)
    arr = read_idx(path, ndim=3)
    label_path = _labels_beside(path) if labels is True else None if labels is False else Path(labels)
    lab = None
    if label_path is not None:
        raw = read_idx(label_path, ndim=1)
        if raw.dtype.kind not in "iu":
            raise ValueError(f"IDX file '{label_path}': labels must be integers, got {raw.dtype.name}")
        lab = labels_tensor(raw, arr.shape[0], f"IDX file '{label_path}'")
    return _from_raw(arr, f"IDX file '{path}'", None, lab, path_text(path))
