"""`learned-manifold info MODEL --data DATA` (`training.info`): which rows of the data its checks read."""

import json

import numpy as np
import pytest
import torch

from learned_manifold.model_file import save_model
from learned_manifold.models import MetricModel, ModelConfig
from learned_manifold_training import cli_data
from learned_manifold_training.cli import main


@pytest.fixture
def model_path(tmp_path):
    """An untrained mean-centred model of points in R³ (the checks run on any model)."""
    torch.manual_seed(0)
    model = MetricModel(ModelConfig(data_shape=(3,), rank=2, arch_kwargs={"hidden": 8, "depth": 1}))
    return save_model(model, tmp_path / "m.lmm")


def _info_json(model_path, data, capsys) -> dict:
    assert main(["info", str(model_path), "--data", str(data), "--num-points", "40", "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_a_npy_file_is_read_only_where_the_checks_look(model_path, tmp_path, capsys, monkeypatch):
    """`info --data x.npy` read, validated and copied the whole file (~3x its size in memory) to check 40 points
    against the others; a mapped .npy now gives only the rows the checks use, with the same answer as reading the
    same data whole (a .pt file is read whole)."""
    data = np.random.default_rng(0).normal(size=(300, 3)).astype(np.float32)
    np.save(tmp_path / "x.npy", data)
    torch.save(torch.from_numpy(data), tmp_path / "x.pt")
    whole = _info_json(model_path, tmp_path / "x.pt", capsys)

    def read_everything(*args, **kwargs):
        raise AssertionError("the whole file was read")

    monkeypatch.setattr(cli_data, "read_data", read_everything)
    mapped = _info_json(model_path, tmp_path / "x.npy", capsys)
    assert mapped["self_consistency"] == whole["self_consistency"]
    assert mapped["neighbour_check"] == whole["neighbour_check"]


def test_a_bad_row_among_those_read_is_named(model_path, tmp_path, capsys):
    data = np.random.default_rng(1).normal(size=(10, 3)).astype(np.float32)
    data[7, 1] = np.nan
    np.save(tmp_path / "x.npy", data)
    assert main(["info", str(model_path), "--data", str(tmp_path / "x.npy")]) == 2
    err = capsys.readouterr().err
    assert "contains non-finite values (NaN or inf) in 1 of the 10 rows read" in err and "row is index 7" in err
