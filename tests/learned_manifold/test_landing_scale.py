"""The scales landing works at (`learned_manifold.landing_scale`): a field that names no σ lands to a tolerance
relative to the data's scale, not to 1e-4 in data units (tester D, s36, item 1), but decides near/far at the
field's own σ (else 1), never the points' (review s36, item 6); the rounding floor of the residual is measured from
the data's centre for a `KNNCDC` too, not from the origin (tester D, s36, item 3), where `KNNCDC.project` also sums
(review s36, item 6b)."""

import math
import warnings

import torch
from torch import Tensor

from learned_manifold import LearnedDataManifold
from learned_manifold.landing import residual_rounding
from learned_manifold.landing_scale import landing_sigma, points_sigma
from learned_manifold.metrics import KNNCDC
from learned_manifold.metrics.base import CoMetricField

F64 = torch.float64


class SphereWithoutSigma(CoMetricField):
    """The sphere ``|x − c| = ρ`` in R⁵ with no ``sigma`` attribute and no bandwidths: the tangent projector as
    factor ``(B, 5, 5)``, the radial projection as landing projection."""

    low_rank, dim = True, 5

    def __init__(self, c: Tensor, rho: float):
        super().__init__()
        self.c, self.rho = c, rho

    def factor(self, x: Tensor) -> Tensor:
        n = torch.nn.functional.normalize(x - self.c, dim=-1)
        return torch.eye(5, dtype=x.dtype) - n.unsqueeze(-1) * n.unsqueeze(-2)

    def project(self, x: Tensor) -> Tensor:
        return self.c + self.rho * torch.nn.functional.normalize(x - self.c, dim=-1)

    @property
    def can_project(self) -> bool:
        return True


def test_a_field_without_sigma_lands_to_a_tolerance_relative_to_its_data_scale():
    """Tangent steps of 10% of the radius leave points ~5e-3 ρ off the sphere: with σ = 1 in data units a sphere
    of radius 1e-3 accepted them unmoved (4e-2 ρ off). Every radius now lands to rounding, batch or single point."""
    g = torch.Generator().manual_seed(0)
    for rho in (1.0, 1e-3, 1e-6):
        c = torch.full((5,), 3.0 * rho, dtype=F64)
        M = LearnedDataManifold(SphereWithoutSigma(c, rho), landing=True, tangent_dim=4)
        x = c + rho * torch.nn.functional.normalize(torch.randn(6, 5, generator=g, dtype=F64), dim=-1)
        u = M.proju(x, 0.1 * rho * torch.randn(6, 5, generator=g, dtype=F64))
        for y in (M.retr(x, u), M.retr(x[:1], u[:1])):
            off = ((y - c).norm(dim=-1) - rho).abs().max() / rho
            assert off < 1e-12, (rho, float(off))


def test_the_points_scale_of_a_field_without_sigma_or_data_follows_the_points_units():
    """`points_sigma` (the tolerance's scale only): the batch's RMS spread, or one point's way to the data;
    scaling the points by 1e-3 scales it by 1e-3; points all on the data (nothing to land): 1."""
    x = torch.eye(5, dtype=F64)[:2] * 1.1  # two points 0.1 outside the unit sphere, 1.1·√2 apart
    moved = torch.full((2,), 0.1, dtype=F64)
    assert math.isclose(float(points_sigma(x, moved)), 1.1 / math.sqrt(2), rel_tol=1e-12)
    assert math.isclose(float(points_sigma(1e-3 * x, 1e-3 * moved)), 1.1e-3 / math.sqrt(2), rel_tol=1e-12)
    assert math.isclose(float(points_sigma(1e-3 * x[:1], 1e-3 * moved[:1])), 1e-4, rel_tol=1e-9)
    assert float(points_sigma(x[:1] / 1.1, moved[:1] * 0)) == 1.0


def test_the_sigma_landing_decides_at_is_the_fields_own_or_one_never_the_points():
    """`landing_sigma` takes no points: a field that names no σ and holds no data decides at 1 (as before s36),
    one that holds data at their scale."""
    assert landing_sigma(SphereWithoutSigma(torch.zeros(5, dtype=F64), 1e-3)) == 1.0
    assert landing_sigma(_circle_field(0.0, sigma=0.05)) == 0.05


class DriftingCircle(CoMetricField):
    """The unit circle with no σ; its denoiser also turns a point off the circle by 5 rad per unit of its radial
    error (a model's pull along the data), so full denoiser steps move it along the circle, normal ones do not."""

    low_rank, dim = True, 2

    def factor(self, x: Tensor) -> Tensor:
        return (torch.stack([-x[:, 1], x[:, 0]], -1) / x.norm(dim=-1, keepdim=True)).unsqueeze(-1)

    def project(self, x: Tensor) -> Tensor:
        a = torch.atan2(x[:, 1], x[:, 0]) + 5.0 * (x.norm(dim=-1) - 1)
        return torch.stack([a.cos(), a.sin()], -1)

    @property
    def can_project(self) -> bool:
        return True


