"""`interpolate` says what happened to each pair (issue 12 item 4) and rejects bad settings up front (issue 13)."""

import math

import pytest
import torch

from learned_manifold import LearnedDataManifold, gradient_flow, interpolate
from tests.conftest import FixedSubspaceField

Q = torch.linalg.qr(torch.randn(4, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)).Q
M = LearnedDataManifold(FixedSubspaceField(Q))


def points(n, seed):
    return torch.randn(n, 4, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def test_gap_closed_is_one_minus_exponential_decay():
    """On span(Q) the gap decays as e^{−t}: the fraction closed at t_end = 1 is 1 − e^{−1}, and still moving."""
    x0, x1 = points(3, 1) @ Q @ Q.T, points(3, 2) @ Q @ Q.T
    res = interpolate(M, x0, x1, t_end=1.0, rtol=1e-9, atol=1e-10)
    torch.testing.assert_close(res.gap_closed, torch.full((3,), 1 - math.exp(-1.0), dtype=torch.float64))
    assert not res.stalled.any() and not res.reached.any()
    assert all(r.startswith("out of time") for r in res.reason)


def test_a_gap_normal_to_the_data_is_reported_as_stalled():
    """x0 off the subspace: ẋ = −QQᵀ(x − x₁) never closes the normal part of the gap, so the flow stalls there;
    the fraction closed is the tangent share of the squared gap in the norm: 1 − |normal| / |gap|."""
    x1 = points(2, 3) @ Q @ Q.T
    normal = (torch.eye(4, dtype=torch.float64) - Q @ Q.T) @ points(2, 4).T
    x0 = x1 + normal.T + points(2, 5) @ Q @ Q.T
    res = interpolate(M, x0, x1, t_end=30.0)
    assert res.stalled.all() and not res.reached.any()
    assert all(r.startswith("stalled") for r in res.reason)
    expected = 1 - normal.T.norm(dim=-1) / (x0 - x1).norm(dim=-1)
    torch.testing.assert_close(res.gap_closed, expected, atol=1e-4, rtol=0)


def test_reached_pairs_and_identical_ends():
    x1 = points(2, 6) @ Q @ Q.T
    x0 = torch.cat([x1[:1], points(1, 7) @ Q @ Q.T])  # the first pair starts at its target
    res = interpolate(M, x0, x1, t_end=10.0)
    assert res.reached.all() and not res.stalled.any() and res.reason == ["reached", "reached"]
    assert res.gap_closed[0] == 1 and res.gap_closed[1] > 0.98


@pytest.mark.parametrize("kwargs, match", [
    (dict(n_points=1), "n_points"), (dict(n_points=0), "n_points"), (dict(t_end=0.0), "t_end"),
    (dict(t_end=float("nan")), "t_end"), (dict(t_end=-1.0), "t_end"), (dict(t_end=float("inf")), "t_end"),
])
def test_bad_times_raise_one_clear_error(kwargs, match):
    x = points(2, 8)
    with pytest.raises(ValueError, match=match):
        interpolate(M, x, x, **kwargs)
    with pytest.raises(ValueError, match=match):
        gradient_flow(M, lambda y: y.pow(2).sum(-1), x, **kwargs)


def test_bad_point_types_raise_type_errors():
    with pytest.raises(TypeError, match="x0"):
        interpolate(M, [[0.0] * 4], points(1, 0))
    with pytest.raises(TypeError, match=r"x1 must have a floating-point \(or integer\) dtype, got torch.bool"):
        interpolate(M, points(1, 0), torch.zeros(1, 4, dtype=torch.bool))  # integers convert, as in `geodesic`


def test_empty_batches_give_empty_results():
    e = torch.zeros(0, 4, dtype=torch.float64)
    res = interpolate(M, e, e, n_points=5)
    assert res.path.shape == (0, 5, 4) and res.final_gap.shape == res.gap_closed.shape == res.stalled.shape == (0,)
    assert res.reason == [] and res.n_evals == 0
    res = gradient_flow(M, lambda y: y.pow(2).sum(-1), e, n_points=5)
    assert res.path.shape == (0, 5, 4) and res.final_gap.shape == (0,)
