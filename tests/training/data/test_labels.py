"""`training.data.labels`: a file's "labels" entry of text (cell types) becomes integer codes with its names kept;
floats that are no class labels (pseudotime) are left out with a warning; integer labels are unchanged. Before,
all but integers made the file unusable ("labels must be a 1-D integer array")."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch

from learned_manifold_training.data import load_image_array, resolve_source

X = np.random.default_rng(0).normal(size=(6, 3)).astype(np.float32)
TYPES = np.array(["progenitor", "mature", "intermediate", "mature", "progenitor", "mature"])
CODES = [2, 1, 0, 1, 2, 1]  # in the sorted names: intermediate, mature, progenitor


def test_text_labels_become_codes_of_their_sorted_names(tmp_path: Path) -> None:
    np.savez(tmp_path / "s.npz", data=X, labels=TYPES)
    got = resolve_source(str(tmp_path / "s.npz"))
    torch.testing.assert_close(got.x, torch.from_numpy(X), rtol=0, atol=0)
    assert got.labels.dtype == torch.int64 and got.labels.tolist() == CODES
    assert got.class_names == ("intermediate", "mature", "progenitor") and got.info is None
    sub = resolve_source(str(tmp_path / "s.npz"), n=3, seed=1)  # a subset keeps the whole file's codes
    rows = [int(np.flatnonzero((X == row.numpy()).all(axis=1))[0]) for row in sub.x]
    assert sub.labels.tolist() == [CODES[i] for i in rows] and sub.class_names == got.class_names


@pytest.mark.parametrize("suffix", [".npz", ".pt"])
def test_text_labels_of_images_are_kept_as_class_names(tmp_path: Path, suffix: str) -> None:
    images = np.zeros((4, 1, 5, 5), dtype=np.uint8)
    if suffix == ".npz":
        np.savez(tmp_path / f"i{suffix}", data=images, labels=np.array([b"dog", b"cat", b"dog", b"cat"]))
    else:
        torch.save({"data": torch.from_numpy(images), "labels": ["dog", "cat", "dog", "cat"]}, tmp_path / f"i{suffix}")
    data = load_image_array(tmp_path / f"i{suffix}")
    assert data.labels.tolist() == [1, 0, 1, 0] and data.class_names == ("cat", "dog")
    assert data.metadata()["class_names"] == ["cat", "dog"] and data.metadata()["num_classes"] == 2
    got = resolve_source(str(tmp_path / f"i{suffix}"))
    assert got.info["class_names"] == ["cat", "dog"] and got.class_names == ("cat", "dog")


def test_float_labels_that_are_not_whole_numbers_are_left_out_with_a_warning(tmp_path: Path) -> None:
    np.savez(tmp_path / "p.npz", data=X, labels=np.linspace(0.0, 1.0, 6))
    label = re.escape(f"data file '{tmp_path / 'p.npz'}'")
    with pytest.warns(UserWarning, match=rf"^{label}: its 'labels' entry holds numbers that are not whole \(float64\), "
                                         r"so it was not used: labels must be class labels \(integers or text\)"):
        got = resolve_source(str(tmp_path / "p.npz"))
    assert got.labels is None and got.class_names is None
    torch.testing.assert_close(got.x, torch.from_numpy(X), rtol=0, atol=0)


def test_whole_number_floats_and_integers_are_class_labels() -> None:
    from learned_manifold_training.data.labels import file_labels

    labels, names = file_labels(np.array([2.0, 0.0, 1.0]), "f")
    assert labels.dtype == torch.int64 and labels.tolist() == [2, 0, 1] and names is None
    ints = np.array([3, 0, 1], dtype=np.uint8)
    assert file_labels(ints, "f") == (ints, None)  # unchanged: `labels_tensor` checks them as before
    with pytest.warns(UserWarning, match="not used"):
        assert file_labels(torch.tensor([0.0, float("nan")]), "f") == (None, None)
    assert file_labels(None, "f") == (None, None)
