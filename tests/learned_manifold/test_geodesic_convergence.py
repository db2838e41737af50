"""A geodesic's ``converged`` is honest: a loose tolerance, a path straddling a ridge of the metric, a singular
metric and a line-search trial the field cannot evaluate."""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor

from learned_manifold.geodesics import geodesic
from learned_manifold.metrics import EuclideanMetric
from learned_manifold.metrics.base import CoMetricField
from tests.learned_manifold.test_geodesics import SphereProjector


@pytest.mark.parametrize("tol", [1e-3, 1e-2])
def test_a_loose_tolerance_cannot_mark_a_path_far_longer_than_the_chord_converged(tol):
    """Adam's first step is small against a large energy; the verification must still refute the claim (its
    default verify_tol was 1e3·tol ≥ 1, which no energy decrease can exceed, and its steps were capped at half
    a chord segment, which cannot shorten a path 200 times the chord)."""
    x0 = torch.tensor([[0.0, 0.0]], dtype=torch.float64)
    x1 = torch.tensor([[1.0, 0.0]], dtype=torch.float64)
    t = torch.linspace(0, 1, 32, dtype=torch.float64)
    init = x0[:, None] + (x1 - x0)[:, None] * t[None, :, None]
    init[:, 1:-1, 1] += 100.0 * torch.sin(math.pi * t[1:-1])
    res = geodesic(EuclideanMetric(), x0, x1, init=init, method="adam", tol=tol)
    assert res.euclidean_length.item() > 100  # it did not get anywhere near the segment...
    assert not res.converged.item()  # ...and says so


class Ridge(CoMetricField):
    """A 1-D conformal metric ``m(x) = 1 + 400 exp(−x²/(2·0.05²))``: a narrow ridge at 0 that every path from −1 to
    1 crosses, of length ``∫ √m dx``."""

    dim = 1

    def m(self, x):
        return 1 + 400 * torch.exp(-0.5 * (x / 0.05) ** 2)

    def apply(self, x, w):
        return w / self.m(x)

    def metric(self, x, v):
        return self.m(x) * v


def test_a_path_whose_points_straddle_a_ridge_of_the_metric_is_not_converged():
    """With 5 points the solver puts the midpoints beside the ridge: discrete length 2.0 of a true 5.19, "converged"
    by its energy test. Re-measured between its points (`geodesic_solvers.resolution`) it is 2.6 times as long, so
    it is reported unconverged with a warning (a VAE geodesic had so converged at 1/76 of its length). With 257
    points the length is the integral's and the path converged."""
    x0, x1 = torch.tensor([[-1.0]], dtype=torch.float64), torch.tensor([[1.0]], dtype=torch.float64)
    grid = torch.linspace(-1, 1, 200_001, dtype=torch.float64)
    truth = float(torch.trapezoid(Ridge().m(grid).sqrt(), grid))
    with pytest.warns(UserWarning, match="do not resolve the metric"):
        coarse = geodesic(Ridge(), x0, x1, n_points=5)
    assert not bool(coarse.converged[0]) and float(coarse.length[0]) < 0.5 * truth
    fine = geodesic(Ridge(), x0, x1, n_points=257)
    assert bool(fine.converged[0]) and float(fine.length[0]) == pytest.approx(truth, rel=0.01)


def test_an_unresolved_path_on_a_singular_metric_is_told_why():
    """With ``δ = 0`` and no landing a sphere's projector field lets a path cut through the centre for free
    (energy ~1e-32 against 0.16 for the great circle); the warning only said "use more n_points", which cannot
    help. It now names the singular metric and the cure."""
    x0 = torch.tensor([[1.0, 0.0, 0.0]], dtype=torch.float64)
    x1 = torch.tensor([[0.0, 1.0, 0.0]], dtype=torch.float64)
    with pytest.warns(UserWarning, match=r"use more n_points; with delta = 0 and no landing the metric is singular"):
        result = geodesic(SphereProjector(delta=0.0), x0, x1, n_points=16, delta=0.0)
    assert not bool(result.converged.all())


