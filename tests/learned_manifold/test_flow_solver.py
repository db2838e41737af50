"""`gradient_flow` keeps its promise that ``f`` is finite along the flow (`flow_solver.ObjectiveWatch`, SPEC §6):
an objective whose autograd gradient stays finite past its domain (``log(x₀ − 1)``: ``1/(x₀ − 1)``) let a fixed-step
flow leave the domain and return NaN values of ``f`` and a NaN ``final_gap`` silently (tester report D, #1). The
check uses the values the velocity computes anyway: it costs no call of ``f`` (review s35, finding 5)."""

import pytest
import torch

from learned_manifold import gradient_flow
from learned_manifold.flow_solver import objective_along
from learned_manifold.metrics import EuclideanMetric

F64 = torch.float64


def barrier(x: torch.Tensor) -> torch.Tensor:
    """``log(x₀ − 1)``: defined for ``x₀ > 1``; its flow from ``x₀`` reaches the boundary at ``t = (x₀ − 1)²/2``."""
    return (x[:, 0] - 1).log()


@pytest.mark.parametrize("method", ["euler", "rk4"])
def test_a_flow_that_leaves_fs_domain_raises_naming_the_start_point(method):
    x0 = torch.tensor([[100.0, 0.0, 0.0], [2.0, 0.0, 0.0]], dtype=F64)  # the second reaches the boundary at t = 0.5
    with pytest.raises(ValueError, match=r"the flow of start points \[1\] became NaN or inf .*f is not finite along"):
        gradient_flow(EuclideanMetric(), barrier, x0, t_end=5.0, method=method)


def test_a_flow_that_stays_in_fs_domain_reports_f_at_its_end():
    x0 = torch.tensor([[100.0, 0.0, 0.0], [2.0, 0.0, 0.0]], dtype=F64)
    res = gradient_flow(EuclideanMetric(), barrier, x0, t_end=0.25, method="euler", step_size=1e-3)
    torch.testing.assert_close(res.final_gap, barrier(res.path[:, -1]))
    # the exact flow: (x₀ − 1)² − 2t, so f = ½ log((x₀ − 1)² − 2t)
    torch.testing.assert_close(res.final_gap, 0.5 * torch.log(torch.tensor([99.0**2 - 0.5, 0.5], dtype=F64)),
                               rtol=0, atol=2e-3)


def test_checking_f_along_the_flow_costs_no_extra_call_of_f():
    calls = {"grad": 0, "no_grad": 0}

    def counted(x: torch.Tensor) -> torch.Tensor:
        calls["grad" if torch.is_grad_enabled() else "no_grad"] += 1
        return -(x**2).sum(-1)

    res = gradient_flow(EuclideanMetric(), counted, torch.randn(4, 3, dtype=F64), t_end=0.5, n_points=50,
                        method="euler", step_size=0.01)
    assert res.n_evals == 50
    # one call at x0 (`_check_objective`), one per velocity evaluation (for ∇f), one at the end (final_gap)
    assert calls == {"grad": 1 + res.n_evals, "no_grad": 1}


def test_an_adaptive_solvers_trial_point_outside_fs_domain_is_no_error():
    # dopri5 steps past t_end = 0.25 (and tries steps it rejects) into x₀ < 1, where f is NaN; the path is inside
    x0 = torch.tensor([[100.0, 0.0, 0.0], [2.0, 0.0, 0.0]], dtype=F64)
    res = gradient_flow(EuclideanMetric(), barrier, x0, t_end=0.25, method="dopri5")
    assert bool(torch.isfinite(barrier(res.path.flatten(0, 1))).all())
    torch.testing.assert_close(res.final_gap, 0.5 * torch.log(torch.tensor([99.0**2 - 0.5, 0.5], dtype=F64)),
                               rtol=0, atol=2e-3)


def test_objective_along_checks_every_output_point_and_returns_f_at_the_end():
    times = torch.linspace(0, 1, 3, dtype=F64)
    path = torch.tensor([[[3.0], [2.5], [2.0]], [[3.0], [1.0], [2.0]]], dtype=F64)  # (B, T, D): row 1 hits x = 1
    torch.testing.assert_close(objective_along(barrier, path[:1], times, "euler"), torch.zeros(1, dtype=F64))
    with pytest.raises(ValueError, match=r"start points \[1\].*start point 1: first at t = 0.5\)"):
        objective_along(barrier, path, times, "euler")
    assert objective_along(barrier, path[:0], times, "euler").shape == (0,)


def test_objective_along_names_the_first_output_time_at_which_f_is_not_finite():
    """A path that leaves ``f``'s domain at ``t = 2`` and stays out is named at ``t = 2``, where it left, not at the
    end of the flow (a path bad at several output times; report A, s36)."""
    times = torch.linspace(0.0, 4.0, 5, dtype=F64)
    path = torch.tensor([[[3.0], [2.5], [0.5], [0.0], [-1.0]]], dtype=F64)  # x₀ ≤ 1 from t = 2 on
    with pytest.raises(ValueError, match=r"start point 0: first at t = 2\)"):
        objective_along(barrier, path, times, "euler")
