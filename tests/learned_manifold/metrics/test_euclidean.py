"""EuclideanMetric: the identity co-metric, and the argument checks the baseline fields share."""

import numpy as np
import pytest
import torch

from learned_manifold.metrics import EuclideanMetric
from learned_manifold.metrics.base import check_count, check_scalar, check_vectors


def test_identities():
    field = EuclideanMetric()
    x, u, v = torch.randn(3, 6, 5, dtype=torch.float64)
    torch.testing.assert_close(field.apply(x, v), v)
    torch.testing.assert_close(field.metric(x, v), v)
    torch.testing.assert_close(field.inner(x, u, v), (u * v).sum(-1))
    eye = torch.eye(5, dtype=torch.float64).expand(6, 5, 5)
    torch.testing.assert_close(field.dense(x), eye)
    torch.testing.assert_close(field.factor(x), eye)
    assert field.project(x) is x and not field.can_project
    assert field.centred and not field.low_rank and field.delta == 0.0


def test_dimension_is_enforced_when_given():
    field = EuclideanMetric(dim=3)
    x = torch.randn(4, 3)
    assert field.apply(x, x).shape == (4, 3)
    with pytest.raises(ValueError, match="D = 3"):
        field.metric(torch.randn(4, 2), torch.randn(4, 2))
    for bad, error in ((0, ValueError), (-1, ValueError), (2.5, TypeError), (True, TypeError)):
        with pytest.raises(error, match="dim must"):
            EuclideanMetric(dim=bad)


def test_factor_refuses_large_dimension():
    with pytest.raises(ValueError, match="4096"):
        EuclideanMetric().factor(torch.zeros(1, 4097))


@pytest.mark.parametrize(
    ("x", "v", "match"),
    [
        (torch.zeros(3), torch.zeros(3), "shape \\(B, D\\)"),
        (torch.zeros(2, 3), torch.zeros(2, 4), "coordinates"),
        (torch.zeros(2, 3), torch.zeros(5, 3), "batch size"),
        (torch.zeros(2, 3), torch.zeros(2, 3, dtype=torch.long), "floating"),
    ],
)
def test_bad_vectors_raise(x, v, match):
    with pytest.raises(ValueError, match=match):
        check_vectors(x, v, None)
    with pytest.raises(ValueError, match=match):
        EuclideanMetric().apply(x, v)


def test_scalar_and_count_checks():
    assert check_scalar(2, "s") == 2.0 and check_scalar(0.0, "s", allow_zero=True) == 0.0
    for bad in (0.0, -1.0, float("nan"), float("inf"), "1", True):
        with pytest.raises(ValueError, match="s"):
            check_scalar(bad, "s")
    assert check_count(3, "n", high=3) == 3
    for bad in (0, 4):  # out of range: ValueError; not an integer: TypeError (as `checks.check_int`, PyTorch)
        with pytest.raises(ValueError, match=r"^n must lie in 1\.\.3, got"):
            check_count(bad, "n", high=3)
    for bad in (2.0, False, np.bool_(True), "3"):
        with pytest.raises(TypeError, match=r"^n must be an integer, got"):
            check_count(bad, "n", high=3)
    assert check_count(np.int64(2), "n", high=3) == 2 and check_count(torch.tensor(3), "n", high=3) == 3
