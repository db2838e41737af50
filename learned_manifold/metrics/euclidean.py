"""The flat baseline: the Euclidean co-metric ``G = I`` (SPEC §7)."""

from __future__ import annotations

import torch
from torch import Tensor

from .base import CoMetricField, check_count, check_points, check_vectors

__all__ = ["EuclideanMetric"]

MAX_DENSE_DIM = 4096
"""Largest ``D`` for which `EuclideanMetric.factor` builds the ``(B, D, D)`` identity."""


class EuclideanMetric(CoMetricField):
    """The Euclidean co-metric ``G = I`` (and metric ``g = I``): the flat baseline of SPEC §7.

    ``apply`` and ``metric`` both return their vector argument itself (no copy, as geoopt's ``Euclidean``
    does); ``δ`` is always 0. There is no landing projection.

    Args:
        dim: the ambient dimension ``D`` to enforce, or ``None`` to accept any ``D``.

    Attributes:
        dim: ``D`` or ``None``. centred: ``True``. low_rank: ``False`` (``factor`` exists but has full rank).

    Example:
        >>> import torch
        >>> from learned_manifold.metrics import EuclideanMetric
        >>> field = EuclideanMetric()
        >>> x, w = torch.zeros(2, 3), torch.randn(2, 3)
        >>> torch.equal(field.apply(x, w), w), field.factor(x).shape
        (True, torch.Size([2, 3, 3]))
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
