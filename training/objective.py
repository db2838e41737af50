"""The loss of one training step (SPEC §3): the denoiser's and the factor's per-sample losses as one module, so
that DDP and ``torch.compile`` see one forward; and the precision probe's name for that workload."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from learned_manifold.models import MetricModel

from .config import TrainConfig
from .losses import FACTOR_TARGETS, DenoiserLoss, MetricMatchingLoss, centred_cdc_vjp, jacobian_matching, noisy

__all__ = ["TrainingObjective", "factor_rows", "workload_name"]


class TrainingObjective(nn.Module):
    """Wraps model and losses so that DDP sees one forward: per-sample denoiser and factor losses ``(B,)``.

    A centred step runs each network once (`MetricModel.factor_and_noise_z`; a shared trunk runs once for both):
    the denoiser's prediction ``F`` feeds its own loss and, detached, the factor's target ``a = F − ε`` (SPEC §3).
    """

    def __init__(self, model: MetricModel, matching: MetricMatchingLoss, factor_trunk_grad: float = 1.0,
                 factor_target: str = "residual", factor_fraction: float = 1.0, freeze_denoiser: bool = False,
                 jacobian_probes: int = 1):
        super().__init__()
        if factor_target not in FACTOR_TARGETS:
            raise ValueError(f"factor_target must be one of {list(FACTOR_TARGETS)}, got {factor_target!r}")
        self.model = model
        self.matching = matching
        self.denoising = DenoiserLoss()
        self.factor_trunk_grad = factor_trunk_grad  # shared trunk: the factor's gradient into it is scaled by this
        self.factor_target = factor_target
        self.factor_fraction = factor_fraction
        self.freeze_denoiser = freeze_denoiser  # the factor's steps leave the denoiser's weights alone
        self.jacobian_probes = jacobian_probes  # K: the factor's Jacobian loss is the mean over K probes

    def forward(self, z: Tensor, sigma_z: Tensor, eps: Tensor, with_factor: bool,
                probe: Tensor | None = None) -> Tensor:
        """Per-sample losses ``(B,)``. The factor's loss covers the first ``m = factor_rows(B, fraction)`` rows,
        scaled by ``B/m`` so that the mean over the batch is the denoiser's mean loss plus the factor's.
        ``probe``: the ``N(0, I)`` vectors ``(B, *data_shape)`` of the Jacobian target, ``(B, K, *data_shape)``
        for ``K = jacobian_probes > 1`` (drawn here if None)."""
        if not self.model.has_denoiser:  # uncentred: a = ε, the factor from the first step
            return self.matching(self.model, z, sigma_z, eps)
        y = noisy(z, sigma_z, eps)
        if not with_factor:  # the denoiser's warm-up
            return self.denoising.of_prediction(self.model.noise_z(y, sigma_z), eps).float()
        batch = y.shape[0]
        m = factor_rows(batch, self.factor_fraction)
        sigma_m = sigma_z[:m] if sigma_z.shape[0] == batch else sigma_z
        jacobian = self.factor_target == "jacobian"
        with torch.enable_grad():
            if jacobian:  # the denoiser's input-gradient gives Γᶜᵀv (losses module docstring)
                y = y.detach().requires_grad_(True)
            if self.model.trunk is not None:
                A, noise = self.model.factor_and_noise_z(y, sigma_z, self.factor_trunk_grad)
                A = A[:m]
            else:
                noise = self.model.noise_z(y, sigma_z)
                A = self.model.factor_z(y[:m].detach(), sigma_m)
            denoising = self.denoising.of_prediction(noise, eps).float()
            if self.freeze_denoiser:  # reported, not trained: no backward through the denoiser's weights
                denoising = denoising.detach()
            if jacobian:
                k = self.jacobian_probes
                if probe is None:
                    probe = torch.randn(m, *([k] if k > 1 else []), *y.shape[1:], dtype=y.dtype, device=y.device)
                vs = probe[:m].to(y.dtype)
                vs = vs.unsqueeze(1) if k == 1 else vs
                lam = self.matching.tikhonov  # part of G, so part of what is matched (SPEC §1)
                factor = sum(jacobian_matching(A, vs[:, i], centred_cdc_vjp(noise[:m], y, sigma_m, vs[:, i]), lam)
                             for i in range(k)) / k
            else:
                a = noise[:m].detach().to(eps.dtype) - eps[:m].reshape(m, -1)
                factor = self.matching.of_factor(A, a)
        if m == batch:
            return denoising + factor
        return denoising + torch.cat([factor * (batch / m), factor.new_zeros(batch - m)])


def workload_name(cfg: TrainConfig) -> str:
    """The name of a training step's workload for the precision probe's cache (`choose_precision`)."""
    name = "train" if cfg.factor_target == "residual" else "train-jacobian"
    name = name if cfg.jacobian_probes == 1 else f"{name}-probes{cfg.jacobian_probes}"
    return name if cfg.factor_fraction == 1 else f"{name}-factor{cfg.factor_fraction:g}"


def factor_rows(batch: int, fraction: float) -> int:
    """Rows of a batch of ``batch`` points that the factor's loss covers: ``ceil(fraction · batch)``, at least 1."""
    return max(1, min(batch, math.ceil(fraction * batch - 1e-9)))