def test_a_line_search_trial_the_field_cannot_evaluate_takes_a_shorter_step():
    """A k-NN geodesic between far clusters in R¹⁰⁰ sent an L-BFGS trial to coordinates of 8e28, where the field
    gives NaN: the field's error ("too far outside the data's range") ended the solve and blamed the user's points.
    Such a trial now counts as a failed step (`NonFiniteFieldOutput`) and the line search shortens it."""
    from learned_manifold.geodesic_solvers import _solve_lbfgs
    from learned_manifold.metrics.base import NonFiniteFieldOutput

    class Bowl:
        """Energy ``|v − 1|²`` per pair; the "field" cannot be evaluated beyond ``|v|_∞ = 3``."""

        norm = torch.ones(2, dtype=torch.float64)
        gamma = torch.full((2,), 1e3, dtype=torch.float64)  # a first step 2,000 times too long

        def value_and_grad(self, v, idx=None):
            if bool((v.abs() > 3).any()):
                raise NonFiniteFieldOutput("the test field gave NaN/inf")
            return ((v - 1) ** 2).sum(dim=(1, 2)), 2 * (v - 1)

    v, converged, _ = _solve_lbfgs(Bowl(), torch.zeros(2, 3, 2, dtype=torch.float64), steps=50, lr=1.0, tol=1e-12)
    assert bool(converged.all())
    torch.testing.assert_close(v, torch.ones_like(v))


class HalfPlane(CoMetricField):
    """The Poincaré half-plane, ``G = y² I`` (factor ``y I``, ``δ = 0``): distance
    ``arccosh(1 + |Δ|²/(2 y₀ y₁))``; ``G = 0`` on ``y = 0``."""

    low_rank = True
    dim = 2

    def factor(self, x: Tensor) -> Tensor:
        return x[:, 1, None, None] * torch.eye(2, dtype=x.dtype)


def test_an_underresolved_half_plane_geodesic_is_not_converged():
    """Tester D: with the default 16 points, (0, 0.01) → (1, 0.01) came back "converged" at length 4.47 of a true
    9.21 (the path left the half-plane), and in float32 (0, 0.05) → (1, 0.05) at 6.73 of 6.00 (it climbed to
    y = 994, where float32's Woodbury solve rounds g to 0): re-measured between the points these paths were only
    1.4–1.6 times as long, below the 2× that refuted, but that length still grew by 9–30% from 4 to 16 sub-points.
    A resolved pair, (0, 1) → (1, 1), stays converged and within 0.2% of the closed form."""
    for dtype, y in ((torch.float64, 0.01), (torch.float32, 0.05)):
        x0, x1 = torch.tensor([[0.0, y]], dtype=dtype), torch.tensor([[1.0, y]], dtype=dtype)
        with pytest.warns(UserWarning, match=r"do not resolve the metric.* grows by up to"):
            res = geodesic(HalfPlane(), x0, x1)
        assert not bool(res.converged[0])
    x0, x1 = torch.tensor([[0.0, 1.0]], dtype=torch.float64), torch.tensor([[1.0, 1.0]], dtype=torch.float64)
    good = geodesic(HalfPlane(), x0, x1)
    assert bool(good.converged[0])
    assert float(good.length[0]) == pytest.approx(math.acosh(1.5), rel=2e-3)


def test_a_zero_length_path_between_distinct_points_is_not_converged():
    """Tester D: with ``delta=0.0`` (or ends on ``y = 0``, where the default δ is 0) the half-plane's metric is
    singular along the chord and the geodesic came back with length 0 and energy 0, "converged" (the true distance
    is infinite). It is now unconverged, with a warning naming why."""
    x0, x1 = torch.tensor([[0.0, 0.0]], dtype=torch.float64), torch.tensor([[1.0, 0.0]], dtype=torch.float64)
    with pytest.warns(UserWarning, match=r"between distinct points have metric length 0.*pass delta > 0"):
        res = geodesic(HalfPlane(), x0, x1, n_points=8)
    assert float(res.length[0]) == 0.0 and not bool(res.converged[0])
    same = geodesic(HalfPlane(), x0, x0, n_points=8)  # x0 = x1: length 0 is the answer
    assert bool(same.converged[0])
