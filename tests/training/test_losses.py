"""Training losses (SPEC §3) against their dense forms and the exact posterior."""

import torch

from learned_manifold.models import MetricModel, ModelConfig
from learned_manifold_training.losses import (
    DenoiserLoss,
    MetricMatchingLoss,
    centred_cdc_vjp,
    frobenius_full,
    frobenius_lowrank,
    jacobian_matching,
)


def test_lowrank_loss_equals_full_loss_minus_a4():
    g = torch.Generator().manual_seed(0)
    A = torch.randn(8, 6, 3, generator=g, dtype=torch.float64)
    a = torch.randn(8, 6, generator=g, dtype=torch.float64)
    torch.testing.assert_close(frobenius_lowrank(A, a), frobenius_full(A, a) - a.pow(2).sum(-1) ** 2,
                               rtol=1e-12, atol=1e-10)


def test_tikhonov_loss_equals_full_loss_minus_its_constant():
    g = torch.Generator().manual_seed(1)
    A = torch.randn(8, 6, 3, generator=g, dtype=torch.float64)
    a = torch.randn(8, 6, generator=g, dtype=torch.float64)
    lam, D = 0.37, 6
    a2 = a.pow(2).sum(-1)
    const = lam**2 * D - 2 * lam * a2 + a2**2
    torch.testing.assert_close(frobenius_lowrank(A, a, lam), frobenius_full(A, a, lam) - const, rtol=1e-12, atol=1e-10)


class ExactDenoiser(MetricModel):
    """Noise prediction of the exact posterior mean of a finite point set (standardised units = data units)."""

    def __init__(self, points):
        super().__init__(ModelConfig(data_shape=(points.shape[1],), rank=2, arch_kwargs={"hidden": 8, "depth": 1,
                                                                                          "emb_dim": 8}))
        self.points = points

    def posterior(self, y, sigma):
        logits = -((y[:, None] - self.points[None]) ** 2).sum(-1) / (2 * sigma[:, None] ** 2)
        return logits.softmax(-1)

    def noise_z(self, y, sigma):
        xhat = self.posterior(y, sigma) @ self.points
        return (y - xhat) / sigma[:, None]


def test_centred_target_has_conditional_expectation_cov_over_sigma2():
    """E[a aᵀ | y] = Cov[x | y]/σ² for a = (x − x̂)/σ: enumerate x over a finite set with its exact posterior."""
    g = torch.Generator().manual_seed(2)
    points = torch.randn(5, 3, generator=g, dtype=torch.float64)
    model = ExactDenoiser(points).double()
    y = torch.randn(1, 3, generator=g, dtype=torch.float64)
    sigma = torch.tensor([0.7], dtype=torch.float64)
    w = model.posterior(y, sigma)[0]  # p(x_j | y)
    loss = MetricMatchingLoss(centred=True)
    eps = (y - points) / sigma  # the noise that takes x_j to y
    a = loss.target(model, y.expand(5, 3), sigma.expand(5), eps)
    second_moment = torch.einsum("j,ji,jk->ik", w, a, a)
    mean = w @ points
    cov = torch.einsum("j,ji,jk->ik", w, points - mean, points - mean)
    torch.testing.assert_close(second_moment, cov / sigma**2)
    # the uncentred target's moment is Γ_σ(y) = E[εεᵀ|y] = Cov/σ² + m mᵀ, m = E[ε | y] (SPEC §2)
    a_unc = MetricMatchingLoss(centred=False).target(model, y.expand(5, 3), sigma.expand(5), eps)
    m = w @ eps
    torch.testing.assert_close(torch.einsum("j,ji,jk->ik", w, a_unc, a_unc), cov / sigma**2 + torch.outer(m, m))


def test_denoiser_loss_is_zero_for_a_perfect_noise_prediction():
    class Oracle(MetricModel):
        def noise_z(self, y, sigma):
            return self.eps

    model = Oracle(ModelConfig(data_shape=(3,), rank=1, arch_kwargs={"hidden": 8, "depth": 1, "emb_dim": 8}))
    z, eps = torch.randn(4, 3), torch.randn(4, 3)
    model.eps = eps
    assert DenoiserLoss()(model, z, torch.ones(4), eps).abs().max() == 0
    model.eps = eps + 1.0
    torch.testing.assert_close(DenoiserLoss()(model, z, torch.ones(4), eps), torch.ones(4))


def test_matching_loss_full_and_lowrank_have_the_same_gradient():
    torch.manual_seed(0)
    model = MetricModel(ModelConfig(data_shape=(4,), rank=4, centred=False,
                                    arch_kwargs={"hidden": 8, "depth": 1, "emb_dim": 8}))
    z, s, eps = torch.randn(6, 4), torch.rand(6) + 0.1, torch.randn(6, 4)
    grads = []
    for kind in ("full", "lowrank"):
        model.zero_grad()
        MetricMatchingLoss(kind=kind, centred=False)(model, z, s, eps).sum().backward()
        grads.append(model.factor_net.head.weight.grad.clone())
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-4, atol=1e-7)


