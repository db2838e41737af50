"""`FiLMResMLP`'s depth: σ enters through the residual blocks only (SPEC §4), so a network needs one."""

import pytest

from learned_manifold.mlp import FiLMResMLP
from learned_manifold.models import MetricModel, ModelConfig


def test_depth_zero_is_refused_naming_depth():
    with pytest.raises(ValueError, match="depth"):
        FiLMResMLP((3,), 2, hidden=8, depth=0, emb_dim=4)


def test_a_model_config_with_depth_zero_builds_no_model():
    cfg = ModelConfig(data_shape=(3,), rank=2, arch_kwargs={"hidden": 8, "depth": 0, "emb_dim": 4})
    with pytest.raises(ValueError, match="depth"):
        MetricModel(cfg)


def test_one_block_is_enough():
    assert len(FiLMResMLP((3,), 2, hidden=8, depth=1, emb_dim=4).blocks) == 1