def test_a_point_lands_the_same_alone_as_in_a_batch_on_a_field_without_sigma():
    """A point 0.05 off the circle is near it (σ = 1) alone and in a batch: normal-only landing keeps its angle.
    With σ taken from the points (review s36, item 6), alone it counted as far, took full steps and ended 14.3°
    along the circle."""
    M = LearnedDataManifold(DriftingCircle(), landing=True, tangent_dim=1)
    p = torch.tensor([[1.05, 0.0]], dtype=F64)
    others = torch.tensor([[0.0, 1.0], [-1.0, 0.0], [0.0, -1.0]], dtype=F64)
    alone, batch = M.projx(p), M.projx(torch.cat([p, others]))[:1]
    for y in (alone, batch):
        assert abs(float(y[0, 1])) < 1e-12 and abs(float(y.norm()) - 1) < 1e-4, y  # (landing_tol · 1)


class UnitSphere(CoMetricField):
    """The unit sphere in R³ with no σ and no data: tangent projector, radial projection; counts `project` calls."""

    low_rank, dim = True, 3

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def factor(self, x: Tensor) -> Tensor:
        n = torch.nn.functional.normalize(x, dim=-1)
        return torch.eye(3, dtype=x.dtype) - n.unsqueeze(-1) * n.unsqueeze(-2)

    def project(self, x: Tensor) -> Tensor:
        self.calls += 1
        return torch.nn.functional.normalize(x, dim=-1)

    @property
    def can_project(self) -> bool:
        return True


def test_a_float32_point_on_a_hand_made_sphere_lands_silently_with_one_denoiser_call():
    """A float32 point on the unit sphere up to rounding (its correction 1.3e-7) is returned unmoved, without the
    resolution warning that a σ of its own correction raised (review s36, item 6), and with one call of the
    field's denoiser (the points' scale comes from landing's own first pass)."""
    field = UnitSphere()
    M = LearnedDataManifold(field, landing=True, tangent_dim=2)
    pts = torch.nn.functional.normalize(torch.randn(200, 3, generator=torch.Generator().manual_seed(0)), dim=-1)
    x = pts[(field.project(pts) - pts).norm(dim=-1).argmax()].unsqueeze(0)
    assert float((field.project(x) - x).norm()) > 0  # not exactly a fixed point: it has a correction of its own
    field.calls = 0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        y = M.projx(x)
    assert torch.equal(y, x) and field.calls == 1


def _circle_field(offset: float, n: int = 2000, sigma: float = 0.05) -> KNNCDC:
    th = torch.linspace(0, 2 * math.pi, n + 1, dtype=F64)[:-1]
    return KNNCDC((torch.stack([th.cos(), th.sin()], -1) + offset).float(), k=32, sigma=sigma)


def test_residual_rounding_of_a_knn_field_is_measured_from_its_data_not_the_origin():
    """A float32 unit circle at 5,000: ``64 ε |x|_∞`` = 0.038 exceeded σ/3; about the data's centre the floor is
    the coordinates' few ulps (2 √2 ε · 5,000 = 1.7e-3) plus ``64 ε`` times the radius."""
    field = _circle_field(5000.0)
    x = torch.tensor([[5001.0, 5000.0], [5000.0, 4998.9]])
    floor = residual_rounding(field, x, torch.finfo(torch.float32).eps)
    eps = torch.finfo(torch.float32).eps
    assert float(floor.max()) <= 2 * math.sqrt(2) * eps * 5001 + 64 * eps * 1.2
    assert float(floor.max()) < 0.05 / 10  # (0.038 before)


def test_a_float32_knn_field_far_from_the_origin_lands_points_a_third_of_sigma_off():
    """Points σ/3 = 0.017 outside a float32 k-NN circle at 5,000 came back unmoved, silently; they land as at the
    origin now, to the field's own bias plus float32's spacing there (4.9e-4)."""
    sigma = 0.05
    M = LearnedDataManifold(_circle_field(5000.0, sigma=sigma), landing=True, tangent_dim=1)
    a = torch.linspace(0.3, 5.9, 5, dtype=F64)
    x = ((1 + sigma / 3) * torch.stack([a.cos(), a.sin()], -1) + 5000.0).float()
    y = M.projx(x).double()
    assert float(((y - 5000.0).norm(dim=-1) - 1).abs().max()) < 2.5e-3


def test_a_float32_knn_field_far_from_the_origin_lands_with_many_neighbours():
    """k = 64 float32 points at 5,000, summed about 0, rounded `project` beyond landing's floor: these two batches
    of 200 points 2% off the circle raised "did not land in 200 steps" (review s36, item 6b). They land now."""
    for seed in (0, 2):
        g = torch.Generator().manual_seed(seed)
        t = torch.rand(3000, generator=g) * 2 * math.pi
        field = KNNCDC(torch.stack([t.cos(), t.sin()], 1) + 5e3, k=64, sigma=0.05)
        s = torch.rand(200, generator=g) * 2 * math.pi
        x = torch.stack([s.cos(), s.sin()], 1) * (1 + 0.02 * torch.randn(200, 1, generator=g)) + 5e3
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            y = LearnedDataManifold(field, landing=True, tangent_dim=1).projx(x)
        assert float(((y - 5e3).norm(dim=-1) - 1).abs().max()) < 5e-3
