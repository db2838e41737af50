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


def test_bad_point_types_raise_clear_errors():
    """Nested lists are converted as NumPy arrays are (they were a TypeError); bool and complex points get the
    manifold's ValueError (complex was a TypeError here, a ValueError from the manifold's methods)."""
    with pytest.raises(TypeError, match="x0 must be a torch.Tensor, a NumPy array or nested lists"):
        interpolate(M, "points", points(1, 0))
    with pytest.raises(ValueError, match=r"x1 must have a floating-point \(or integer\) dtype, got torch.bool"):
        interpolate(M, points(1, 0), torch.zeros(1, 4, dtype=torch.bool))  # integers convert, as in `geodesic`
    with pytest.raises(ValueError, match=r"x1 must have a floating-point \(or integer\) dtype, got torch.complex"):
        interpolate(M, points(1, 0), torch.zeros(1, 4, dtype=torch.complex128))
    listed = interpolate(M, points(1, 0).tolist(), points(1, 1).tolist(), n_points=5)
    assert listed.path.dtype == torch.get_default_dtype()  # as torch.as_tensor and the manifold convert lists
    torch.testing.assert_close(listed.path, interpolate(M, points(1, 0).float(), points(1, 1).float(), n_points=5).path)


def test_empty_batches_give_empty_results():
    e = torch.zeros(0, 4, dtype=torch.float64)
    res = interpolate(M, e, e, n_points=5)
    assert res.path.shape == (0, 5, 4) and res.final_gap.shape == res.gap_closed.shape == res.stalled.shape == (0,)
    assert res.reason == [] and res.n_evals == 0
    res = gradient_flow(M, lambda y: y.pow(2).sum(-1), e, n_points=5)
    assert res.path.shape == (0, 5, 4) and res.final_gap.shape == (0,)


def test_a_gap_that_grows_under_a_too_large_euler_step_is_a_solver_error():
    """Euler with η = 2.5 on span(Q): y ← (1 − η) y, so the gap grows exactly 1.5-fold per step, which the exact
    flow never does. It was reported as "out of time: … raise t_end", which made it worse."""
    x0, x1 = points(2, 9) @ Q @ Q.T, points(2, 10) @ Q @ Q.T
    res = interpolate(M, x0, x1, t_end=10.0, n_points=5, method="euler", step_size=2.5)
    gaps = (res.path - x1[:, None]).norm(dim=-1)
    torch.testing.assert_close(gaps[:, 1:] / gaps[:, :-1], torch.full((2, 4), 1.5, dtype=torch.float64))
    assert not res.reached.any() and not res.stalled.any()
    for reason in res.reason:
        assert reason.startswith("solver error: the gap to x1 grew by") and "raise t_end" not in reason, reason
        assert "use a smaller step_size (now 2.5)" in reason


def test_a_loose_tolerance_that_walks_away_from_the_target_is_a_solver_error_not_out_of_time():
    """rtol = atol = 0.1 on the docstrings' k-NN S²: the path closes in, then walks 2 away from x₁ and off the
    sphere (it said "out of time: … raise t_end", and a longer t_end went farther). The default tolerances reach
    x₁; their gap grows at most by the solver's tolerance (7.6e-6 where the flow brakes), far below stop_tol."""
    from tests.learned_manifold.test_flows import sphere_knn_field

    field = sphere_knn_field()
    x0, x1 = torch.tensor([[1.0, 0.0, 0.0]]), torch.tensor([[0.0, 1.0, 0.0]])
    loose = interpolate(field, x0, x1, t_end=40.0, rtol=0.1, atol=0.1)
    gaps = (loose.path[0] - x1).norm(dim=-1)
    assert float((gaps - gaps.cummin(dim=0).values).max()) > 1.0  # the ground truth: it grew
    assert not loose.reached.item() and not loose.stalled.item()
    reason = loose.reason[0]
    assert reason.startswith("solver error") and "tighten rtol/atol (now 0.1/0.1" in reason, reason
    assert "raise t_end" not in reason
    default = interpolate(field, x0, x1, t_end=40.0)
    gaps = (default.path[0] - x1).norm(dim=-1)
    assert default.reason == ["reached"] and float((gaps - gaps.cummin(dim=0).values).max()) < 1e-4


def test_every_result_is_a_plain_tensor_for_ends_that_require_grad():
    """``gap_closed`` had kept an autograd graph back to ``x0``/``x1``; every other field was plain."""
    x0 = (points(2, 11) @ Q @ Q.T).requires_grad_()
    x1 = (points(2, 12) @ Q @ Q.T).requires_grad_()
    res = interpolate(M, x0, x1, n_points=3, t_end=1.0)
    tensors = {name: v for name, v in vars(res).items() if isinstance(v, torch.Tensor)}
    assert "gap_closed" in tensors and "path" in tensors
    assert not any(v.requires_grad for v in tensors.values()), [n for n, v in tensors.items() if v.requires_grad]
