"""Specification tests for learned_manifold_training.data: users' arrays (`load_array`, `resolve_data`)."""

from __future__ import annotations

import pickle
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from learned_manifold_training.data import (
    Circle,
    DataFileNotFoundError,
    get_dataset,
    load_array,
    resolve_data,
)

F64 = torch.float64


# ------------------------------------------------------------------------------------------------------
# User arrays
# ------------------------------------------------------------------------------------------------------


class _Exploit:
    """Unpickling this would run code: it writes ``marker``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Callable[[Path, str], int], tuple[Path, str]]:
        return Path.write_text, (self.marker, "code ran")


def test_load_array_round_trips(tmp_path: Path) -> None:
    data = np.random.default_rng(0).normal(size=(20, 3, 4))
    np.save(tmp_path / "a.npy", data.astype(np.float32))
    np.savez(tmp_path / "one.npz", whatever=data)
    np.savez(tmp_path / "many.npz", data=data, labels=np.arange(20))
    torch.save(torch.from_numpy(data).float(), tmp_path / "t.pt")
    torch.save({"data": torch.from_numpy(data), "labels": torch.arange(20)}, tmp_path / "d.pt")
    np.save(tmp_path / "ints.npy", np.arange(12).reshape(6, 2))

    expected32 = torch.from_numpy(data).float()
    got = load_array(tmp_path / "a.npy")
    assert got.dtype == torch.float32 and got.shape == (20, 3, 4)
    torch.testing.assert_close(got, expected32)
    torch.testing.assert_close(load_array(str(tmp_path / "t.pt")), expected32)
    for f in ("one.npz", "many.npz", "d.pt"):
        got = load_array(tmp_path / f)
        assert got.dtype == F64, f  # float64 stays float64
        torch.testing.assert_close(got, torch.from_numpy(data), rtol=0, atol=0)
    ints = load_array(tmp_path / "ints.npy")
    assert ints.dtype == torch.float32 and ints[5, 1] == 11
    # In memory: a copy, float32 unless float64.
    arr = data.astype(np.float16)
    assert load_array(arr).dtype == torch.float32
    src = torch.ones(4, 2)
    out = load_array(src)
    out[0, 0] = 5.0
    assert src[0, 0] == 1.0


def _write(path: Path, content: object) -> Path:
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif path.suffix == ".npy":
        np.save(path, content, allow_pickle=True)
    elif path.suffix == ".npz":
        np.savez(path, **content)  # type: ignore[arg-type]
    else:
        torch.save(content, path)
    return path


BAD_FILES = {
    "missing": ("nope.npy", None, "does not exist"),
    "extension": ("data.csv", b"1,2\n3,4\n", r"unsupported extension '\.csv'.*\.npy, \.npz, \.pt"),
    "corrupt-npy": ("junk.npy", b"\x93NUMPY garbage that is not an array", "corrupt or unreadable"),
    "corrupt-npz": ("junk.npz", b"PK\x03\x04 not really a zip", "corrupt or unreadable"),
    "corrupt-pt": ("junk.pt", b"\x00\x01\x02 definitely not a torch file", "corrupt"),
    "pickled-npy": ("obj.npy", "exploit-array", "pickled"),
    "pickled-npz": ("obj.npz", {"data": "exploit-array"}, "pickled"),
    "pickled-pt": ("obj.pt", {"data": "exploit"}, "weights-only"),
    "pt-not-tensor": ("list.pt", [1, 2, 3], "holds a list"),
    "npz-ambiguous": ("two.npz", {"a": np.ones((3, 2)), "b": np.ones((3, 2))}, r"\['a', 'b'\].*'data'"),
    "strings": ("s.npy", np.array([["a", "b"], ["c", "d"]]), "non-numeric dtype <U1"),
    "complex": ("c.npy", np.ones((4, 2), dtype=np.complex64), "non-numeric dtype complex64"),
    "one-axis": ("v.npy", np.arange(5.0), r"expected an array of shape \(N, \.\.\.\) with at least 2 axes"),
    "empty": ("e.npy", np.zeros((0, 3)), "empty"),
    "nan": (
        "n.npy",
        np.array([[0.0, 1], [2, 3], [4, 5], [np.nan, np.inf], [1, np.nan]]),
        r"3 non-finite.*index 3",
    ),
    "one-sample": ("o.npy", np.ones((1, 3)), "at least 2 samples, got 1"),
    "pt-dict-keys": ("k.pt", {"x": torch.ones(3, 2), "y": torch.ones(3, 2)}, r"\['x', 'y'\]"),
    # issue 13: random bytes are "not a valid .npy file", not a "pickled object array"
    "random-npy": ("r.npy", bytes(range(7, 250, 3)) * 4, r"not a valid \.npy file \(no NumPy"),
    "random-npz": ("r.npz", b"\x01\x02garbage" * 20, r"not a valid \.npz file"),
    "pickle-as-npy": ("p.npy", pickle.dumps([1, 2]), r"not a valid \.npy file \(a Python pickle"),
    "pt-int-keys-ambiguous": ("i.pt", {0: torch.ones(3, 2), 1: torch.ones(3, 2)}, r"\['0', '1'\]"),
}


@pytest.mark.parametrize("case", list(BAD_FILES), ids=list(BAD_FILES))
def test_load_array_rejects_bad_files(tmp_path: Path, case: str) -> None:
    filename, content, message = BAD_FILES[case]
    path = tmp_path / filename
    marker = tmp_path / "marker.txt"
    payload = {"exploit": _Exploit(marker), "exploit-array": np.array([_Exploit(marker), 1], dtype=object)}
    if isinstance(content, str):
        content = payload[content]
    elif isinstance(content, dict):
        content = {k: payload.get(v, v) if isinstance(v, str) else v for k, v in content.items()}
    if content is not None:
        _write(path, content)
    with pytest.raises(ValueError, match=message) as info:
        load_array(path)
    assert filename in str(info.value)  # the message names the file
    assert not marker.exists()  # nothing was unpickled


def test_load_array_missing_file_is_also_file_not_found(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        load_array(tmp_path / "absent.pt")
    assert issubclass(DataFileNotFoundError, ValueError)


def test_load_array_rejects_bad_in_memory_arrays() -> None:
    with pytest.raises(ValueError, match="non-numeric dtype object"):
        load_array(np.array([[object(), 1]], dtype=object), name="mine")
    with pytest.raises(ValueError, match="'mine': non-numeric"):
        load_array(torch.ones(3, 2, dtype=torch.complex64), name="mine")
    with pytest.raises(ValueError, match="index 1"):
        load_array(torch.tensor([[0.0, 1.0], [float("nan"), 0.0]]))
    with pytest.raises(TypeError):
        load_array([[1.0, 2.0], [3.0, 4.0]])  # type: ignore[arg-type]


def test_pickle_payload_would_have_run(tmp_path: Path) -> None:
    """Sanity check for the refusal tests: unpickling _Exploit does run code."""
    marker = tmp_path / "marker.txt"
    pickle.loads(pickle.dumps(_Exploit(marker)))
    assert marker.read_text() == "code ran"


# ------------------------------------------------------------------------------------------------------
# resolve_data
# ------------------------------------------------------------------------------------------------------


def test_resolve_data(tmp_path: Path) -> None:
    x, m = resolve_data("circle", n=50, seed=2)
    assert x.shape == (50, 2) and isinstance(m, Circle)
    torch.testing.assert_close(x, get_dataset("circle", 50, seed=2)[0], rtol=0, atol=0)
    x, m = resolve_data("circle")
    assert x.shape == (10_000, 2)
    data = np.arange(40.0).reshape(20, 2)
    np.save(tmp_path / "d.npy", data)
    x, m = resolve_data(tmp_path / "d.npy", n=5)  # a random subset (seed 0), in file order
    keep = torch.randperm(20, generator=torch.Generator().manual_seed(0))[:5].sort().values
    assert m is None and x.shape == (5, 2) and x.tolist() == data[keep.numpy()].tolist()
    assert resolve_data(str(tmp_path / "d.npy"))[0].shape == (20, 2)
    with pytest.raises(ValueError, match="only 20"):
        resolve_data(tmp_path / "d.npy", n=21)
    with pytest.raises(ValueError, match="neither a built-in data set") as info:
        resolve_data("spheer")
    assert "swiss_roll" in str(info.value)


def test_a_pt_dict_with_a_non_string_key_loads(tmp_path: Path) -> None:
    """A ``.pt`` dict whose only key is an int (or holds an int key besides "data") loads, no KeyError."""
    x = torch.arange(12.0).reshape(6, 2)
    torch.save({0: x}, tmp_path / "int.pt")
    torch.testing.assert_close(load_array(tmp_path / "int.pt"), x, rtol=0, atol=0)
    torch.save({"data": x, 7: torch.zeros(2)}, tmp_path / "mixed.pt")
    torch.testing.assert_close(load_array(tmp_path / "mixed.pt"), x, rtol=0, atol=0)


@pytest.mark.filterwarnings("ignore:Sparse CSR tensor support is in beta state:UserWarning")
@pytest.mark.parametrize("layout", ["coo", "csr"])
def test_a_small_sparse_tensor_is_densified(tmp_path: Path, layout: str) -> None:
    """A sparse ``.pt`` tensor (COO or CSR) is read as its dense equivalent."""
    dense = torch.zeros(8, 3)
    dense[2, 1], dense[5, 0] = 4.0, -1.5
    sparse = dense.to_sparse() if layout == "coo" else dense.to_sparse_csr()
    torch.save(sparse, tmp_path / "s.pt")
    got = load_array(tmp_path / "s.pt")
    assert got.layout == torch.strided
    torch.testing.assert_close(got, dense, rtol=0, atol=0)


def test_a_huge_sparse_tensor_is_refused_clearly(monkeypatch: pytest.MonkeyPatch) -> None:
    """A sparse tensor whose dense form would exceed the limit is refused with its size, not densified."""
    import learned_manifold_training.data.readers as data

    monkeypatch.setattr(data, "MAX_DENSE_FROM_SPARSE", 10)
    sparse = torch.zeros(8, 3).to_sparse()
    with pytest.raises(ValueError, match=r"'big': is a sparse tensor .* 24 values .*store the data dense"):
        load_array(sparse, name="big")


# ------------------------------------------------------------------------------------------------------
# Files that claim more than they hold, and reading only the rows asked for
# ------------------------------------------------------------------------------------------------------


def test_a_npz_entry_that_is_not_numpy_data_is_refused_by_name(tmp_path: Path) -> None:
    import zipfile

    path = tmp_path / "odd.npz"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("data.npy", b"hello world")
    with pytest.raises(ValueError, match=r"odd.npz': entry 'data' is not NumPy array data \(.*magic"):
        load_array(path)
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("notes.txt", b"hello world")
    with pytest.raises(ValueError, match=r"odd.npz': entry 'notes.txt' is not NumPy array data \(bytes\)"):
        load_array(path)


def test_a_npz_entry_whose_header_claims_more_than_it_holds_is_refused_before_reading(tmp_path: Path) -> None:
    """np.load would allocate the declared size first (3.6 TiB here): the header is checked against the entry."""
    import io
    import zipfile

    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": "<f4", "fortran_order": False, "shape": (10**6, 10**6)})
    path = tmp_path / "liar.npz"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("data.npy", buf.getvalue() + b"\0" * 64)
    with pytest.raises(ValueError, match=r"entry 'data' declares shape \(1000000, 1000000\) of float32 "
                                         r"\(4,000,000,000,000 bytes\) but holds 64 bytes"):
        load_array(path)
    npy = tmp_path / "liar.npy"  # a .npy is mapped, so a lying header fails without allocating
    npy.write_bytes(buf.getvalue() + b"\0" * 64)
    with pytest.raises(ValueError, match=r"liar.npy': corrupt or unreadable"):
        load_array(npy)


def test_a_broadcast_tensor_in_a_pt_file_is_refused_not_materialised(tmp_path: Path) -> None:
    """``torch.zeros(1).expand(n, n)`` saves one value and a shape: reading it would allocate n² values."""
    path = tmp_path / "view.pt"
    torch.save(torch.zeros(1).expand(4000, 4000), path)
    assert path.stat().st_size < 4000
    with pytest.raises(ValueError, match=r"view.pt': holds a tensor of shape \(4000, 4000\) \(64,000,000 bytes\) "
                                         r"that stores only 4 bytes .*save x.contiguous\(\) instead"):
        load_array(path)
    torch.save(torch.arange(12.0).reshape(3, 4)[:, :2], path)  # a view of part of its storage is fine
    assert torch.equal(load_array(path), torch.arange(12.0).reshape(3, 4)[:, :2])


def test_the_rows_drawn_of_a_npy_are_read_without_reading_the_rest(tmp_path: Path) -> None:
    """A ``.npy`` is mapped and its drawn rows taken before anything is copied: the other rows are never
    converted, so a non-finite value there is not even seen."""
    data = np.random.default_rng(0).normal(size=(50, 3))
    keep = torch.randperm(50, generator=torch.Generator().manual_seed(0))[:10].sort().values.numpy()
    bad = int(np.setdiff1d(np.arange(50), keep)[0])
    data[bad] = np.nan
    np.save(tmp_path / "d.npy", data)
    x, _ = resolve_data(str(tmp_path / "d.npy"), n=10)
    np.testing.assert_array_equal(x.numpy(), data[keep])
    with pytest.raises(ValueError, match=f"first bad row is index {bad}"):
        resolve_data(str(tmp_path / "d.npy"))


def test_num_points_of_a_file_sorted_by_cluster_draws_every_cluster(tmp_path: Path) -> None:
    """``--num-points n`` kept a file's first n rows: a file sorted by cluster gave a model of its first cluster
    only (3,000 of 6,000 cells: the blob alone). Arrays now take a random subset drawn with the seed, in file
    order, as an image folder does; labels follow their rows, and another seed draws another subset."""
    from learned_manifold_training.data import resolve_source

    cluster = np.repeat(np.arange(4), 25)
    np.savez(tmp_path / "cells.npz", data=np.stack([cluster, np.arange(100)], 1).astype(np.float32), labels=cluster)
    got = resolve_source(str(tmp_path / "cells.npz"), n=40, seed=3)
    keep = torch.randperm(100, generator=torch.Generator().manual_seed(3))[:40].sort().values
    assert got.x[:, 1].tolist() == keep.float().tolist()
    assert got.labels.tolist() == got.x[:, 0].long().tolist() and set(got.labels.tolist()) == {0, 1, 2, 3}
    assert resolve_source(str(tmp_path / "cells.npz"), n=40, seed=4).x[:, 1].tolist() != keep.float().tolist()


def test_load_array_leaves_the_labels_beside_the_data_out(tmp_path: Path) -> None:
    data = np.random.default_rng(0).normal(size=(6, 2))
    np.savez(tmp_path / "d.npz", x=data, labels=np.arange(6))
    np.testing.assert_array_equal(load_array(tmp_path / "d.npz").numpy(), data)


def test_a_compressed_npz_entry_larger_than_memory_is_refused_before_inflating(tmp_path: Path, monkeypatch) -> None:
    """A zip bomb: np.savez_compressed of zeros is a few kB on disk and its header tells the truth, so only the
    machine's memory can refuse it (here 8 MB of zeros against a machine said to have 1 MiB)."""
    from learned_manifold_training.data import readers

    path = tmp_path / "bomb.npz"
    np.savez_compressed(path, data=np.zeros((1000, 2000), dtype=np.float32))
    assert path.stat().st_size < 100_000
    monkeypatch.setattr(readers, "_memory_bytes", lambda: 2**20)
    with pytest.raises(ValueError, match=r"bomb.npz': entry 'data' holds 0.00745 GiB uncompressed \(\(1000, 2000\) "
                                         r"of float32\), more than the memory available \(0.000977 GiB\): save the "
                                         r"array as .npy"):
        load_array(path)
    monkeypatch.setattr(readers, "_memory_bytes", lambda: None)  # where the OS does not tell: read as before
    assert load_array(path).shape == (1000, 2000)
