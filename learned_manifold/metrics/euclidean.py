"""The flat baseline: the Euclidean co-metric ``G = I`` (SPEC §7), and argument checks for the baselines.

`check_vectors`, `check_scalar` and `check_count` serve every baseline field (`KNNCDC`, the score-based
fields); they sit here, beside the simplest field, and belong next to `check_points` in ``base.py``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .base import CoMetricField, check_points

__all__ = ["EuclideanMetric"]

MAX_DENSE_DIM = 4096
"""Largest ``D`` for which `EuclideanMetric.factor` builds the ``(B, D, D)`` identity."""


def check_vectors(x: Tensor, v: Tensor, dim: int | None, name: str = "v") -> None:
    """Raise a ``ValueError`` unless ``x`` is a ``(B, D)`` batch of points and ``v`` one vector per point."""
    check_points(x, dim)
    check_points(v, x.shape[1], name)
    if v.shape[0] != x.shape[0]:
        raise ValueError(f"{name} has batch size {v.shape[0]} but x has {x.shape[0]}: one vector per point")


def check_scalar(value: float, name: str, *, allow_zero: bool = False) -> float:
    """Return ``value`` as a float after checking it is finite and ``> 0`` (``≥ 0`` with ``allow_zero``)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{name} must be a real number, got {type(value).__name__}")
    value = float(value)
    if not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be finite and {bound}, got {value}")
    return value


def check_count(value: int, name: str, *, low: int = 1, high: int | None = None) -> int:
    """Return ``value`` after checking it is an integer in ``low..high`` (``high = None``: no upper bound)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be an integer, got {type(value).__name__}")
    if value < low or (high is not None and value > high):
        span = f"{low}..{high}" if high is not None else f">= {low}"
        raise ValueError(f"{name} must lie in {span}, got {value}")
    return value


class EuclideanMetric(CoMetricField):
    """The Euclidean co-metric ``G = I`` (and metric ``g = I``): the flat baseline of SPEC §7.

    ``apply`` and ``metric`` both return their vector argument itself (no copy, as geoopt's ``Euclidean``
    does); ``δ`` is always 0. There is no landing projection.

    Args:
        dim: the ambient dimension ``D`` to enforce, or ``None`` to accept any ``D``.

    Attributes:
        dim: ``D`` or ``None``. centred: ``True``. low_rank: ``False`` (``factor`` exists but has full rank).
    """

    centred = True
    low_rank = False

    def __init__(self, dim: int | None = None) -> None:
        super().__init__()
        self.dim = None if dim is None else check_count(dim, "dim")

    def factor(self, x: Tensor) -> Tensor:
        """The identity as a factor, ``A = I`` with ``G = AAᵀ = I``: ``(B, D)`` → ``(B, D, D)``.

        The result is an expanded (read-only) view of one ``D × D`` identity.

        Raises:
            ValueError: if ``D`` exceeds `MAX_DENSE_DIM` (4096).
        """
        check_points(x, self.dim)
        b, d = x.shape
        if d > MAX_DENSE_DIM:
            raise ValueError(f"EuclideanMetric.factor builds a D x D identity; D = {d} > {MAX_DENSE_DIM}")
        return torch.eye(d, dtype=x.dtype, device=x.device).expand(b, d, d)

    def apply(self, x: Tensor, w: Tensor) -> Tensor:
        """``G w = w``: ``(B, D)``, ``(B, D)`` → ``(B, D)``."""
        check_vectors(x, w, self.dim, "w")
        return w

    def metric(self, x: Tensor, v: Tensor) -> Tensor:
        """``g v = v``: ``(B, D)``, ``(B, D)`` → ``(B, D)``."""
        check_vectors(x, v, self.dim, "v")
        return v

    def extra_repr(self) -> str:
        return f"dim={self.dim}"
