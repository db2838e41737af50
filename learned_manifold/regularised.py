"""The regularised metric geodesics are solved in (SPEC §5, §6): a low-rank field with ``δ = 0`` has a singular
metric, so `geodesic` adds ``δ = 10⁻³ λ₁`` by default (`regularising_delta`) and solves in ``G = AAᵀ + δI``
(`Regularised`); lengths and energies are reported in the metric of the field's learned tangent bundle
(`TangentBundle`, SPEC §5's ``δ = 0`` geometry), or in the field's own metric for other fields."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .geometry import eigenpairs, intrinsic_dimension, spectral_apply
from .metrics.base import CoMetricField

__all__ = ["Regularised", "TangentBundle", "check_delta", "reporting_metric", "regularising_delta"]


def regularising_delta(field: CoMetricField, x0: Tensor, x1: Tensor) -> float:
    """The default ``δ`` of `geodesic`: ``10⁻³ λ₁`` for a low-rank field with ``δ = 0`` (``λ₁``: the mean top
    eigenvalue of ``G`` at the ends ``x0``, ``x1`` ``(B, D)``), so the normal directions cost ``10³`` times the
    tangent ones instead of nothing; ``0.0`` for other fields (their ``δ`` or their full-rank metric decides)."""
    if not field.low_rank or field.delta > 0:
        return 0.0
    with torch.no_grad():
        top = eigenpairs(field.factor(torch.cat([x0, x1]))).values[:, 0]
    top = top[torch.isfinite(top)]
    return 1e-3 * float(top.mean()) if top.numel() and float(top.mean()) > 0 else 0.0


def check_delta(delta: object) -> float:
    if isinstance(delta, bool) or not isinstance(delta, (int, float)) or not math.isfinite(delta) or delta < 0:
        raise ValueError(f"delta must be a finite number >= 0 or None, got {delta!r}")
    return float(delta)


class Regularised(CoMetricField):
    """A low-rank ``field`` with ``δ`` added: ``G = AAᵀ + δI`` by `lowrank_apply`/`lowrank_solve` (SPEC §5); its
    landing projection, bandwidths and start paths are the field's own."""

    low_rank = True

    def __init__(self, field: CoMetricField, delta: float):
        super().__init__()
        self.inner_field, self.delta = field, float(delta)
        self.dim, self.centred = field.dim, field.centred

    def factor(self, x: Tensor, **kwargs) -> Tensor:
        return self.inner_field.factor(x, **kwargs)

    # apply and metric: `CoMetricField`'s, from the factor with this δ (`lowrank_apply`, `lowrank_solve`)

    def project(self, x: Tensor, **kwargs) -> Tensor:
        return self.inner_field.project(x, **kwargs)

    def length_scale(self) -> float | None:
        return self.inner_field.length_scale()

    def landing_bandwidths(self) -> tuple[float, float] | None:
        return self.inner_field.landing_bandwidths()

    @property
    def can_project(self) -> bool:
        return self.inner_field.can_project


class TangentBundle(CoMetricField):
    """A low-rank ``field`` with ``δ = 0`` as SPEC §5's learned tangent bundle: ``metric`` is ``G_d^+ v =
    Û Λ_d^{-1} Ûᵀ v`` on the top-``d`` eigen-directions of ``G = AAᵀ`` (``d`` by the gap rule at each point,
    `spectral_apply` with ``power = -1``; ``(B, D)`` → ``(B, D)``), ``apply`` the restricted ``G_d w``.

    `geodesic` reports such a field's lengths and energies in it: the field's own ``metric``, the pseudo-inverse of
    ``G`` over every eigenvalue above ``10⁻⁶ λ₁``, also inverts the small but nonzero learned normal eigenvalues
    (~10⁻⁴ λ₁), so it charged a path's normal wobbles of 10⁻⁴–10⁻³ some 10⁴ times (a unit circle's arc of 3.0
    read 3.5–4.9, growing with ``n_points``)."""

    low_rank = True

    def __init__(self, field: CoMetricField):
        super().__init__()
        self.inner_field = field
        self.dim, self.centred = field.dim, field.centred

    def factor(self, x: Tensor, **kwargs) -> Tensor:
        return self.inner_field.factor(x, **kwargs)

    def apply(self, x: Tensor, w: Tensor) -> Tensor:
        pairs = eigenpairs(self.inner_field.factor(x))
        return spectral_apply(pairs, w, intrinsic_dimension(pairs.values), power=1)

    def metric(self, x: Tensor, v: Tensor) -> Tensor:
        return spectral_apply(eigenpairs(self.inner_field.factor(x)), v, None, power=-1)

    def length_scale(self) -> float | None:
        return self.inner_field.length_scale()


def reporting_metric(field: CoMetricField) -> CoMetricField:
    """The metric `geodesic` reports lengths and energies of ``field`` in: `TangentBundle` for a low-rank field with
    ``δ = 0`` (SPEC §5), the field itself otherwise."""
    return TangentBundle(field) if field.low_rank and field.delta == 0 else field
