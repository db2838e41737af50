"""`LearnedDataManifold`: a data geometry (any co-metric field) as a ``geoopt.Manifold`` (SPEC §5).

Two readings of the same field, chosen by the isotropic part ``δ``:

* ``δ > 0``: the manifold is ``R^D`` with the metric ``g = (G + δI)^{-1}``. Every vector is tangent;
  ``proju`` and ``transp`` are the identity, ``retr(x, u) = x + u``, ``egrad2rgrad(x, u) = (G + δI) u`` and
  ``inner`` is the Woodbury form.
* ``δ = 0``: the learned tangent bundle. ``proju = ÛÛᵀ`` (top-``d`` eigenvectors, ``d`` fixed or each
  point's gap-rule dimension), ``egrad2rgrad(x, u) = G u``, ``retr(x, u) = x + proju(x, u)`` (so geoopt's momentum seed,
  a raw Euclidean gradient, is handled) and ``transp(x, y, v) = proju(y, v)``.

With ``landing=True`` (fields that have a denoiser), ``projx`` is the landing projection ``x ← x̂(x, σ)``
and ``retr`` lands after every step; otherwise ``projx`` is the identity.

Points may have any number of leading batch axes; the last ``ndim`` axes are the data axes.

Cost: for low-rank fields the manifold evaluates the factor (and, for ``δ = 0``, its eigenpairs) once per point
and reuses it across the calls an optimiser step makes at that point (``egrad2rgrad``, ``component_inner``,
``retr``, and ``transp`` at the new point, where the next step starts): a one-entry cache keyed on the point (its
version counter, or equal values), used only under ``torch.no_grad()`` (as in geoopt's ``step``).
"""

from __future__ import annotations

import math
import os

import geoopt
import torch
from torch import Tensor

from .geometry import Eigenpairs, eigenpairs, intrinsic_dimension, lowrank_apply, lowrank_inner, range_project
from .metrics.base import CoMetricField
from .metrics.learned import LearnedCDC
from .models import MetricModel

__all__ = ["LearnedDataManifold"]


