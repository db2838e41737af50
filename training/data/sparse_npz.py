"""scipy sparse matrices saved with ``scipy.sparse.save_npz`` (entries ``data``, ``format``, ``shape`` and
``indices``/``indptr`` for csr/csc, ``row``/``col`` or ``coords`` for coo), made dense with NumPy alone (scipy is
not a dependency). Their ``data`` entry is the vector of nonzero values, never the points: `readers` sends such a
file here instead of taking that entry."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

__all__ = ["SCIPY_SPARSE_KEYS", "densify_scipy_npz", "is_scipy_sparse"]

SCIPY_SPARSE_KEYS = frozenset({"data", "format", "shape"})
"""The entries every ``scipy.sparse.save_npz`` file holds."""

_SAVE_DENSE = "save the matrix dense instead: np.save(path, m.toarray())"


def is_scipy_sparse(names: Sequence[str]) -> bool:
    """Whether a ``.npz``'s entry ``names`` are scipy's sparse layout (``data``, ``format`` and ``shape``)."""
    return SCIPY_SPARSE_KEYS <= set(names)


def _format_name(value: np.ndarray) -> str | None:
    """The ``format`` entry's text ("csr", ...): a 0-d bytes or str array; None for anything else."""
    if value.ndim != 0 or value.dtype.kind not in "SU":
        return None
    item = value.item()
    return item.decode("ascii", "replace") if isinstance(item, bytes) else str(item)


def _index(value: np.ndarray, name: str, label: str, length: int | None = None) -> np.ndarray:
    """An index entry as int64 (any length when ``length`` is None), or one ValueError naming it."""
    if value.dtype.kind not in "iu" or (length is not None and value.shape != (length,)):
        want = "integers" if length is None else f"{length} integers"
        raise ValueError(f"{label}: scipy sparse entry {name!r} should hold {want}, got {value.dtype} "
                         f"{value.shape}: the file is corrupt")
    return value.astype(np.int64, copy=False)


def _check_range(index: np.ndarray, size: int, name: str, label: str) -> None:
    if index.size and (int(index.min()) < 0 or int(index.max()) >= size):
        raise ValueError(f"{label}: scipy sparse entry {name!r} holds indices outside 0..{size - 1}: the file is "
                         "corrupt")


def _compressed(entries: Mapping[str, np.ndarray], shape: tuple[int, ...], by_rows: bool,
                label: str) -> tuple[np.ndarray, ...]:
    """``(rows, cols)`` of every stored value of a csr (``by_rows``) or csc matrix."""
    if len(shape) != 2:
        raise ValueError(f"{label}: scipy sparse csr/csc matrix of shape {shape}: expected 2 axes")
    outer, inner = shape if by_rows else shape[::-1]
    nnz = entries["data"].shape[0]
    indptr = _index(entries["indptr"], "indptr", label, outer + 1)
    indices = _index(entries["indices"], "indices", label, nnz)
    if indptr[0] != 0 or indptr[-1] != nnz or bool((np.diff(indptr) < 0).any()):
        raise ValueError(f"{label}: scipy sparse entry 'indptr' is not a run of offsets from 0 to {nnz}: the file "
                         "is corrupt")
    _check_range(indices, inner, "indices", label)
    major = np.repeat(np.arange(outer, dtype=np.int64), np.diff(indptr))
    return (major, indices) if by_rows else (indices, major)


def _coordinates(entries: Mapping[str, np.ndarray], shape: tuple[int, ...], label: str) -> tuple[np.ndarray, ...]:
    """The coordinates of every stored value of a coo matrix: ``row``/``col`` (2-D) or ``coords`` (k, nnz)."""
    nnz = entries["data"].shape[0]
    if "coords" in entries:
        coords = entries["coords"]
        if coords.ndim != 2 or coords.shape != (len(shape), nnz):
            raise ValueError(f"{label}: scipy sparse entry 'coords' has shape {coords.shape}, expected "
                             f"{(len(shape), nnz)}: the file is corrupt")
        names = [f"coords[{k}]" for k in range(len(shape))]
        index = [_index(coords[k], names[k], label, nnz) for k in range(len(shape))]
    elif "row" in entries and "col" in entries and len(shape) == 2:
        names = ["row", "col"]
        index = [_index(entries[name], name, label, nnz) for name in names]
    else:
        raise ValueError(f"{label}: scipy sparse coo matrix without its 'row'/'col' (or 'coords') entries: the "
                         "file is corrupt")
    for idx, size, name in zip(index, shape, names, strict=True):
        _check_range(idx, size, name, label)
    return tuple(index)


def densify_scipy_npz(entries: Mapping[str, np.ndarray], label: str, limit: int) -> np.ndarray:
    """The dense array ``shape`` of a ``scipy.sparse.save_npz`` file's ``entries`` (name → array), as
    ``m.toarray()`` gives it (repeated coordinates summed), in the stored values' dtype.

    Args:
        entries: the file's arrays by name (`is_scipy_sparse` holds for their names).
        label: how the file is named in errors.
        limit: the most values the dense array may have (`readers.MAX_DENSE_FROM_SPARSE`).

    Returns:
        np.ndarray of shape ``shape``, e.g. (N, D).

    Raises:
        ValueError: a format other than csr, csc or coo (bsr, dia, ...: save it dense), a dense form of more than
            ``limit`` values, non-numeric values, or entries that do not fit together (a corrupt file).
    """
    fmt = _format_name(entries["format"])
    if fmt is None:
        raise ValueError(f"{label}: looks like a scipy sparse matrix (entries {sorted(entries)}) but its 'format' "
                         f"entry is not a format name; {_SAVE_DENSE}")
    if fmt not in ("csr", "csc", "coo"):
        raise ValueError(f"{label}: is a scipy sparse matrix in format {fmt!r}, which is not read (csr, csc and coo "
                         f"are); {_SAVE_DENSE}")
    shape_entry, data = entries["shape"], entries["data"]
    if shape_entry.ndim != 1 or shape_entry.dtype.kind not in "iu" or bool((shape_entry < 0).any()):
        raise ValueError(f"{label}: scipy sparse entry 'shape' should hold the matrix's sizes, got "
                         f"{shape_entry.dtype} {shape_entry.shape}: the file is corrupt")
    shape = tuple(int(s) for s in shape_entry)
    if data.ndim != 1:
        raise ValueError(f"{label}: scipy sparse entry 'data' should be 1-D (the stored values), got shape "
                         f"{data.shape}: the file is corrupt")
    if data.dtype.kind not in "biuf":
        raise ValueError(f"{label}: scipy sparse matrix of non-numeric dtype {data.dtype}; expected real numbers "
                         "(bool, integer or floating)")
    if math.prod(shape) > limit:
        raise ValueError(f"{label}: is a scipy sparse {fmt} matrix of shape {shape} whose dense form has "
                         f"{math.prod(shape):,} values (more than {limit:,}); {_SAVE_DENSE} (or as several files)")
    if fmt == "coo":
        where = _coordinates(entries, shape, label)
    else:
        where = _compressed(entries, shape, fmt == "csr", label)
    dense = np.zeros(shape, dtype=data.dtype)
    np.add.at(dense, where, data)
    return dense
