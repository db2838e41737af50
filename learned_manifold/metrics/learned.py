"""The learned carré du champ: a trained `MetricModel` as a co-metric field (SPEC §5)."""

from __future__ import annotations

import os

import torch
from torch import Tensor

from ..geometry import lowrank_apply, lowrank_solve
from ..model_file import load_model
from ..models import MetricModel
from .base import CoMetricField, check_finite_output, check_points, check_scalar, check_vectors

__all__ = ["LearnedCDC"]


class LearnedCDC(CoMetricField):
    """Co-metric ``G(x) = A(x) Aᵀ(x) + λ_T I`` from a trained network, plus the isotropic part ``δ``.

    ``apply`` is ``(AAᵀ + (λ_T + δ) I) w`` in ``O(D r)``; ``metric`` is its inverse by Woodbury in
    ``O(D r² + r³)`` (for ``λ_T + δ = 0``, the pseudo-inverse on the range of ``A``). The network is a frozen,
    registered submodule, so the field follows ``.to(device/dtype)``.

    Args:
        model: a `MetricModel` or the path of a model file.
        sigma: evaluation bandwidth in data units (``None``: the model's default).
        delta: isotropic part ``δ ≥ 0`` added on top of the model's Tikhonov term.
        precision: ``"fp32"``, or ``"bf16"`` to run the network under bf16 autocast (the factor is returned in
            the dtype of the query; the Gram/Woodbury algebra stays in that dtype).
    """

    low_rank = True

    def __init__(self, model: MetricModel | str | os.PathLike, sigma: float | None = None, *, delta: float = 0.0,
                 precision: str = "fp32"):
        super().__init__()
        if precision not in ("fp32", "bf16"):
            raise ValueError(f"precision must be 'fp32' or 'bf16', got {precision!r}")
        self.precision = precision
        if not isinstance(model, MetricModel):
            model = load_model(model)
        delta = check_scalar(delta, "delta", allow_zero=True)
        if sigma is not None:
            sigma = check_scalar(sigma, "sigma")
        self.model = model.requires_grad_(False).eval()
        self.sigma = float(model.config.default_sigma if sigma is None else sigma)
        self.extra_delta = float(delta)
        self.dim = model.dim
        self.centred = model.config.centred

    @property
    def delta(self) -> float:  # type: ignore[override]
        """Total isotropic part: the model's Tikhonov term ``λ_T`` plus the user's ``δ``."""
        return self.model.config.tikhonov + self.extra_delta

    def factor(self, x: Tensor, *, sigma: float | Tensor | None = None) -> Tensor:
        """``(B, D)`` → ``(B, D, r)``, in the dtype of ``x``.

        ``sigma``: ``None`` for the field's bandwidth, a float, or one bandwidth per point ``(B,)`` (landing).

        Raises:
            ValueError: the network gives NaN/inf at finite points (e.g. ``|x| ~ 1e30`` overflows its layers):
                never returned silently. Rows of ``x`` that are already NaN give NaN rows.
        """
        check_points(x, self.dim)
        xs = x.to(self.model.scale.dtype)
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=self.precision == "bf16"):
            A = self.model.factor(xs, self._sigma(sigma, xs))
        check_finite_output(xs, A, "factor network")
        return A.to(x.dtype)

    def _sigma(self, sigma: float | Tensor | None, x: Tensor) -> float | Tensor:
        return self.sigma if sigma is None else (sigma.to(x.dtype) if isinstance(sigma, Tensor) else sigma)

    def apply(self, x: Tensor, w: Tensor) -> Tensor:
        check_vectors(x, w, self.dim, "w")
        return lowrank_apply(self.factor(x), w, self.delta)

    def metric(self, x: Tensor, v: Tensor) -> Tensor:
        check_vectors(x, v, self.dim, "v")
        return lowrank_solve(self.factor(x), v, self.delta)

    def project(self, x: Tensor, *, sigma: float | Tensor | None = None) -> Tensor:
        """Landing: the denoiser's posterior mean ``x̂(x, σ)`` (SPEC §6); ``sigma`` as in `factor`."""
        if not self.model.has_denoiser:
            raise RuntimeError("this model has no denoiser: landing projection is unavailable")
        check_points(x, self.dim)
        xs = x.to(self.model.scale.dtype)
        out = self.model.denoise(xs, self._sigma(sigma, xs))
        check_finite_output(xs, out, "denoiser network")
        return out.to(x.dtype)

    def landing_bandwidths(self) -> tuple[float, float]:
        """``(σ, σ_max)``: the field's bandwidth and the top of the model's training range."""
        return self.sigma, max(self.sigma, float(self.model.config.sigma_max))

    @property
    def can_project(self) -> bool:
        return self.model.has_denoiser

    def extra_repr(self) -> str:
        return f"sigma={self.sigma:.4g}, delta={self.delta:.4g}, precision={self.precision}"

