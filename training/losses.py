"""Training losses (SPEC §3). Each loss is a small object holding its settings and returning a per-sample
loss; reduction belongs to the training loop.

Notation: ``A`` is the factor ``(B, D, r)`` with ``G = AAᵀ + λ_T I``; ``a`` the target vector ``(B, D)``,
either ``ε`` (uncentred) or ``F_θ − ε = (x − x̂)/σ`` (mean-centred, with a trained denoiser).

Two targets for the mean-centred factor (``TrainConfig.factor_target``, docs/SPEC.md §3):

* ``"residual"`` (SPEC §3): ``E[aaᵀ | y] = Cov[x | y]/σ² = Γᶜ``: one noisy sample of ``Γᶜ`` per point;
* ``"jacobian"`` (derived here): by Tweedie's identity ``Γᶜ(y) = ∂x̂/∂y = I − σ ∂F_θ/∂y`` (SPEC §2), so the
  factor can match the trained denoiser's Jacobian itself. With a probe ``v ~ N(0, I)`` independent of ``y``,
  ``E_v ‖(AAᵀ − J)v‖² = ‖AAᵀ − J‖²_F``: `jacobian_matching` is an unbiased estimate of the Frobenius
  distance to ``J`` from one probe product (no ``D × D``; see below for which product). Its target has no
  posterior noise: the residual's normal component is ``O(σ)``-small and noisy, and on S⁸ in R⁶⁴ the factor
  never learned it from the residual while the denoiser had (``benchmarks/RESULTS.md``).

  The trainer reads the transposed product ``Jᵀv`` (`centred_cdc_vjp`: one input-only backward pass through
  the graph of the denoiser's own forward pass; 1.5× cheaper per step than the second, forward-mode pass that
  computed ``Jv`` until the eighth session). The minimiser is the same: ``AAᵀ`` is symmetric, so with
  ``J = J_s + J_a`` (symmetric and antisymmetric parts) ``‖AAᵀ − Jᵀ‖²_F = ‖AAᵀ − J_s‖²_F + ‖J_a‖²_F =
  ‖AAᵀ − J‖²_F``; the true ``Γᶜ`` is a covariance and symmetric anyway. ``TrainConfig.jacobian_probes = K``
  averages ``K`` such terms per point (one backward pass each): one probe's estimate is noisy enough to stall a
  factor on S¹⁶ (SPEC §3, `benchmarks.probe_fit`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from learned_manifold.models import MetricModel

__all__ = [
    "FACTOR_TARGETS", "DenoiserLoss", "MetricMatchingLoss", "centred_cdc_vjp",
    "frobenius_full", "frobenius_lowrank", "jacobian_matching", "noisy",
]

FACTOR_TARGETS = ("residual", "jacobian")
"""What a mean-centred factor is matched to (module docstring)."""


def frobenius_full(A: Tensor, a: Tensor, tikhonov: float = 0.0) -> Tensor:
    """``‖AAᵀ + λ_T I − a aᵀ‖²_F`` formed densely (small D only): → ``(B,)``."""
    G = A @ A.transpose(-1, -2)
    if tikhonov:
        G = G + tikhonov * torch.eye(G.shape[-1], dtype=G.dtype, device=G.device)
    return (G - a.unsqueeze(-1) * a.unsqueeze(-2)).pow(2).sum(dim=(-2, -1))


def frobenius_lowrank(A: Tensor, a: Tensor, tikhonov: float = 0.0) -> Tensor:
    """``‖AᵀA‖²_F + 2λ_T‖A‖²_F − 2‖Aᵀa‖²``: the Frobenius loss without its network-free constant.

    Equals ``frobenius_full(A, a, λ_T) − (λ_T² D − 2λ_T‖a‖² + ‖a‖⁴)``; cost ``O(D r²)``, never ``D × D``.
    """
    AtA = A.transpose(-1, -2) @ A
    Ata = (A.transpose(-1, -2) @ a.unsqueeze(-1)).squeeze(-1)
    loss = AtA.pow(2).sum(dim=(-2, -1)) - 2 * Ata.pow(2).sum(-1)
    if tikhonov:
        loss = loss + 2 * tikhonov * A.pow(2).sum(dim=(-2, -1))
    return loss


def jacobian_matching(A: Tensor, v: Tensor, Jv: Tensor, tikhonov: float = 0.0) -> Tensor:
    """``‖(A Aᵀ + λ_T I) v − J v‖²`` per sample: ``A`` ``(B, D, r)``, probe ``v`` and target ``Jv`` ``(B, D)``
    (or ``(B, *data_shape)``, flattened) → ``(B,)``.

    For ``v ~ N(0, I)`` independent of ``A`` and ``J`` its mean is ``‖G − J‖²_F`` with ``G = AAᵀ + λ_T I``, the
    co-metric the model is used as (SPEC §1: the Tikhonov term is part of ``G``). Cost ``O(D r)``."""
    A, v, Jv = A.float(), v.reshape(v.shape[0], -1).float(), Jv.reshape(Jv.shape[0], -1).float()
    Gv = (A @ (A.transpose(-1, -2) @ v.unsqueeze(-1))).squeeze(-1)
    if tikhonov:
        Gv = Gv + tikhonov * v
    return (Gv - Jv).pow(2).sum(-1)


def centred_cdc_vjp(noise: Tensor, y: Tensor, sigma_z: Tensor, v: Tensor) -> Tensor:
    """``Γᶜᵀ v = v − σ_z (∂F_θ/∂y)ᵀ v`` from a denoiser output already computed (module docstring).

    ``noise``: ``F_θ(y, σ)`` ``(m, D)`` of the first ``m`` rows of ``y`` ``(B, *data_shape)``, which requires
    grad; ``v`` ``(m, *data_shape)``; ``σ_z`` ``(m,)`` or ``(1,)`` → ``(m, D)`` float32, detached. One
    input-only backward pass; the graph is kept for the step's own backward."""
    m = noise.shape[0]
    (grad,) = torch.autograd.grad(noise, y, grad_outputs=v.reshape(noise.shape).to(noise.dtype), retain_graph=True)
    flat = v.reshape(m, -1).float()
    return (flat - sigma_z.reshape(-1, 1).float() * grad[:m].reshape(m, -1).float()).detach()


