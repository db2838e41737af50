"""`gradient_flow`'s tolerances on a field without a `length_scale` (SPEC §6): the same accuracy in any units and at
any position, from each path's own unit ``‖(G + δI)∇f(x₀)‖ · Δt``."""

import pytest
import torch

from learned_manifold import gradient_flow
from learned_manifold.metrics import EuclideanMetric

U0 = torch.tensor([[1.5, -0.7]], dtype=torch.float64)


def wiggly(u: torch.Tensor) -> torch.Tensor:
    """A unit-free objective ``(B, 2)`` → ``(B,)`` with a curved flow."""
    return 0.5 * (u**2).sum(-1) + torch.cos(3 * u[:, 0]) * torch.sin(2 * u[:, 1]) + 0.5 * torch.sin(5 * u[:, 1])


def test_a_flow_on_a_field_without_a_length_scale_is_as_accurate_in_any_units_and_at_any_position():
    """``f_c(x) = c² h((x − s)/c)`` under ``G = I`` flows along ``s + c u(t)``: at the default tolerances,
    ``(path − s)/c`` is within 2e-4 of a tight reference for every ``c`` and ``s`` (the same steps: the solver sees
    the same problem). With atol in data units the error had been 3.8 at ``c = 1e-6`` and 7.7e-2 at ``1e-3``."""
    field = EuclideanMetric(2)
    assert field.length_scale() is None
    ref = gradient_flow(field, wiggly, U0, t_end=3.0, rtol=1e-10, atol=1e-12).path[0]
    runs = []
    for c, s in [(1.0, 0.0), (1e-6, 0.0), (1e-3, 0.0), (1e3, 0.0), (1e-3, 5.0)]:
        res = gradient_flow(field, lambda x, c=c, s=s: c * c * wiggly((x - s) / c), s + c * U0, t_end=3.0)
        err = float(((res.path[0] - s) / c - ref).norm(dim=-1).max())
        assert err < 2e-4, (c, s, err)
        runs.append((err, res.n_evals))
    assert all(n == runs[0][1] for _, n in runs), runs  # the same steps in every unit
    for err, _ in runs[1:4]:  # the pure changes of unit are the same problem, to rounding
        assert err == pytest.approx(runs[0][0], rel=1e-6)


def test_a_start_where_the_flow_does_not_move_stays_put_beside_one_that_does():
    """A path whose start has zero velocity (the minimiser of ``½‖x‖²``) has no unit of its own: it is solved in
    absolute units and stays exactly where it is, while its batch mate follows ``x₀ e^{−t}``."""
    x0 = torch.tensor([[0.0, 0.0], [3e-4, -1e-4]], dtype=torch.float64)
    res = gradient_flow(EuclideanMetric(2), lambda x: 0.5 * (x**2).sum(-1), x0, t_end=2.0, n_points=5)
    assert torch.equal(res.path[0], torch.zeros(5, 2, dtype=torch.float64))
    exact = x0[1] * torch.exp(-res.times)[:, None]
    torch.testing.assert_close(res.path[1], exact, rtol=0, atol=1e-4 * float(x0[1].norm()))
