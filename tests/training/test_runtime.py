"""`training.runtime`: the float32 resolution check the trainer shares with `KNNCDC`."""

import math
import warnings

import pytest
import torch

from learned_manifold.checks import FLOAT32_RESOLUTION, float_resolution_problem
from learned_manifold.metrics.knn import KNNCDC
from training.runtime import check_training_tensor


def test_the_resolution_clause_is_the_closed_form():
    """``top · eps`` against ``FLOAT32_RESOLUTION · spread``: the bound itself passes, the next float above fails."""
    eps = torch.finfo(torch.float32).eps
    top = FLOAT32_RESOLUTION / eps  # spread 1: exactly at the bound
    assert float_resolution_problem(top, 1.0, eps, "float32,") is None
    assert float_resolution_problem(top, 0.0, eps, "float32,") is None  # no spread: nothing to merge
    problem = float_resolution_problem(math.nextafter(top, math.inf), 1.0, eps, "float32,")
    assert problem == ("data lie far from the origin for their spread (largest |x| of a varying coordinate = 8.39e+03, "
                       "RMS spread about the mean 1): in float32, neighbouring values are 0.001 apart, 0.1% of the "
                       "spread, so distinct points merge")


@pytest.mark.parametrize("offset", [3e3, 8e3, 9e3, 1e5])
def test_the_trainer_refuses_exactly_the_float32_data_knn_warns_about(offset):
    """One check (`float_resolution_problem`) for both: `KNNCDC` accepted a float32 circle at 1e5 silently while the
    trainer refused it. Near the bound (8.4e3 for a unit spread) both now agree, and say the same clause."""
    t = torch.arange(3000, dtype=torch.float64) * (2 * math.pi / 3000)
    data = (torch.stack([t.cos(), t.sin()], 1) + offset).float()
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        KNNCDC(data, k=8, sigma=0.1)
    try:
        check_training_tensor(data)
        refused = None
    except ValueError as error:
        refused = str(error)
    assert (refused is not None) == (offset > 8.4e3) == bool(record)
    if refused is not None:
        clause = refused.split(": in float32")[0]
        assert str(record[0].message).startswith(f"KNNCDC {clause}: in float32, the data's dtype, ")
        assert refused.endswith("; subtract an offset (e.g. the mean) from the data before training")