def noisy(z: Tensor, sigma_z: Tensor, eps: Tensor) -> Tensor:
    """``y = z + σ_z ε`` (SPEC §3): ``z``, ``ε`` ``(B, *data_shape)``, ``σ_z`` ``(B,)`` → ``(B, *data_shape)``."""
    return z + sigma_z.reshape(-1, *([1] * (z.ndim - 1))) * eps


@dataclass
class DenoiserLoss:
    """``‖F_θ(y, σ) − ε‖² / D`` per sample, i.e. ``‖(x̂ − x)/σ‖² / D`` (SPEC §3: no σ² down-weighting)."""

    def __call__(self, model: MetricModel, z: Tensor, sigma_z: Tensor, eps: Tensor) -> Tensor:
        return self.of_prediction(model.noise_z(noisy(z, sigma_z, eps), sigma_z), eps)

    @staticmethod
    def of_prediction(noise: Tensor, eps: Tensor) -> Tensor:
        """The loss of a noise prediction ``F_θ`` ``(B, D)`` against ``ε`` ``(B, *data_shape)``: → ``(B,)``."""
        return (noise - eps.reshape(eps.shape[0], -1)).pow(2).mean(-1)


@dataclass
class MetricMatchingLoss:
    """Conditional metric matching (SPEC §3) in standardised units.

    Attributes:
        kind: ``"lowrank"`` (``O(D r²)``) or ``"full"`` (dense ``D × D``, small D).
        tikhonov: ``λ_T`` in ``G = AAᵀ + λ_T I``.
        centred: match ``a = F_θ − ε`` from the model's (detached) denoiser instead of ``a = ε``.
    """

    kind: str = "lowrank"
    tikhonov: float = 0.0
    centred: bool = True

    def __post_init__(self):
        if self.kind not in ("lowrank", "full"):
            raise ValueError(f"unknown loss kind {self.kind!r}; valid: ['full', 'lowrank']")
        if self.tikhonov < 0:
            raise ValueError(f"tikhonov must be >= 0, got {self.tikhonov}")

    def target(self, model: MetricModel, y: Tensor, sigma_z: Tensor, eps: Tensor) -> Tensor:
        """The regression vector ``a`` ``(B, D)``: ``ε``, or ``F_θ(y, σ) − ε`` with the denoiser detached."""
        eps = eps.reshape(eps.shape[0], -1)
        if not self.centred:
            return eps
        with torch.no_grad():
            return model.noise_z(y, sigma_z).to(eps.dtype) - eps

    def __call__(self, model: MetricModel, z: Tensor, sigma_z: Tensor, eps: Tensor) -> Tensor:
        y = noisy(z, sigma_z, eps)
        a = self.target(model, y, sigma_z, eps)
        return self.of_factor(model.factor_z(y, sigma_z), a)

    def of_factor(self, A: Tensor, a: Tensor) -> Tensor:
        """The loss of a factor ``A`` ``(B, D, r)`` against the regression vector ``a`` ``(B, D)``: → ``(B,)``.

        With ``a = F − ε`` for a noise prediction ``F`` computed in the same pass as ``A`` (a training step
        that runs both networks, or one shared trunk, once), ``F`` must be detached, as `target` does."""
        fro = frobenius_full if self.kind == "full" else frobenius_lowrank
        return fro(A.float(), a.float(), self.tikhonov)
