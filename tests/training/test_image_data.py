"""Specification tests for image data in users' arrays (`.npy`, `.npz`, `.pt`): read as `ImageData` in their
stored units and layouts, with their labels. Folders: test_image_folders.py; IDX files: test_image_idx.py; the
built-in digits and blobs: test_image_datasets.py."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from learned_manifold_training.data import (
    DataFileNotFoundError,
    ImageData,
    images_from_array,
    load_image_array,
    load_images,
    resolve_data,
    resolve_images,
)

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
    _save(tmp_path / f"c{suffix}", arr, labels=np.ones(4, dtype=np.float32))  # whole-number floats: class labels
    assert load_image_array(tmp_path / f"c{suffix}").labels.tolist() == [1, 1, 1, 1]
    _save(tmp_path / f"d{suffix}", arr, labels=np.full(4, 0.5, dtype=np.float32))  # pseudotime: not classes
    with pytest.warns(UserWarning, match="not whole .* so it was not used"):
        assert load_image_array(tmp_path / f"d{suffix}").labels is None


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