def test_denoiser_jacobian_product_is_the_posterior_covariance_over_sigma2():
    """Tweedie (SPEC §2): ``(∂x̂/∂y) v = Cov[x | y] v / σ²`` for the exact posterior mean of a finite point set,
    at per-point bandwidths: the Jacobian target of ``factor_target="jacobian"``."""
    g = torch.Generator().manual_seed(3)
    points = torch.randn(7, 4, generator=g, dtype=torch.float64)
    model = ExactDenoiser(points).double()
    y = torch.randn(3, 4, generator=g, dtype=torch.float64)
    sigma = torch.tensor([0.5, 0.9, 1.3], dtype=torch.float64)
    v = torch.randn(3, 4, generator=g, dtype=torch.float64)
    w = model.posterior(y, sigma)  # (3, 7)
    mean = w @ points
    centred = points[None] - mean[:, None]  # (3, 7, 4)
    cov = torch.einsum("bj,bji,bjk->bik", w, centred, centred)
    expected = (cov @ v.unsqueeze(-1)).squeeze(-1) / sigma[:, None] ** 2
    y_in = y.clone().requires_grad_(True)
    got = centred_cdc_vjp(model.noise_z(y_in, sigma), y_in, sigma, v)  # the covariance is symmetric: Γᶜᵀv = Γᶜv
    torch.testing.assert_close(got.double(), expected, rtol=1e-5, atol=1e-6)


def test_jacobian_matching_sums_to_the_frobenius_distance_over_a_basis_of_probes():
    """``Σ_i ‖(AAᵀ − J) e_i‖² = ‖AAᵀ − J‖²_F``, the identity behind the loss's unbiasedness for ``v ~ N(0, I)``;
    and the loss vanishes exactly when ``AAᵀ = J``."""
    g = torch.Generator().manual_seed(4)
    A = torch.randn(2, 5, 3, generator=g, dtype=torch.float64)
    J = torch.randn(2, 5, 5, generator=g, dtype=torch.float64)
    eye = torch.eye(5, dtype=torch.float64)
    total = sum(jacobian_matching(A, eye[i].expand(2, 5), J[:, :, i]).double() for i in range(5))
    dense = (A @ A.transpose(1, 2) - J).pow(2).sum(dim=(1, 2))
    torch.testing.assert_close(total, dense, rtol=1e-5, atol=1e-5)
    v = torch.randn(2, 5, generator=g, dtype=torch.float64)
    exact = (A @ A.transpose(1, 2) @ v.unsqueeze(-1)).squeeze(-1)
    assert float(jacobian_matching(A, v, exact).max()) < 1e-8
    lam = 0.3  # with a Tikhonov term the loss measures G = AAᵀ + λ_T I against J (SPEC §1)
    total = sum(jacobian_matching(A, eye[i].expand(2, 5), J[:, :, i], lam).double() for i in range(5))
    torch.testing.assert_close(total, (A @ A.transpose(1, 2) + lam * eye - J).pow(2).sum(dim=(1, 2)),
                               rtol=1e-5, atol=1e-5)


def test_the_transposed_jacobian_is_as_far_from_a_symmetric_factor():
    """``‖AAᵀ − Jᵀ‖_F = ‖AAᵀ − J‖_F`` for any ``J``: summed over a basis of probes, matching ``Jᵀv`` measures the
    same distance as matching ``Jv`` (why the trainer may read the cheaper reverse-mode product)."""
    g = torch.Generator().manual_seed(5)
    A = torch.randn(2, 5, 3, generator=g, dtype=torch.float64)
    J = torch.randn(2, 5, 5, generator=g, dtype=torch.float64)
    eye = torch.eye(5, dtype=torch.float64)
    forward = sum(jacobian_matching(A, eye[i].expand(2, 5), J[:, :, i]).double() for i in range(5))
    transposed = sum(jacobian_matching(A, eye[i].expand(2, 5), J[:, i, :]).double() for i in range(5))
    torch.testing.assert_close(transposed, forward, rtol=1e-5, atol=1e-5)  # the loss computes in float32


def test_the_reverse_mode_target_is_the_transposed_denoiser_jacobian():
    """`centred_cdc_vjp` on the first 2 rows of a batch of 3 equals ``(I − σ ∂F/∂y)ᵀ v`` from the dense Jacobian
    of a random network (float64), whose Jacobian is not symmetric."""
    torch.manual_seed(6)
    model = MetricModel(ModelConfig(data_shape=(4,), rank=2, arch_kwargs={"hidden": 16, "depth": 2,
                                                                          "emb_dim": 8})).double()
    g = torch.Generator().manual_seed(7)
    y = torch.randn(3, 4, generator=g, dtype=torch.float64)
    sigma = torch.tensor([0.3, 0.8, 1.1], dtype=torch.float64)
    v = torch.randn(2, 4, generator=g, dtype=torch.float64)
    dense = torch.stack([torch.autograd.functional.jacobian(
        lambda u, i=i: model.noise_z(u[None], sigma[i:i + 1])[0], y[i]) for i in range(2)])
    gamma = torch.eye(4, dtype=torch.float64) - sigma[:2, None, None] * dense
    assert (gamma - gamma.transpose(1, 2)).abs().max() > 1e-3
    y_in = y.clone().requires_grad_(True)
    noise = model.noise_z(y_in, sigma)
    got = centred_cdc_vjp(noise[:2], y_in, sigma[:2], v)
    torch.testing.assert_close(got.double(), (gamma.transpose(1, 2) @ v[..., None]).squeeze(-1), rtol=1e-5, atol=1e-6)
