"""The trainer's spread limits (`training.runtime.SPREAD_LIMITS`): data whose RMS spread ``s`` makes ``s²`` over- or
underflow float32 in geodesics, flows and curvature (outside test s33/D: 0, NaN or short lengths at 1e-20, errors at
1e19, after a "trusted" training run) are refused before training, naming the spread and the power of ten that
fixes them; physical units users have (1e-12..1e12) stay accepted."""

from __future__ import annotations

import re
import time

import pytest
import torch

from learned_manifold_training.config import TrainConfig
from learned_manifold_training.runtime import check_source_resolution, check_training_tensor
from learned_manifold_training.trainer import train


def _points(spread: float) -> torch.Tensor:
    """200 points of a unit circle in R³ scaled to RMS spread ``spread`` (float32)."""
    t = torch.linspace(0, 6.28, 200, dtype=torch.float64)
    x = torch.stack([t.cos(), t.sin(), 0.1 * (3 * t).sin()], 1)
    x = x - x.mean(0)
    return (x / x.pow(2).sum(-1).mean().sqrt() * spread).float()


@pytest.mark.parametrize("spread", [1.001e-15, 1e-12, 1e-6, 1.0, 1e6, 1e12, 0.999e15])
def test_units_users_have_are_accepted(spread):
    check_training_tensor(_points(spread))


@pytest.mark.parametrize(("spread", "power"), [(1e-25, "1e25"), (1e-20, "1e20"), (1e-16, "1e16"), (1e16, "1e-16"),
                                               (1e19, "1e-19")])
def test_extreme_units_are_refused_naming_the_spread_and_the_remedy(spread, power):
    with pytest.raises(ValueError, match=rf"^data have an RMS spread .* of {re.escape(f'{spread:.3g}')}, outside "
                                         rf".*multiply the data by {power} "):
        check_training_tensor(_points(spread))


def test_train_refuses_before_any_step_and_writes_nothing(tmp_path):
    start = time.perf_counter()
    with pytest.raises(ValueError, match="RMS spread"):
        train(_points(1e-20), TrainConfig(steps=1000), out=tmp_path / "m.lmm", progress=False, device="cpu")
    assert time.perf_counter() - start < 5 and list(tmp_path.iterdir()) == []


def test_a_streamed_source_is_refused_by_its_statistics_naming_the_file():
    sample = _points(1.0).double()
    with pytest.raises(ValueError, match=r"^data file 'x\.npy': data have an RMS spread about their mean of 1e\+19"):
        check_source_resolution("data file 'x.npy'", torch.zeros(3), 1e19, sample)
    check_source_resolution("data file 'x.npy'", torch.zeros(3), 1e12, sample)
