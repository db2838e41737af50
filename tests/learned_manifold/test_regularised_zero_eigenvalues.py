"""`regularised.TangentBundle` (the metric `reporting_metric` gives, SPEC §5, §6) where ``G`` has eigenvalues of
exactly 0: its factor ``Û_d Λ_d^{1/2}`` had taken ``sqrt`` of them, whose backward at 0 is ``0 · ∞ = NaN``, so
every gradient through it was NaN (tester D, p03) and a geodesic in it stopped unconverged after 3 steps."""

from __future__ import annotations

import torch
from torch import Tensor

from learned_manifold import LearnedDataManifold, geodesic
from learned_manifold.metrics.base import CoMetricField
from learned_manifold.regularised import TangentBundle, reporting_metric

F64 = torch.float64


class PlaneProjector(CoMetricField):
    """The constant projector onto span(e₀, e₁) in R⁴ (eigenvalues 1, 1, 0, 0 exactly), ``δ = 0``."""

    low_rank = True
    dim = 4

    def factor(self, x: Tensor) -> Tensor:
        P = torch.diag(torch.tensor([1.0, 1.0, 0.0, 0.0], dtype=x.dtype))
        return P + 0 * x[:, :, None]


class ColumnAndZero(CoMetricField):
    """``A(x) = [a(x), 0]`` in R³, ``a(x) = (1 + x₀², x₁, 0)``: ``G = a aᵀ`` of rank 1, a zero column."""

    low_rank = True
    dim = 3

    def factor(self, x: Tensor) -> Tensor:
        a = torch.stack([1 + x[:, 0] ** 2, x[:, 1], torch.zeros_like(x[:, 0])], -1)
        return torch.stack([a, torch.zeros_like(a)], -1)


def test_the_factor_of_a_plane_projector_has_zero_gradients_and_its_values():
    x = torch.randn(3, 4, dtype=F64, generator=torch.Generator().manual_seed(0)).requires_grad_()
    A = TangentBundle(PlaneProjector(), 2).factor(x)
    P = torch.diag(torch.tensor([1.0, 1.0, 0.0, 0.0], dtype=F64))
    assert torch.allclose(A @ A.transpose(-1, -2), P.expand(3, 4, 4), atol=1e-14)
    assert torch.equal(A[..., 2:], torch.zeros_like(A[..., 2:]))
    g, = torch.autograd.grad((A * torch.randn_like(A)).sum(), x)
    assert torch.equal(g, torch.zeros_like(g))  # the factor is constant in x (it was NaN)


def test_the_factor_with_a_zero_column_has_the_exact_gradient():
    """``Â Âᵀ = a aᵀ`` (``d = 1`` by the gap rule and given): its derivative is the closed form's, finite."""
    x = torch.randn(4, 3, dtype=F64, generator=torch.Generator().manual_seed(1)).requires_grad_()
    C = torch.randn(3, 3, dtype=F64, generator=torch.Generator().manual_seed(2))
    a = ColumnAndZero().factor(x)[..., 0]
    want, = torch.autograd.grad((a.unsqueeze(-1) * a.unsqueeze(-2) * C).sum(), x)
    for tangent_dim in (None, 1):
        A = TangentBundle(ColumnAndZero(), tangent_dim).factor(x)
        assert torch.allclose(A @ A.transpose(-1, -2), a.unsqueeze(-1) * a.unsqueeze(-2), atol=1e-13)
        got, = torch.autograd.grad(((A @ A.transpose(-1, -2)) * C).sum(), x)
        assert torch.allclose(got, want, rtol=1e-10, atol=1e-12)


def test_a_manifold_and_a_geodesic_on_the_reporting_metric_of_a_projector():
    """``inner``'s gradient is finite (0: the metric is constant) and a geodesic in it converges, as on the field."""
    x = torch.randn(2, 4, dtype=F64, generator=torch.Generator().manual_seed(3)).requires_grad_()
    u = torch.randn(2, 4, dtype=F64, generator=torch.Generator().manual_seed(4))
    manifold = LearnedDataManifold(reporting_metric(PlaneProjector(), 2), tangent_dim=2)
    g, = torch.autograd.grad(manifold.inner(x, u).sum(), x)
    assert torch.equal(g, torch.zeros_like(g))
    x0, x1 = torch.zeros(1, 4, dtype=F64), torch.tensor([[1.0, 1.0, 0.0, 0.0]], dtype=F64)
    result = geodesic(reporting_metric(PlaneProjector(), 2), x0, x1, n_points=9)
    assert bool(result.converged.all())
    assert torch.allclose(result.length, torch.tensor([2**0.5], dtype=F64))