class LearnedDataManifold(geoopt.Manifold):
    """The data's own geometry as a geoopt manifold.

    Args:
        source: a model file path, a loaded `MetricModel`, or any `CoMetricField`.
        sigma: evaluation bandwidth in data units (models only; ``None``: the model's default).
        delta: isotropic part ``δ ≥ 0`` (models only; a field carries its own).
        data_shape: shape of one point (default: the model's data shape, or ``(D,)`` for a field).
        landing: make ``projx`` the denoiser's landing projection and land after every ``retr``.
        tangent_dim: for ``δ = 0``, project onto the top-``d`` eigenvectors; ``None`` uses each point's
            gap-rule dimension (SPEC §5), which is scale-free and needs no threshold.
    """

    name = "LearnedData"
    reversible = False
    ndim = 1

    def __init__(
        self,
        source: str | os.PathLike | MetricModel | CoMetricField,
        *,
        sigma: float | None = None,
        delta: float = 0.0,
        data_shape: tuple[int, ...] | None = None,
        landing: bool = False,
        tangent_dim: int | None = None,
    ):
        super().__init__()
        if isinstance(source, CoMetricField):
            if sigma is not None or delta:
                raise ValueError("sigma and delta belong to the field when a field is given; set them there")
            field = source
        elif isinstance(source, (MetricModel, str, os.PathLike)):
            field = LearnedCDC(source, sigma, delta=delta)
        else:
            raise TypeError(f"expected a model file path, a MetricModel or a CoMetricField, "
                            f"got {type(source).__name__}")
        self.field = field
        if data_shape is None:
            model = getattr(field, "model", None)
            data_shape = tuple(model.data_shape) if model is not None else (field.dim,)
        if field.dim is not None and math.prod(data_shape) != field.dim:
            raise ValueError(f"data_shape {tuple(data_shape)} has {math.prod(data_shape)} entries, "
                             f"the field expects D = {field.dim}")
        self.data_shape = tuple(data_shape)
        self.ndim = len(self.data_shape)
        if landing and not field.can_project:
            raise ValueError(f"landing needs a field with a landing projection (a denoiser); "
                             f"{type(field).__name__} has none")
        self.landing = landing
        if tangent_dim is not None and tangent_dim < 1:
            raise ValueError(f"tangent_dim must be >= 1, got {tangent_dim}")
        self.tangent_dim = tangent_dim
        self._cache: dict | None = None

    # -- shapes -------------------------------------------------------------------------------------------
    @property
    def delta(self) -> float:
        return self.field.delta

    @property
    def dim(self) -> int:
        return math.prod(self.data_shape)

    def _flat(self, *tensors: Tensor) -> tuple[tuple[int, ...], list[Tensor]]:
        """Broadcast, then flatten batch axes and data axes: returns the batch shape and ``(B, D)`` tensors."""
        shape = torch.broadcast_shapes(*(t.shape for t in tensors))
        batch = tuple(shape[: len(shape) - self.ndim])
        return batch, [t.expand(shape).reshape(-1, self.dim) for t in tensors]

    def _unflat(self, batch: tuple[int, ...], t: Tensor) -> Tensor:
        return t.reshape(*batch, *self.data_shape)

    def _factor_at(self, x: Tensor, xf: Tensor) -> Tensor:
        """The field's factor at ``xf`` (the flattened ``x``), reused while the point is unchanged (no-grad only).

        One cache entry: the point it was computed at (held together with its version counter), the field's
        bandwidth, the factor and, once asked for, its eigenpairs. A query hits when it is that tensor,
        unchanged, or a tensor of equal values: geoopt's step computes the factor at the new point for
        ``transp`` and then copies the new point into the parameter, so the next step's ``egrad2rgrad`` finds
        it here instead of running the network again. (On CUDA the value comparison waits for the device once.)
        """
        return self._cached(x, xf)["A"]

    def _factor_and_pairs_at(self, x: Tensor, xf: Tensor) -> tuple[Tensor, Eigenpairs]:
        """The factor at ``xf`` and its eigenpairs, each computed once per cache entry (no-grad only)."""
        entry = self._cached(x, xf)
        if entry.get("pairs") is None:
            entry["pairs"] = eigenpairs(entry["A"])
        return entry["A"], entry["pairs"]

    def _cached(self, x: Tensor, xf: Tensor) -> dict:
        if torch.is_grad_enabled() or xf.shape[0] * self.dim != x.numel():  # under autograd, or x was broadcast
            return {"A": self.field.factor(xf)}
        sigma = getattr(self.field, "sigma", None)
        entry = self._cache
        if entry is not None:
            point = entry["point"]
            if point._version == entry["version"] and entry["sigma"] == sigma and (
                    point is x or (point.shape == x.shape and point.dtype == x.dtype
                                   and point.device == x.device and torch.equal(point, x))):
                return entry
        self._cache = {"point": x, "version": x._version, "sigma": sigma, "A": self.field.factor(xf), "pairs": None}
        return self._cache

    def _check_shape(self, shape: tuple[int, ...], name: str) -> tuple[bool, str | None]:
        if tuple(shape[len(shape) - self.ndim:]) != self.data_shape or len(shape) < self.ndim:
            return False, f"'{name}' has shape {tuple(shape)}; its last axes must be the data shape {self.data_shape}"
        return True, None

    # -- what the manifold is -----------------------------------------------------------------------------
    def projx(self, x: Tensor) -> Tensor:
        """Identity, or the landing projection ``x̂(x, σ)`` when ``landing=True``."""
        if not self.landing:
            return x
        batch, (xf,) = self._flat(x)
        return self._unflat(batch, self.field.project(xf))

    def proju(self, x: Tensor, u: Tensor) -> Tensor:
        """``δ > 0``: ``u``; ``δ = 0``: ``Û Ûᵀ u`` onto the learned tangent space (low-rank fields)."""
        if self.delta > 0 or not self.field.low_rank:
            return u.expand(torch.broadcast_shapes(x.shape, u.shape))
        batch, (xf, uf) = self._flat(x, u)
        A, pairs = self._factor_and_pairs_at(x, xf)
        return self._unflat(batch, range_project(A, uf, self.tangent_dim, pairs=pairs))

    def egrad2rgrad(self, x: Tensor, u: Tensor) -> Tensor:
        """Riemannian gradient ``(G + δI) u`` (SPEC §5)."""
        batch, (xf, uf) = self._flat(x, u)
        if self.field.low_rank:
            return self._unflat(batch, lowrank_apply(self._factor_at(x, xf), uf, self.delta))
        return self._unflat(batch, self.field.apply(xf, uf))

    def retr(self, x: Tensor, u: Tensor) -> Tensor:
        """``x + proju(x, u)``, then the landing projection when enabled."""
        return self.projx(x + self.proju(x, u))

    expmap = retr

    def transp(self, x: Tensor, y: Tensor, v: Tensor) -> Tensor:
        """Vector transport by projection at ``y`` (identity for ``δ > 0``)."""
        return self.proju(y, v)

    def inner(self, x: Tensor, u: Tensor, v: Tensor | None = None, *, keepdim: bool = False) -> Tensor:
        """``uᵀ (G + δI)^{-1} v`` (Woodbury; pseudo-inverse on the range for ``δ = 0``), reduced over data axes."""
        same = v is None
        v = u if same else v
        batch, (xf, uf, vf) = self._flat(x, u, v)
        if self.field.low_rank:
            A, pairs = self._factor_and_pairs_at(x, xf) if self.delta == 0 else (self._factor_at(x, xf), None)
            out = lowrank_inner(A, uf, vf, self.delta, pairs=pairs).reshape(batch)
        else:
            out = self.field.inner(xf, uf, vf).reshape(batch)
        if same:  # a squared norm: clamp the rounding of Woodbury's difference (Adam takes its square root)
            out = out.clamp_min(0)
        return out.reshape(*batch, *([1] * self.ndim)) if keepdim else out

    def _check_point_on_manifold(self, x: Tensor, *, atol: float = 1e-5, rtol: float = 1e-5):
        ok, reason = self._check_shape(x.shape, "x")
        if not ok:
            return False, reason
        if not bool(torch.isfinite(x).all()):
            return False, "x contains NaN or inf"
        return True, None

    def _check_vector_on_tangent(self, x: Tensor, u: Tensor, *, atol: float = 1e-5, rtol: float = 1e-5):
        ok, reason = self._check_shape(u.shape, "u")
        if not ok:
            return False, reason
        if not bool(torch.isfinite(u).all()):
            return False, "u contains NaN or inf"
        pu = self.proju(x, u)
        err = (pu - u).abs().max().item()
        if err > atol + rtol * u.abs().max().item():
            return False, f"u is not in the learned tangent space: |proju(u) - u| = {err:.3g}"
        return True, None

    def random(self, *size, dtype=None, device=None, **kwargs) -> Tensor:
        raise NotImplementedError("a learned manifold has no intrinsic sampler; start from data points")

    # -- geometry queries ---------------------------------------------------------------------------------
    def factor(self, x: Tensor) -> Tensor:
        """Low-rank factor of ``G`` at ``x``: ``(..., *data_shape)`` → ``(B, D, r)`` (batch axes flattened)."""
        _, (xf,) = self._flat(x)
        return self.field.factor(xf)

    def tangent_space(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Eigenpairs of ``G`` at ``x`` via the ``r × r`` Gram: ``(values (B, r) descending, vectors (B, D, r))``."""
        pairs = eigenpairs(self.factor(x))
        return pairs.values, pairs.vectors

    def intrinsic_dimension(self, x: Tensor) -> Tensor:
        """Pointwise intrinsic dimension by the scale-free gap rule (SPEC §5): ``(B,)`` integers."""
        return intrinsic_dimension(self.tangent_space(x)[0])

    def extra_repr(self) -> str:
        return (f"data_shape={self.data_shape}, delta={self.delta:.3g}, landing={self.landing}, "
                f"field={type(self.field).__name__}")
