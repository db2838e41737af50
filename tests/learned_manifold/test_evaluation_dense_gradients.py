"""Gradients through the dense route of `field_eigenpairs` (SPEC §5) where eigenvalues tie exactly: a field without a
low-rank factor (the score fields, a user's full-rank field) gets the low-rank route's convention (`spectral_grad`):
finite, exact gradients of projectors and restricted powers of ``G`` that do not split a tie (tester B, s35: a Stein
score metric ``I − c s sᵀ``, tied at 1, gave NaN gradients through `LearnedDataManifold.tangent_space`)."""

from __future__ import annotations

import torch
from torch import Tensor

from learned_manifold import LearnedDataManifold
from learned_manifold.evaluation import field_eigenpairs
from learned_manifold.geometry import spectral_apply
from learned_manifold.metrics.base import CoMetricField

F64 = torch.float64


class TiedSphere(CoMetricField):
    """``G(x) = I − ½ n̂n̂ᵀ``, ``n̂ = x/|x|`` in ``R³``, without a low-rank factor: eigenvalues 1, 1 (exactly tied), ½;
    the projector onto the top two eigenvectors is ``I − n̂n̂ᵀ``."""

    def apply(self, x: Tensor, w: Tensor) -> Tensor:
        n = x / x.norm(dim=-1, keepdim=True)
        return w - 0.5 * (n * w).sum(-1, keepdim=True) * n

    def metric(self, x: Tensor, v: Tensor) -> Tensor:  # pragma: no cover - not used here
        raise NotImplementedError


class TiedBlock(CoMetricField):
    """``G(x) = [[1, s, 0], [s, 1, 0], [0, 0, ½]]`` with ``s = x₂`` (dense only): at ``x₂ = 0`` the top two eigenvalues
    tie at 1 and split as ``1 ± s``, while their eigenspace ``span(e₁, e₂)`` stays put, so ``G₂ = Û₂ Λ₂ Û₂ᵀ`` is the
    upper 2 × 2 block of ``G``: its derivative lies within the tied block."""

    def apply(self, x: Tensor, w: Tensor) -> Tensor:
        s = x[..., 1:2]
        return torch.cat([w[..., :1] + s * w[..., 1:2], s * w[..., :1] + w[..., 1:2], 0.5 * w[..., 2:]], -1)

    def metric(self, x: Tensor, v: Tensor) -> Tensor:  # pragma: no cover - not used here
        raise NotImplementedError


def finite_differences(loss, x: Tensor, h: float = 1e-6) -> Tensor:
    """Central differences of the scalar ``loss`` in every coordinate of ``x`` ``(B, D)`` (float64)."""
    out = torch.zeros_like(x)
    for i in range(x.shape[0]):
        for j in range(x.shape[1]):
            e = torch.zeros_like(x)
            e[i, j] = h
            out[i, j] = (loss(x + e) - loss(x - e)) / (2 * h)
    return out


def projector_loss(vectors: Tensor, c: Tensor) -> Tensor:
    """``Σ_b |U₂U₂ᵀ c|²`` for the top two eigenvectors ``U₂`` of each point's ``(B, 3, 3)`` ``vectors``."""
    top = vectors[..., :2]
    return (top @ (top.transpose(-1, -2) @ c.unsqueeze(-1))).square().sum()


def test_the_tangent_projector_of_a_dense_field_with_tied_eigenvalues_has_the_finite_differences_gradient():
    x0 = torch.randn(5, 3, generator=torch.Generator().manual_seed(0), dtype=F64)
    c = torch.tensor([0.2, -0.4, 0.9], dtype=F64)
    M = LearnedDataManifold(TiedSphere(), data_shape=(3,))
    for route in (lambda x: field_eigenpairs(TiedSphere(), x).vectors, lambda x: M.tangent_space(x)[1]):
        x = x0.clone().requires_grad_()
        grad = torch.autograd.grad(projector_loss(route(x), c), x)[0]
        with torch.no_grad():
            expected = finite_differences(lambda y, route=route: projector_loss(route(y), c), x0)
        assert torch.isfinite(grad).all()
        torch.testing.assert_close(grad, expected, rtol=1e-6, atol=1e-7)
    n = x0 / x0.norm(dim=-1, keepdim=True)  # closed form: |c|² − (n̂·c)², gradient −2 (n̂·c)(c − (n̂·c) n̂)/|x|
    nc = (n * c).sum(-1, keepdim=True)
    torch.testing.assert_close(grad, -2 * nc * (c - nc * n) / x0.norm(dim=-1, keepdim=True))


def test_a_restricted_power_of_a_dense_field_at_a_tie_has_the_derivative_within_the_tied_block():
    """``c · G₂ u`` at ``s = 0``: its derivative in ``s`` is ``c₁u₂ + c₂u₁``, carried by `Eigenpairs.within` (the
    eigenvalues' derivative alone misses the off-diagonal term of the tied block)."""
    x0 = torch.tensor([[0.3, 0.0, -0.2], [1.0, 0.0, 0.5]], dtype=F64)
    u, c = torch.tensor([0.7, -1.1, 0.4], dtype=F64), torch.tensor([0.5, 2.0, -0.3], dtype=F64)

    def loss(x: Tensor) -> Tensor:
        pairs = field_eigenpairs(TiedBlock(), x)
        return (spectral_apply(pairs, u.expand_as(x), 2, power=1) @ c).sum()

    x = x0.clone().requires_grad_()
    grad = torch.autograd.grad(loss(x), x)[0]
    with torch.no_grad():
        expected = finite_differences(loss, x0)
    torch.testing.assert_close(expected[:, 1], torch.full((2,), float(c[0] * u[1] + c[1] * u[0]), dtype=F64))
    torch.testing.assert_close(grad, expected, rtol=1e-6, atol=1e-7)


def test_float32_tied_gradients_are_finite_and_match_float64_and_no_gradient_costs_nothing_more():
    """In float32 rounding splits the tie by ~1e-7, and the rotation term (rounding / split) had been O(1) wrong;
    without a gradient the plain ``eigh`` runs (no `Eigenpairs.within`), with the same values."""
    x0 = torch.randn(6, 3, generator=torch.Generator().manual_seed(1), dtype=F64)
    c = torch.tensor([0.2, -0.4, 0.9], dtype=F64)
    grads = []
    for dtype in (torch.float32, F64):
        x = x0.to(dtype).requires_grad_()
        pairs = field_eigenpairs(TiedSphere(), x)
        grads.append(torch.autograd.grad(projector_loss(pairs.vectors, c.to(dtype)), x)[0])
    assert torch.isfinite(grads[0]).all()
    torch.testing.assert_close(grads[0].double(), grads[1], rtol=1e-3, atol=1e-4)
    assert pairs.within is not None
    with torch.no_grad():
        plain = field_eigenpairs(TiedSphere(), x0)
    assert plain.within is None
    torch.testing.assert_close(plain.values, field_eigenpairs(TiedSphere(), x0.requires_grad_()).values.detach())
