"""`training.data.sparse_npz` (through `load_array`): a ``scipy.sparse.save_npz`` file is its dense matrix, never its
``data`` entry (the nonzero values), within `readers.MAX_DENSE_FROM_SPARSE`; other sparse formats are refused."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch

from learned_manifold_training.data import load_array, resolve_source

DENSE = np.array([[0.0, 2.5, 0.0, 1.0], [0.0, 0.0, 0.0, 0.0], [3.0, 0.0, -4.0, 0.0]], dtype=np.float32)


def _save_like_scipy(path: Path, fmt: str, dense: np.ndarray = DENSE, **extra: np.ndarray) -> None:
    """``dense`` saved in ``scipy.sparse.save_npz``'s key layout, written by hand with NumPy (format as bytes)."""
    rows, cols = np.nonzero(dense)
    if fmt == "csc":
        order = np.lexsort((rows, cols))
        rows, cols = rows[order], cols[order]
    entries = {"format": np.array(fmt.encode("ascii")), "shape": np.array(dense.shape), "data": dense[rows, cols]}
    if fmt == "coo":
        entries.update(row=rows.astype(np.int32), col=cols.astype(np.int32))
    else:
        major, minor, outer = (rows, cols, dense.shape[0]) if fmt == "csr" else (cols, rows, dense.shape[1])
        entries.update(indices=minor.astype(np.int32),
                       indptr=np.concatenate([[0], np.cumsum(np.bincount(major, minlength=outer))]).astype(np.int32))
    np.savez(path, **entries, **extra)


@pytest.mark.parametrize("fmt", ["csr", "csc", "coo"])
def test_a_scipy_sparse_npz_reads_as_its_dense_matrix(tmp_path: Path, fmt: str) -> None:
    """The old reader took the 'data' entry (5 nonzero values, shape (5,)) and refused it with advice to reshape
    it to (5, 1): training data made of the nonzero values."""
    _save_like_scipy(tmp_path / "m.npz", fmt)
    torch.testing.assert_close(load_array(tmp_path / "m.npz"), torch.from_numpy(DENSE), rtol=0, atol=0)


def test_coo_coordinates_and_repeats_sum_as_toarray(tmp_path: Path) -> None:
    """A coo file with ``coords`` (scipy's n-D layout) and a repeated coordinate: summed, as ``toarray`` does."""
    np.savez(tmp_path / "c.npz", format=np.array(b"coo"), shape=np.array([2, 3]),
             coords=np.array([[0, 1, 0], [2, 0, 2]]), data=np.array([1.0, 2.0, 0.5]))
    torch.testing.assert_close(load_array(tmp_path / "c.npz"),
                               torch.tensor([[0.0, 0.0, 1.5], [2.0, 0.0, 0.0]], dtype=torch.float64))


def test_a_real_scipy_save_npz_file_reads_equal_to_toarray(tmp_path: Path) -> None:
    sparse = pytest.importorskip("scipy.sparse")
    rng = np.random.default_rng(0)
    dense = np.where(rng.random((30, 12)) < 0.4, rng.normal(size=(30, 12)), 0.0).astype(np.float32)
    for name, matrix in [("csr", sparse.csr_matrix(dense)), ("csc", sparse.csc_array(dense)),
                         ("coo", sparse.coo_matrix(dense))]:
        sparse.save_npz(tmp_path / f"{name}.npz", matrix)
        got = resolve_source(str(tmp_path / f"{name}.npz"))
        assert got.labels is None
        torch.testing.assert_close(got.x, torch.from_numpy(matrix.toarray()), rtol=0, atol=0)
    sparse.save_npz(tmp_path / "bsr.npz", sparse.bsr_matrix(dense))
    with pytest.raises(ValueError, match=r"^data file '.*bsr\.npz': is a scipy sparse matrix in format 'bsr', which "
                                         r"is not read \(csr, csc and coo are\); save the matrix dense instead: "
                                         r"np\.save\(path, m\.toarray\(\)\)$"):
        load_array(tmp_path / "bsr.npz")


def test_other_formats_and_oversized_matrices_are_refused_in_one_line(tmp_path: Path, monkeypatch) -> None:
    np.savez(tmp_path / "d.npz", format=np.array(b"dia"), shape=np.array([3, 4]), offsets=np.array([0]),
             data=np.ones((1, 4)))
    label = re.escape(f"data file '{tmp_path / 'd.npz'}'")
    with pytest.raises(ValueError, match=rf"^{label}: is a scipy sparse matrix in format 'dia'.*np\.save\(path, "
                                         r"m\.toarray\(\)\)$"):
        load_array(tmp_path / "d.npz")
    import learned_manifold_training.data.readers as readers

    monkeypatch.setattr(readers, "MAX_DENSE_FROM_SPARSE", 11)  # the dense form has 12 values
    _save_like_scipy(tmp_path / "m.npz", "csr")
    with pytest.raises(ValueError, match=r"scipy sparse csr matrix of shape \(3, 4\) whose dense form has 12 values "
                                         r"\(more than 11\); save the matrix dense"):
        load_array(tmp_path / "m.npz")


def test_inconsistent_sparse_entries_are_named_as_corrupt(tmp_path: Path) -> None:
    _save_like_scipy(tmp_path / "m.npz", "csr")
    entries = dict(np.load(tmp_path / "m.npz"))
    entries["indices"] = entries["indices"] + 3  # past the 4 columns
    np.savez(tmp_path / "bad.npz", **entries)
    with pytest.raises(ValueError, match=r"'indices' holds indices outside 0\.\.3: the file is corrupt"):
        load_array(tmp_path / "bad.npz")
    entries["indptr"] = entries["indptr"][:-1]
    np.savez(tmp_path / "bad.npz", **entries)
    with pytest.raises(ValueError, match=r"'indptr' should hold 4 integers, got int32 \(3,\): the file is corrupt"):
        load_array(tmp_path / "bad.npz")
