"""Derivatives of the evaluation scores (SPEC §5, §6) where a distance is exactly 0: finite, 0 at that minimum (the
subgradient ``torch.linalg.norm`` gives), not ``sqrt``'s ``x / 0 = NaN``, which one exactly fitted point spread to a
whole batch's summed score (tester D, s37). Values unchanged."""

from __future__ import annotations

import torch
from torch import Tensor

from learned_manifold.evaluation import nearest_distance, path_quality, tangent_error
from learned_manifold.geometry import projector_error
from learned_manifold.metrics.base import CoMetricField

F64 = torch.float64


class TiltingPlane(CoMetricField):
    """The factor ``[u₁, e₂, 0]`` in ``R³``, ``u₁ = (cos θ, 0, sin θ)``, ``θ = x₁x₂``: the plane ``span(e₁, e₂)``
    tilted by ``θ``, exactly that plane where ``θ = 0``. Its tangent error against ``span(e₁, e₂)`` is
    ``√2 |sin θ|``."""

    low_rank = True

    def factor(self, x: Tensor) -> Tensor:
        theta = x[:, 0] * x[:, 1]
        zero = torch.zeros_like(theta)
        u1 = torch.stack([theta.cos(), zero, theta.sin()], -1)
        e2 = torch.stack([zero, zero + 1, zero], -1)
        return torch.stack([u1, e2, torch.zeros_like(u1)], -1)


def test_tangent_error_has_gradient_zero_where_the_error_is_exactly_zero():
    """At ``θ = 0`` the error is exactly 0 and its gradient 0; the other points keep the gradient of
    ``√2 |sin θ|``, also under ``jvp``; so the batch's summed error has a finite gradient."""
    x = torch.tensor([[0.0, 0.7, 0.1], [0.3, 0.5, -0.2], [-0.4, 0.9, 0.3]], dtype=F64, requires_grad=True)
    basis = torch.eye(3, dtype=F64)[:, :2].expand(3, 3, 2)
    err = tangent_error(TiltingPlane(), x, basis)
    assert err[0] == 0
    grad = torch.autograd.grad(err.sum(), x)[0]
    theta = (x[:, 0] * x[:, 1]).detach()
    slope = 2**0.5 * theta.cos() * theta.sin().sign()  # d err / d θ away from 0
    expected = torch.stack([slope * x[:, 1].detach(), slope * x[:, 0].detach(), torch.zeros_like(theta)], -1)
    expected[0] = 0.0
    torch.testing.assert_close(grad, expected, rtol=1e-6, atol=1e-8)
    v = torch.ones_like(x)
    tangent = torch.func.jvp(lambda y: tangent_error(TiltingPlane(), y, basis), (x.detach(),), (v,))[1]
    torch.testing.assert_close(tangent, (expected * v).sum(-1), rtol=1e-6, atol=1e-8)


def test_the_projector_error_of_equal_bases_has_gradient_zero_and_its_values_are_sqrts():
    """`geometry.projector_error` (what `tangent_error` returns) is differentiable at an exact fit (derivative 0,
    where ``sqrt`` gave NaN) and equals the square root of its squared Frobenius form elsewhere."""
    g = torch.Generator().manual_seed(0)
    U = torch.linalg.qr(torch.randn(4, 5, 2, generator=g, dtype=F64)).Q.requires_grad_(True)
    V = torch.linalg.qr(torch.randn(4, 5, 2, generator=g, dtype=F64)).Q
    W = torch.cat([U[:2].detach(), V[2:]])  # the first two rows fit exactly
    err = projector_error(U, W)
    (grad,) = torch.autograd.grad(err.sum(), U)
    assert torch.isfinite(grad).all() and grad[:2].abs().max() < 1e-12 and grad[2:].abs().max() > 1e-3
    P, Q = U @ U.transpose(-1, -2), W @ W.transpose(-1, -2)
    torch.testing.assert_close(err, (P - Q).flatten(1).norm(dim=-1), rtol=1e-10, atol=1e-7)


def test_nearest_distance_has_gradient_zero_on_a_data_point():
    """A query on a data point: distance 0, gradient 0; the other queries keep the unit vector away from their
    nearest point."""
    data = torch.tensor([[0.0, 0.0], [3.0, 4.0]], dtype=F64)
    x = torch.tensor([[3.0, 4.0], [0.6, 0.8]], dtype=F64, requires_grad=True)
    d = nearest_distance(x, data)
    torch.testing.assert_close(d, torch.tensor([0.0, 1.0], dtype=F64), rtol=0, atol=0)
    grad = torch.autograd.grad(d.sum(), x)[0]
    torch.testing.assert_close(grad, torch.tensor([[0.0, 0.0], [0.6, 0.8]], dtype=F64))


class Plane:
    """The plane itself: distance 0, straight-line geodesics."""

    def distance(self, x: Tensor) -> Tensor:
        return torch.zeros(x.shape[0], dtype=x.dtype)

    def geodesic_distance(self, x0: Tensor, x1: Tensor) -> Tensor:
        return (x1 - x0).norm(dim=-1).detach()


def test_path_scores_left_out_or_zero_have_finite_gradients():
    """A closed path (ends coincide: no length ratio, NaN) and a path with a repeated point and its end on the
    target: the length ratio's NaN row gets gradient 0 under ``nansum``, the zero-length segment and the zero gap 0;
    the other path keeps its gradient."""
    path = torch.tensor([[[0.0, 0.0], [1.0, 0.0], [0.0, 0.0]], [[0.0, 0.0], [0.0, 0.0], [3.0, 4.0]]], dtype=F64,
                        requires_grad=True)
    q = path_quality(path, manifold=Plane(), target=path.detach()[:, -1])
    assert q.length_ratio[0].isnan() and q.length_ratio[1] == 1 and (q.endpoint_gap == 0).all()
    grad = torch.autograd.grad(q.length_ratio.nansum() + q.endpoint_gap.sum(), path)[0]
    assert torch.isfinite(grad).all() and (grad[0] == 0).all()
    torch.testing.assert_close(grad[1], torch.tensor([[0.0, 0.0], [-0.12, -0.16], [0.12, 0.16]], dtype=F64))
