"""`check_training_tensor`: a tensor is judged on every row, with the scale the model is standardised with (as a
streamed file is), and wrong input gets an error that says what is wrong with it."""

import math
import warnings

import numpy as np
import pytest
import torch

from learned_manifold_training.batches import standardisation
from learned_manifold_training.data.stream import ArraySource
from learned_manifold_training.runtime import SPREAD_LIMITS, check_training_tensor


def circle_with_rare_rows(n: int = 10_000, rare: int = 20, units: float = 1e17) -> torch.Tensor:
    """A unit circle in the wrong units (``units``) whose spread lies in ``rare`` rows none of which lies on a
    4,096-row even grid (outside test s34/B, problem 8)."""
    t = torch.arange(n, dtype=torch.float64) * (2 * math.pi / n)
    data = torch.stack([t.cos(), t.sin()], 1) * 1e-3
    grid = set(torch.linspace(0, n - 1, 4096).long().tolist())
    rows = [i for i in range(1, n) if i not in grid][:rare]
    data[rows] = data[rows] * 1e3  # the points that carry the spread
    return data * units


def test_rare_rows_that_carry_the_spread_are_judged_as_the_model_is_standardised():
    """The quick check's 4,096 rows saw a spread in range, and the run trained a circle standardised with a scale
    beyond `SPREAD_LIMITS` (its points merged into one float32 point); as a streamed source the same points were
    refused. Now every run judges the limits on its training rows' statistics, before any step."""
    from learned_manifold_training.trainer import TrainConfig, train

    data = circle_with_rare_rows()
    scale, mean = standardisation(data)
    assert scale > SPREAD_LIMITS[1]
    check_training_tensor(data)  # the quick check alone misses them: the run's own check must not
    cfg = TrainConfig(steps=5, batch_size=32, rank=2, hidden=16, depth=1, emb_dim=8, val_points=50)
    for source in (data, ArraySource(data)):
        with pytest.raises(ValueError, match="RMS spread about their mean of"):
            train(source, cfg, progress=False, device="cpu")


def test_data_within_the_limits_on_every_row_pass():
    check_training_tensor(circle_with_rare_rows(units=1e3))


def test_a_numpy_array_is_told_to_convert():
    with pytest.raises(ValueError, match=r"NumPy array of shape \(50, 2\).*torch\.from_numpy"):
        check_training_tensor(np.zeros((50, 2)))


def test_a_one_axis_tensor_is_told_to_reshape():
    with pytest.raises(ValueError, match=r"shape \(50,\).*reshape\(-1, 1\)"):
        check_training_tensor(torch.randn(50))


def test_too_few_points_say_so():
    with pytest.raises(ValueError, match=r"at least 10 points, got shape \(9, 2\)"):
        check_training_tensor(torch.randn(9, 2))


def test_data_that_require_grad_are_checked_without_torchs_warning():
    data = torch.randn(100, 3, requires_grad=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_training_tensor(data)
