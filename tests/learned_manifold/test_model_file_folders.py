"""Folders where model and VAE files are read or written (outside test s33/E): a folder given as the file raises the
standard `IsADirectoryError` (still a `ModelFileError`/`ValueError` as before), naming the path; a missing folder is
not created (a mistyped tree), as by ``open``, ``torch.save`` and `train`'s ``out``: `FileNotFoundError` naming it."""

from __future__ import annotations

import pytest

from learned_manifold import ModelFileError, load_model, load_vae, save_model
from learned_manifold.atomic_write import atomic_write_bytes
from learned_manifold.models import MetricModel, ModelConfig


def _model() -> MetricModel:
    return MetricModel(ModelConfig(data_shape=(3,), rank=2, arch_kwargs={"hidden": 8, "depth": 1, "emb_dim": 8}))


@pytest.mark.parametrize("load", [load_model, load_vae])
def test_loading_a_folder_is_an_is_a_directory_error_and_a_model_file_error(tmp_path, load):
    folder = tmp_path / "m.lmm"
    folder.mkdir()
    with pytest.raises(IsADirectoryError, match=r"m\.lmm' is a folder, not a (model|VAE) file") as info:
        load(folder)
    assert isinstance(info.value, ModelFileError)


def test_saving_onto_a_folder_is_an_is_a_directory_error_and_a_value_error(tmp_path):
    folder = tmp_path / "m.lmm"
    folder.mkdir()
    with pytest.raises(IsADirectoryError, match=r"m\.lmm': it is a folder") as info:
        save_model(_model(), folder)
    assert isinstance(info.value, ValueError) and list(folder.iterdir()) == []


def test_a_missing_folder_is_not_created(tmp_path):
    path = tmp_path / "resluts_typo" / "run1" / "m.lmm"
    with pytest.raises(FileNotFoundError, match=r"the folder '.*resluts_typo/run1' does not exist"):
        save_model(_model(), path)
    assert list(tmp_path.iterdir()) == []


def test_a_parent_that_is_a_file_is_not_a_directory_error(tmp_path):
    (tmp_path / "file").write_bytes(b"")
    with pytest.raises(NotADirectoryError, match=r"'.*file' is not a folder"):
        atomic_write_bytes(tmp_path / "file" / "m.lmm", b"x")
