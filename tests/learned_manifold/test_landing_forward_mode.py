"""``torch.func.jvp``/``jacfwd`` through `LearnedDataManifold`'s ``retr`` and ``projx`` with ``landing=True`` (the
landing iterations, under ``no_grad``), ``proju`` and ``egrad2rgrad`` on hand-made fields whose Gram has tied
eigenvalues: the sphere's exact projector ``I − n̂n̂ᵀ`` (eigenvalues 1, 1, 0 everywhere; an outside tester's
field, `landing.land` had given NaN tangents) and a field tied at some points only. A tie inside the tangent space
leaves the tangent projector smooth, so every tangent is finite and equals central differences (float64)."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor

from learned_manifold import LearnedDataManifold
from learned_manifold.metrics.base import CoMetricField

F64 = torch.float64


class ProjectorSphere(CoMetricField):
    """S² in R³: the factor is the exact tangent projector ``I − n̂n̂ᵀ`` (``(B, 3, 3)``), the denoiser ``x / |x|``."""

    dim, low_rank = 3, True

    def factor(self, x: Tensor) -> Tensor:
        n = torch.nn.functional.normalize(x, dim=-1)
        return torch.eye(3, dtype=x.dtype) - n.unsqueeze(-1) * n.unsqueeze(-2)

    def project(self, x: Tensor) -> Tensor:
        return torch.nn.functional.normalize(x, dim=-1)

    @property
    def can_project(self) -> bool:
        return True


class SometimesTied(ProjectorSphere):
    """`ProjectorSphere` plus ``max(x₃, 0)² t tᵀ`` with ``t = (I − n̂n̂ᵀ) e₁``: the two tangent eigenvalues tie
    exactly where ``x₃ ≤ 0`` and differ elsewhere (the same tangent space)."""

    def factor(self, x: Tensor) -> Tensor:
        P = super().factor(x)
        t = P[..., 0]  # P e₁, (B, 3)
        s = x[..., 2].clamp_min(0) ** 2
        return P + s[:, None, None] * t.unsqueeze(-1) * t.unsqueeze(-2)


def _points() -> tuple[Tensor, Tensor, Tensor]:
    """Six points on the unit sphere, three with ``x₃ < 0`` and three with ``x₃ > 0``; vectors and tangents."""
    g = torch.Generator().manual_seed(0)
    x = torch.nn.functional.normalize(torch.randn(6, 3, generator=g, dtype=F64), dim=-1)
    x[:, 2] = torch.tensor([-0.5, -0.3, -0.7, 0.4, 0.6, 0.2], dtype=F64)
    x = torch.nn.functional.normalize(x, dim=-1)
    return x, 0.2 * torch.randn(6, 3, generator=g, dtype=F64), torch.randn(6, 3, generator=g, dtype=F64)


def _queries(M: LearnedDataManifold, x: Tensor, v: Tensor) -> dict:
    """The maps to differentiate and the point of each: ``v`` the step, ``x`` the point."""
    u = M.proju(x, v)
    return {"retr in the step": (lambda w: M.retr(x, w), u),
            "retr in the point": (lambda y: M.retr(y, u), x),
            "projx": (M.projx, 1.05 * x),
            "proju in the point": (lambda y: M.proju(y, v), x),
            "egrad2rgrad in the point": (lambda y: M.egrad2rgrad(y, v), x)}


@pytest.mark.parametrize("field", [ProjectorSphere, SometimesTied])
@pytest.mark.parametrize("tangent_dim", [2, None])
def test_forward_mode_through_landing_and_projections_matches_differences(field, tangent_dim):
    """``torch.func.jvp`` and ``jacfwd`` agree, are finite, and equal central differences, and the value under
    ``jvp`` is the plain call's."""
    M = LearnedDataManifold(field(), landing=True, tangent_dim=tangent_dim)
    x, v, dx = _points()
    if field is SometimesTied:  # tied (to rounding) at the first three points, 0.04 or more apart at the others
        values = M.tangent_space(x)[0]
        gaps = values[:, 0] - values[:, 1]
        assert (gaps[:3] < 1e-14).all() and (gaps[3:] > 0.04).all()
    for name, (f, p) in _queries(M, x, v).items():
        value, tangent = torch.func.jvp(f, (p,), (dx,))
        assert torch.isfinite(tangent).all(), name
        torch.testing.assert_close(value, f(p), rtol=0, atol=1e-14, msg=name)
        h = 1e-6
        expected = (f(p + h * dx) - f(p - h * dx)) / (2 * h)
        torch.testing.assert_close(tangent, expected, rtol=0, atol=1e-7, msg=name)
        jac = torch.func.jacfwd(f)(p)  # (6, 3, 6, 3)
        torch.testing.assert_close(torch.einsum("bixj,xj->bi", jac, dx), tangent, rtol=0, atol=1e-12, msg=name)


def test_the_reported_jvp_through_a_landing_retraction_is_the_closed_form():
    """The tester's call: ``retr(x, u)`` lands ``m = x + P_x u`` on the sphere, ``m / |m|`` (one normal step), whose
    derivative in ``u`` along ``w`` is ``(I − m̂m̂ᵀ) P_x w / |m|``."""
    M = LearnedDataManifold(ProjectorSphere(), landing=True, tangent_dim=2)
    x, v, _ = _points()
    u = M.proju(x, v)
    w = torch.ones_like(u)
    _, tangent = torch.func.jvp(lambda s: M.retr(x, s), (u,), (w,))
    m, along = x + u, w - (x * w).sum(-1, keepdim=True) * x  # (x on the unit sphere: P_x = I − xxᵀ)
    n = m / m.norm(dim=-1, keepdim=True)
    expected = (along - (n * along).sum(-1, keepdim=True) * n) / m.norm(dim=-1, keepdim=True)
    torch.testing.assert_close(tangent, expected, rtol=0, atol=1e-10)
