"""The shared scalar checks (`learned_manifold.checks`, `metrics.base.check_scalar`) agree on what a real number is."""

import numbers
import re

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


@pytest.mark.parametrize("value, zero, message", [
    (-1.0, False, "lr must be a finite number > 0, got -1.0"),
    (0.0, False, "lr must be a finite number > 0, got 0.0"),
    (float("nan"), True, "lr must be a finite number >= 0, got nan"),
    (np.float32(-2.0), True, "lr must be a finite number >= 0, got -2.0"),
    ("x", False, "lr must be a real number, got str 'x'"),
])
def test_every_positive_real_option_is_checked_by_one_implementation_with_one_message(value, zero, message):
    """`check_real`, `check_scalar`, `geodesic_inputs._check_positive` and the flows' ``rtol``/``t_end`` checks were
    four implementations with four wordings (tester C, item 6): now each gives `check_real`'s message."""
    from learned_manifold.flow_inputs import _check_solver, _check_times
    from learned_manifold.geodesic_inputs import _check_positive

    checks = [lambda: check_real(value, "lr", positive=not zero, nonnegative=zero),
              lambda: check_scalar(value, "lr", allow_zero=zero), lambda: _check_positive(value, "lr", zero=zero)]
    for check in checks:
        with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
            check()
    if not zero:
        with pytest.raises(ValueError, match=f"^{re.escape(message.replace('lr', 'rtol'))}$"):
            _check_solver("dopri5", value, 1e-6, None)
        with pytest.raises(ValueError, match=f"^{re.escape(message.replace('lr', 't_end'))}$"):
            _check_times(value, 3)
