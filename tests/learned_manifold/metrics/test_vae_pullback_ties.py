"""`VAEPullbackMetric.apply` (``M^{-1} w``, SPEC §11) and ``log_volume`` where ``M`` has tied eigenvalues.

A decoder whose Jacobian is an isometry at a point (or vanishes there, ``M = εI``) makes ``M``'s eigenvalues tie;
``M^{-1} w`` is smooth there, but a plain ``eigh``'s derivative divides by ``λ_i − λ_j``: NaN gradients at an exact
tie (tester D, p02). The decoder below has a closed-form pullback, so the derivatives are checked against the exact
ones: ``μ(z) = [u₀ + u₀², u₁, 0, …]`` with ``u = Q z``, so ``M(z) = Qᵀ diag((1 + 2u₀)², 1) Q + εI``, tied at
``u₀ = 0``.
"""

import math

import pytest
import torch
from torch import nn

from learned_manifold import LearnedDataManifold
from learned_manifold.metrics import VAEPullbackMetric
from learned_manifold.vae import VAE, VAEConfig

EPS = 0.1


class _Bend(nn.Module):
    """``z ↦ [u₀ + u₀², u₁, 0, …, 0]`` in ``R^10``, ``u = Q z`` (standardised units; the VAE's scale is 1)."""

    def __init__(self, Q: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("Q", Q)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        u = z @ self.Q.T
        return torch.cat([u[:, :1] + u[:, :1] ** 2, u[:, 1:], torch.zeros(z.shape[0], 8, dtype=z.dtype)], -1)


def _field(angle: float) -> tuple[VAEPullbackMetric, torch.Tensor]:
    c, s = math.cos(angle), math.sin(angle)
    Q = torch.tensor([[c, -s], [s, c]], dtype=torch.float64)
    vae = VAE(VAEConfig(data_shape=(10,), latent_dim=2, hidden=8)).double()
    vae.decoder = _Bend(Q)  # std_weights are 0: a constant decoder std, J_σ = 0
    return VAEPullbackMetric(vae, eps=EPS), Q


def _exact_apply(z: torch.Tensor, w: torch.Tensor, Q: torch.Tensor) -> torch.Tensor:
    """``M(z)^{-1} w`` in closed form, differentiable in ``z``: ``(B, 2)`` → ``(B, 2)``."""
    u = z @ Q.T
    scale = torch.stack([1.0 / ((1 + 2 * u[:, 0]) ** 2 + EPS), torch.full_like(u[:, 0], 1.0 / (1 + EPS))], -1)
    return (scale * (w @ Q.T)) @ Q


def _points(Q: torch.Tensor) -> torch.Tensor:
    """An exact tie (``u₀ = 0``), two near ties (``u₀ = 1e-9``, ``1e-6``) and no tie (``u₀ = 0.3``), ``(4, 2)``."""
    u = torch.tensor([[0.0, 0.7], [1e-9, -0.4], [1e-6, 0.2], [0.3, 1.1]], dtype=torch.float64)
    return u @ Q


@pytest.mark.parametrize("angle", [0.0, 0.5])  # 0: the tie is exact in floats; 0.5: split by rounding
def test_apply_gradient_is_finite_and_exact_at_and_near_a_tie(angle):
    field, Q = _field(angle)
    z = _points(Q)
    w = torch.tensor([[1.0, -2.0], [0.5, 0.3], [-1.2, 0.8], [0.4, 0.9]], dtype=torch.float64)
    c = torch.tensor([1.0, -0.7], dtype=torch.float64)
    zz = z.clone().requires_grad_()
    got, = torch.autograd.grad((field.apply(zz, w) * c).sum(), zz)
    zz = z.clone().requires_grad_()
    want, = torch.autograd.grad((_exact_apply(zz, w, Q) * c).sum(), zz)
    assert torch.isfinite(got).all()
    assert torch.allclose(got, want, rtol=1e-9, atol=1e-12)
    assert want[:3].abs().amax() > 0.1  # the tie carries a real (non-zero) derivative
    # through a manifold on the field, as an optimiser sees it
    zz = z.clone().requires_grad_()
    via, = torch.autograd.grad((LearnedDataManifold(field).egrad2rgrad(zz, w) * c).sum(), zz)
    assert torch.allclose(via, want, rtol=1e-9, atol=1e-12)
    # forward mode gives the same directional derivative
    v = torch.tensor([[0.6, -0.8]], dtype=torch.float64).expand_as(z).contiguous()
    _, jvp = torch.func.jvp(lambda p: field.apply(p, w), (z,), (v,))
    _, jvp_exact = torch.func.jvp(lambda p: _exact_apply(p, w, Q), (z,), (v,))
    assert torch.allclose(jvp, jvp_exact, rtol=1e-9, atol=1e-12)


def test_apply_gradient_matches_finite_differences_at_a_tie():
    field, Q = _field(0.0)
    z, w = _points(Q)[:1], torch.tensor([[1.0, -2.0]], dtype=torch.float64)
    zz = z.clone().requires_grad_()
    got, = torch.autograd.grad(field.apply(zz, w)[:, 0].sum(), zz)
    h = 1e-6
    for i in range(2):
        e = torch.zeros_like(z)
        e[:, i] = h
        fd = (field.apply(z + e, w) - field.apply(z - e, w))[:, 0] / (2 * h)
        assert torch.allclose(got[:, i], fd, rtol=1e-6, atol=1e-8)


def test_a_flat_decoder_gives_zero_gradients_not_nan():
    """``J_f = 0`` (dead decoder region): ``M = εI`` everywhere, ``M^{-1} w = w / ε`` is constant in ``z``."""
    torch.manual_seed(0)
    vae = VAE(VAEConfig(data_shape=(10,), latent_dim=2, hidden=16)).double()
    with torch.no_grad():
        vae.decoder[-1].weight.zero_()
    field = VAEPullbackMetric(vae, eps=EPS)
    z = torch.randn(3, 2, dtype=torch.float64, requires_grad=True)
    w = torch.randn(3, 2, dtype=torch.float64)
    out = field.apply(z, w)
    assert torch.allclose(out, w / EPS)
    g, = torch.autograd.grad(out.sum() + field.log_volume(z).sum(), z)
    assert torch.equal(g, torch.zeros_like(g))


@pytest.mark.parametrize("angle", [0.0, 0.5])
def test_log_volume_gradient_is_exact_at_a_tie(angle):
    field, Q = _field(angle)
    z = _points(Q).requires_grad_()
    g, = torch.autograd.grad(field.log_volume(z).sum(), z)
    u0 = (z.detach() @ Q.T)[:, 0]
    exact_u = torch.stack([2 * (1 + 2 * u0) / ((1 + 2 * u0) ** 2 + EPS), torch.zeros_like(u0)], -1)
    assert torch.allclose(g, exact_u @ Q, rtol=1e-9, atol=1e-12)


def test_apply_values_are_those_of_the_plain_eigendecomposition():
    """The tie-safe route changes derivatives only: ``apply`` equals ``W Λ^{-1} Wᵀ w`` from ``eigh`` bit for bit."""
    torch.manual_seed(1)
    vae = VAE(VAEConfig(data_shape=(10,), latent_dim=3, hidden=16)).double()
    vae.std_weights.data.uniform_(0.0, 4.0)
    field = VAEPullbackMetric(vae, eps=1e-3)
    z, w = torch.randn(6, 3, dtype=torch.float64), torch.randn(6, 3, dtype=torch.float64)
    values, vectors = torch.linalg.eigh(field.pullback(z))
    coef = (vectors.transpose(-1, -2) @ w.unsqueeze(-1)) / values.unsqueeze(-1)
    assert torch.equal(field.apply(z, w), (vectors @ coef).squeeze(-1))
    assert torch.equal(field.apply(z.requires_grad_(), w), (vectors @ coef).squeeze(-1))
