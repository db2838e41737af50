"""`train`'s ``data_info`` is stored as JSON in the model file: one that JSON cannot hold is refused before the
first step, naming ``data_info``, with nothing written (outside test s33/E: a set trained the whole run, then failed
with json's own message and left a training state behind)."""

from __future__ import annotations

import time

import pytest
import torch

from learned_manifold_training.config import TrainConfig
from learned_manifold_training.trainer import train


@pytest.mark.parametrize(("info", "kind"), [({"classes": {"a", "b"}}, TypeError), ({"x": torch.ones(2)}, TypeError),
                                            (["not", "a", "dict"], TypeError)])
def test_data_info_json_cannot_hold_is_refused_before_any_step(tmp_path, info, kind):
    start = time.perf_counter()
    with pytest.raises(kind, match="^data_info must"):
        train(torch.randn(200, 3), TrainConfig(steps=300), out=tmp_path / "m.lmm", data_info=info, progress=False,
              device="cpu")
    assert time.perf_counter() - start < 5
    assert list(tmp_path.iterdir()) == []  # no model, no training state, no lock


def test_a_circular_data_info_is_a_value_error():
    info: dict = {}
    info["self"] = info
    with pytest.raises(ValueError, match="^data_info cannot be stored as JSON"):
        train(torch.randn(200, 3), TrainConfig(steps=300), data_info=info, progress=False, device="cpu")
