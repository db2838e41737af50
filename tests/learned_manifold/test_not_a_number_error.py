"""A non-number for a real-valued option is a ``TypeError`` (a wrong type, as in Python) that is still the
``ValueError`` it was before, with the same message (`learned_manifold.checks.NotANumberError`, tester E s33 8)."""

import numpy as np
import pytest
import torch

from learned_manifold import LearnedDataManifold, geodesic
from learned_manifold.checks import NotANumberError, check_real
from learned_manifold.metrics import KNNCDC
from learned_manifold.precision import probe_precision


@pytest.mark.parametrize("value", ["0.5", None, True, np.bool_(False), [1.0], 1j])
def test_a_non_number_is_a_type_error_and_still_a_value_error(value):
    with pytest.raises(TypeError, match="delta must be a real number") as raised:
        check_real(value, "delta")
    assert isinstance(raised.value, ValueError) and type(raised.value) is NotANumberError


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -1.0])
def test_a_bad_number_is_a_value_error_only(value):
    with pytest.raises(ValueError, match="delta must be a finite number >= 0") as raised:
        check_real(value, "delta", nonnegative=True)
    assert not isinstance(raised.value, TypeError)


def test_entry_points_on_the_shared_check_raise_a_type_error_for_a_string():
    """``geodesic(lr="a")`` raised a bare ``ValueError``, ``LearnedDataManifold(field, delta="x")`` a ``TypeError``."""
    data = torch.randn(50, 2, generator=torch.Generator().manual_seed(0))
    with pytest.raises(TypeError, match="lr"):
        geodesic(KNNCDC(data, k=8, sigma=0.5), data[:1], data[1:2], lr="a")
    with pytest.raises(TypeError, match="delta"):
        LearnedDataManifold(KNNCDC(data, k=8, sigma=0.5), delta="x")


def test_the_precision_probe_refuses_a_non_integer_count_as_a_type_error():
    with pytest.raises(TypeError, match="warmup must be an integer >= 1") as raised:
        probe_precision(lambda: None, "cpu", key="k", warmup=1.5)
    assert isinstance(raised.value, ValueError)
    with pytest.raises(ValueError, match="warmup must be an integer >= 1") as raised:
        probe_precision(lambda: None, "cpu", key="k", warmup=0)
    assert not isinstance(raised.value, TypeError)


def test_knn_flags_and_the_low_rank_delta_refuse_a_wrong_type_as_type_errors():
    """The remaining sites of tester E's item 8: ``KNNCDC(centred="yes")`` and ``lowrank_apply(..., delta="x")``."""
    from learned_manifold.geometry import lowrank_apply
    from learned_manifold.metrics import KNNCDC

    data = torch.randn(20, 3, generator=torch.Generator().manual_seed(0))
    with pytest.raises(TypeError, match="centred must be a bool"):
        KNNCDC(data, k=4, sigma=0.5, centred="yes")
    with pytest.raises(TypeError, match="delta must be a finite number"):
        lowrank_apply(torch.randn(2, 3, 1), torch.randn(2, 3), delta="x")
    with pytest.raises(ValueError, match="delta must be a finite number"):
        lowrank_apply(torch.randn(2, 3, 1), torch.randn(2, 3), delta=-1.0)
