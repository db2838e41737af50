"""What the commands read as DATA (`training/cli_data.py`, `resolve_source`): image arrays in either channel order,
their labels, shapes checked against the model, and outputs that never land on the user's data."""

import warnings

import numpy as np
import pytest
import torch

from learned_manifold import MetricModel, ModelConfig, load_model
from learned_manifold.model_file_notes import ModelFileWarning
from learned_manifold_training.cli import main
from learned_manifold_training.data import as_model_points, resolve_source
from learned_manifold_training.outputs import OutputError, check_output
from learned_manifold_training.show import run_show

TINY = ["--steps", "3", "--batch-size", "16", "--backbone", "mlp", "--hidden", "16", "--depth", "1",
        "--precision", "fp32", "--no-progress", "--device", "cpu"]


def rgb_images(n: int = 40, seed: int = 0) -> np.ndarray:
    """``(n, 3, 8, 8)`` uint8 images whose three channels differ (a transposed read cannot pass for them)."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=(n, 3, 8, 8), dtype=np.uint8)


def test_channels_last_arrays_are_read_channels_first_with_their_units(tmp_path):
    """Keras, PIL and most pipelines store (N, H, W, C); before, `train` took (8, 8, 3) as the point shape."""
    nchw = rgb_images()
    np.save(tmp_path / "nhwc.npy", nchw.transpose(0, 2, 3, 1))
    got = resolve_source(tmp_path / "nhwc.npy")
    assert got.x.shape == (40, 3, 8, 8) and got.x.dtype == torch.float32
    assert torch.equal(got.x, torch.from_numpy(nchw).float())
    assert got.info["stored_dtype"] == "uint8" and got.info["data_shape"] == [3, 8, 8]
    np.save(tmp_path / "mnist_keras.npy", nchw[:, :1].transpose(0, 2, 3, 1))  # (N, 8, 8, 1)
    assert resolve_source(tmp_path / "mnist_keras.npy").x.shape == (40, 1, 8, 8)


def test_arrays_that_are_not_4_axis_images_keep_their_stored_shape(tmp_path):
    np.save(tmp_path / "gray.npy", rgb_images()[:, 0])  # (N, H, W): the model's points are (8, 8), as before
    np.save(tmp_path / "volume.npy", np.ones((12, 6, 6, 6), dtype=np.float32))
    np.save(tmp_path / "points.npy", np.ones((12, 5), dtype=np.float64))
    assert resolve_source(tmp_path / "gray.npy").x.shape == (40, 8, 8)
    got = resolve_source(tmp_path / "volume.npy")
    assert got.x.shape == (12, 6, 6, 6) and got.info is None
    assert resolve_source(tmp_path / "points.npy", n=4).x.shape == (4, 5)


def test_an_ambiguous_layout_is_asked_for_and_a_stated_one_is_used(tmp_path, capsys):
    arr = np.arange(10 * 3 * 8 * 3, dtype=np.float32).reshape(10, 3, 8, 3)
    np.save(tmp_path / "amb.npy", arr)
    with pytest.raises(ValueError, match="ambiguous"):
        resolve_source(tmp_path / "amb.npy")
    assert resolve_source(tmp_path / "amb.npy", layout="NHWC").x.shape == (10, 3, 3, 8)
    assert resolve_source(tmp_path / "amb.npy", layout="NCHW").x.shape == (10, 3, 8, 3)
    assert main(["train", str(tmp_path / "amb.npy"), "--out", str(tmp_path / "m.lmm"), *TINY]) == 2
    assert "--layout NCHW or --layout NHWC" in capsys.readouterr().err
    with pytest.raises(ValueError, match="layout applies to array files"):
        resolve_source("circle", layout="NHWC")


def test_labels_beside_the_images_are_kept_apart_from_the_data(tmp_path):
    """A .npz {"images", "labels"} was refused by `train` ("holds several arrays"), and `show` dropped the labels
    of {"data", "labels"} (no per-class curves, no same-class pairs)."""
    imgs, labels = rgb_images(), np.arange(40) % 4
    np.savez(tmp_path / "named.npz", images=imgs, labels=labels)
    torch.save({"data": torch.from_numpy(imgs), "labels": torch.from_numpy(labels)}, tmp_path / "d.pt")
    for name in ("named.npz", "d.pt"):
        got = resolve_source(tmp_path / name)
        assert got.x.shape == (40, 3, 8, 8) and torch.equal(got.labels, torch.from_numpy(labels))
    np.savez(tmp_path / "flat.npz", data=np.ones((12, 5)), labels=np.arange(12))
    drawn = torch.randperm(12, generator=torch.Generator().manual_seed(0))[:5].sort().values  # n: a random subset
    assert torch.equal(resolve_source(tmp_path / "flat.npz", n=5).labels, drawn)


@pytest.mark.filterwarnings("ignore:.* by the checks at the end:learned_manifold.ModelFileWarning")  # a tiny run
def test_train_on_channels_last_images_learns_channels_first_points(tmp_path):
    np.save(tmp_path / "nhwc.npy", rgb_images().transpose(0, 2, 3, 1))
    assert main(["train", str(tmp_path / "nhwc.npy"), "--out", str(tmp_path / "m.lmm"), *TINY]) == 0
    with warnings.catch_warnings():  # 3 steps: a model its checks may not trust, which `load_model` may say
        warnings.simplefilter("ignore", ModelFileWarning)
        assert load_model(tmp_path / "m.lmm").data_shape == (3, 8, 8)


def test_points_must_mean_what_the_model_was_trained_on():
    x = torch.randn(5, 3, 8, 8)
    assert as_model_points(x, (3, 8, 8), "DATA") is not None
    assert as_model_points(torch.randn(5, 1, 8, 8), (8, 8), "DATA").shape == (5, 8, 8)
    assert as_model_points(torch.randn(5, 8, 8), (1, 8, 8), "DATA").shape == (5, 1, 8, 8)
    for bad in (x.reshape(5, -1), x.permute(0, 2, 3, 1)):  # same count, other meaning: was reshaped silently
        with pytest.raises(ValueError, match=r"DATA has points of shape \(.*\); the model was trained on points "
                                             r"of shape \(3, 8, 8\)"):
            as_model_points(bad, (3, 8, 8), "DATA")


def test_outputs_never_replace_or_enter_the_users_data(tmp_path):
    data = tmp_path / "data.npy"
    np.save(data, np.ones((12, 3), dtype=np.float32))
    before = data.read_bytes()
    for overwrite in (False, True):  # before: --overwrite replaced the data with the model file
        with pytest.raises(OutputError, match="is the input data"):
            check_output(data, overwrite=overwrite, data=str(data))
    assert main(["train", str(data), "--out", str(data), "--overwrite", *TINY]) == 2
    assert data.read_bytes() == before
    folder = tmp_path / "pictures"
    folder.mkdir()
    model = MetricModel(ModelConfig(data_shape=(1, 8, 8), rank=2, arch_kwargs={"hidden": 8, "depth": 1}))
    for out in (folder, folder / "figures"):  # before: show wrote its PNGs among the user's images
        with pytest.raises(ValueError, match="inside the data"):
            run_show(model, torch.rand(12, 1, 8, 8), out, data_source=folder)
    assert list(folder.iterdir()) == []
    (tmp_path / "note.txt").write_text("keep")
    with pytest.raises(ValueError, match="is a file, not a folder"):
        run_show(model, torch.rand(12, 1, 8, 8), tmp_path / "note.txt")
