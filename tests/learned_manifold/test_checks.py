"""The shared scalar checks (`learned_manifold.checks`, `metrics.base.check_scalar`) agree on what a real number is."""

import numbers

import numpy as np
import pytest

from learned_manifold.checks import check_real, is_real
from learned_manifold.metrics.base import check_scalar


@pytest.mark.parametrize("value", [2, 0.5, np.float32(0.25), np.float64(0.5), np.int64(3), np.float16(0.5)])
def test_every_real_number_is_accepted_by_both_checks(value):
    """``np.float32`` (a ``numbers.Real``, not a ``float``) was refused by `check_scalar`, used for sigma, delta, lr."""
    assert isinstance(value, numbers.Real) and is_real(value)
    assert check_real(value, "s") == check_scalar(value, "s") == float(value)
    assert type(check_scalar(value, "s")) is float


@pytest.mark.parametrize("value", ["1", True, np.bool_(True), None, [1.0], 1j])
def test_a_non_number_is_one_value_error_from_both_checks(value):
    """`check_real` raised TypeError where `check_scalar` raised ValueError (pinned by the tests) for one mistake."""
    with pytest.raises(ValueError, match="s must be a real number"):
        check_real(value, "s")
    with pytest.raises(ValueError, match="s must be a real number"):
        check_scalar(value, "s")


def test_a_manifold_around_a_field_takes_a_numpy_zero_delta():
    """``LearnedDataManifold(field, delta=np.float32(0))`` raised "delta must be a number" (tester F, round 10)."""
    import torch

    from learned_manifold import LearnedDataManifold
    from tests.conftest import FixedSubspaceField

    field = FixedSubspaceField(torch.eye(3)[:, :2])
    assert LearnedDataManifold(field, delta=np.float32(0.0)).field is field
    with pytest.raises(TypeError, match="delta must be a number, got str"):
        LearnedDataManifold(field, delta="0")
