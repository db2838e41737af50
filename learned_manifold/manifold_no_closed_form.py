"""The ``geoopt.Manifold`` methods a learned manifold cannot provide (SPEC §5, §6): no closed-form exponential or
logarithm, distance or sampler. `LearnedDataManifold` inherits them from `NoClosedForms`; each raises one
``NotImplementedError`` naming what to use instead (``retr`` for optimiser steps, `learned_manifold.geodesic` for
paths and lengths, data points as starts).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

__all__ = ["NoClosedForms"]


class NoClosedForms:
    """geoopt's ``expmap``, ``logmap``, ``dist``, ``dist2`` and ``random`` for a manifold known only through a field:
    each raises ``NotImplementedError`` (a mixin placed before ``geoopt.Manifold`` in the bases)."""

    def expmap(self, x: Tensor, u: Tensor) -> Tensor:
        """Not available: a learned manifold has no closed-form exponential map.

        geoopt's optimisers (``RiemannianSGD``, ``RiemannianAdam``) only call ``retr``/``retr_transp``, a
        first-order retraction; geodesics between two points are `learned_manifold.geodesic`.
        """
        raise NotImplementedError("LearnedDataManifold has no exact exponential map; use retr (a first-order "
                                  "retraction, what geoopt's optimisers call) or learned_manifold.geodesic")

    def logmap(self, x: Tensor, y: Tensor) -> Tensor:
        """Not available (no closed form) for points ``x``, ``y`` ``(..., *data_shape)`` (geoopt's would return the
        tangent vector at ``x``, of the broadcast shape); `learned_manifold.geodesic` gives the path from ``x`` to
        ``y``."""
        raise NotImplementedError("LearnedDataManifold has no closed-form logarithm; learned_manifold.geodesic(M, x, "
                                  "y) solves for the path between two points")

    def dist(self, x: Tensor, y: Tensor, *, keepdim: bool = False) -> Tensor:
        """Not available (no closed form) for points ``x``, ``y`` ``(..., *data_shape)`` (geoopt's would return the
        batch shape ``(...)``); `learned_manifold.geodesic` returns the metric ``length`` ``(B,)``."""
        raise NotImplementedError("LearnedDataManifold has no closed-form distance; learned_manifold.geodesic(M, x, "
                                  "y).length is the metric length of the discrete geodesic")

    def dist2(self, x: Tensor, y: Tensor, *, keepdim: bool = False) -> Tensor:
        """Not available: see `dist`."""
        return self.dist(x, y, keepdim=keepdim)

    def random(self, *size: int, dtype: torch.dtype | None = None, device: torch.device | str | None = None,
               **kwargs: Any) -> Tensor:
        """Not available: a learned manifold has no intrinsic sampler (no closed-form density or volume on the data).

        Start from data points instead (e.g. ``x = data[:n]``, or a landed ``M.projx(x)`` with ``landing=True``).
        """
        raise NotImplementedError("a learned manifold has no intrinsic sampler; start from data points")
