"""Synthetic manifolds with exact geometry: the helpers and the two base classes (`SyntheticManifold`,
`EmbeddedManifold`).

Every manifold lives in low-dimensional natural coordinates ``u ∈ R^k`` and is placed in ``R^D`` by a fixed
isometric embedding ``x = Q u + c`` (``Q`` of shape (D, k) with orthonormal columns, ``c`` an offset, zero
unless stated). When ``D == k`` the embedding is the identity, so e.g. ``Sphere(2, 3)`` is the plain unit
sphere. Everything is batched and dtype/device-agnostic: points are tensors of shape (n, D), tangent spaces are
returned as orthonormal bases of shape (n, D, d) (never as D×D projectors).

Shapes: ``n`` points, ``D`` ambient dimension, ``d`` intrinsic dimension, ``k`` natural-coordinate dimension.
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from typing import Protocol

import numpy as np
import torch
from torch import Tensor

__all__ = ["EmbeddedManifold", "KnownManifold", "SyntheticManifold", "random_isometry"]


class KnownManifold(Protocol):
    """What `train`, `validate` and `select_sigma` need of a data set's true manifold (their ``manifold``): a
    `SyntheticManifold`, or any object with these two methods (`runtime.check_manifold` checks them before a run).
    """

    def tangent_basis(self, x: Tensor) -> Tensor:
        """``(n, D, d)`` orthonormal tangent columns at points ``x`` ``(n, D)`` (zero columns pad lower pieces)."""

    def point_dimension(self, x: Tensor) -> Tensor:
        """``(n,)`` integer intrinsic dimension at each point of ``x`` ``(n, D)``."""


def random_isometry(ambient_dim: int, k: int, seed: int = 0) -> Tensor:
    """A fixed random (D, k) matrix with orthonormal columns, drawn from ``seed``.

    Args:
        ambient_dim: D, the number of rows.
        k: the number of columns, ``k <= D``.
        seed: seed of the draw; the same seed always gives the same matrix.

    Returns:
        Tensor (D, k), float64 on the CPU. The identity when ``D == k``.
    """
    if k < 1 or ambient_dim < k:
        raise ValueError(
            f"an isometry R^{k} -> R^{ambient_dim} needs 1 <= k <= D, got k={k}, D={ambient_dim}"
        )
    if ambient_dim == k:
        return torch.eye(k, dtype=torch.float64)
    gen = torch.Generator().manual_seed(seed)
    q, r = torch.linalg.qr(torch.randn(ambient_dim, k, generator=gen, dtype=torch.float64))
    # Fix the signs so that the factor is unique (diag(R) > 0).
    signs = torch.where(torch.diagonal(r) < 0, -1.0, 1.0).to(torch.float64)
    return q * signs


def _check_points(x: Tensor, ambient_dim: int, what: str = "x") -> Tensor:
    """Validate a batch of ambient points (n, D); integer input is converted to the default float dtype."""
    if not isinstance(x, Tensor):
        raise TypeError(f"{what} must be a torch.Tensor of shape (n, {ambient_dim}), got {type(x).__name__}")
    if x.ndim != 2 or x.shape[1] != ambient_dim:
        raise ValueError(f"{what} must have shape (n, {ambient_dim}), got {tuple(x.shape)}")
    if not x.is_floating_point():
        x = x.to(torch.get_default_dtype())
    return x


def _work_dtype(x: Tensor) -> torch.dtype:
    """float64 for iterative solvers, except on devices without float64 support."""
    return torch.float32 if x.device.type == "mps" else torch.float64


def _sample_device(generator: torch.Generator | None, device: torch.device | str | None) -> torch.device:
    """Where to draw random numbers: the generator's device if one is given, otherwise ``device``."""
    if generator is not None:
        return generator.device
    return torch.device(device) if device is not None else torch.device("cpu")


def _check_n(n: int) -> int:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
        raise ValueError(f"n must be a non-negative integer, got {n!r}")
    return int(n)


def _rejection_sample(
    n: int,
    propose: Callable[[int], Tensor],
    accept_prob: Callable[[Tensor], Tensor],
    generator: torch.Generator | None,
    device: torch.device,
) -> Tensor:
    """Draw n proposals (rows) and keep each with probability ``accept_prob`` until n are kept."""
    kept: list[Tensor] = []
    have = 0
    while have < n:
        m = 2 * (n - have) + 16
        cand = propose(m)
        u = torch.rand(m, generator=generator, device=device, dtype=torch.float64)
        cand = cand[u < accept_prob(cand)]
        kept.append(cand)
        have += cand.shape[0]
    return torch.cat(kept)[:n] if kept else propose(0)


# ----------------------------------------------------------------------------------------------------------
# Base classes
# ----------------------------------------------------------------------------------------------------------


class SyntheticManifold(abc.ABC):
    """A data manifold in R^D whose exact geometry is known at every point.

    Attributes:
        name: a short identifier.
        dim: intrinsic dimension d (for a union of pieces, the largest).
        ambient_dim: ambient dimension D.
    """

    def __init__(self, name: str, dim: int, ambient_dim: int) -> None:
        self.name = name
        self.dim = int(dim)
        self.ambient_dim = int(ambient_dim)

    @abc.abstractmethod
    def sample(
        self,
        n: int,
        *,
        generator: torch.Generator | None = None,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str | None = None,
    ) -> Tensor:
        """Points on the manifold.

        Args:
            n: number of points.
            generator: random generator (the global one when None); random numbers are drawn on its device.
            dtype: floating dtype of the result.
            device: device of the result.

        Returns:
            Tensor (n, D).
        """

    @abc.abstractmethod
    def tangent_basis(self, x: Tensor) -> Tensor:
        """Orthonormal basis of the tangent space at points on the manifold.

        Args:
            x: Tensor (n, D) of points on the manifold (other points: the basis at ``project(x)``).

        Returns:
            Tensor (n, D, d) with orthonormal columns; pieces of lower dimension than ``dim`` are padded with
            zero columns (see ``point_dimension``).
        """

    @abc.abstractmethod
    def project(self, x: Tensor) -> Tensor:
        """Nearest point on the manifold.

        Args:
            x: Tensor (n, D) of arbitrary ambient points.

        Returns:
            Tensor (n, D).
        """

    def point_dimension(self, x: Tensor) -> Tensor:
        """Intrinsic dimension at each point.

        Args:
            x: Tensor (n, D) of points on the manifold.

        Returns:
            LongTensor (n,).
        """
        x = _check_points(x, self.ambient_dim)
        return torch.full((x.shape[0],), self.dim, dtype=torch.long, device=x.device)

    def distance(self, x: Tensor) -> Tensor:
        """Euclidean distance to the manifold, ``‖x − project(x)‖``.

        Args:
            x: Tensor (n, D).

        Returns:
            Tensor (n,).
        """
        x = _check_points(x, self.ambient_dim)
        return torch.linalg.vector_norm(x - self.project(x), dim=-1)

    def geodesic_distance(self, x0: Tensor, x1: Tensor) -> Tensor:
        """Exact geodesic (intrinsic) distance between paired points on the manifold.

        Args:
            x0: Tensor (n, D).
            x1: Tensor (n, D).

        Returns:
            Tensor (n,).

        Raises:
            NotImplementedError: when no closed form is known for this manifold.
        """
        raise NotImplementedError(f"{type(self).__name__} ({self.name}) has no closed-form geodesic distance")

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, dim={self.dim}, ambient_dim={self.ambient_dim})"


class EmbeddedManifold(SyntheticManifold):
    """A manifold given in natural coordinates ``u ∈ R^k`` and placed in R^D by ``x = Q u + c``.

    Subclasses implement the geometry in natural coordinates (float64 or the caller's dtype):
    ``_sample_local``, ``_project_local``, ``_tangent_local`` and optionally ``_geodesic_local``. Because the
    manifold lies in the affine subspace ``c + span(Q)``, the nearest point of ``x`` is the nearest point of
    its orthogonal projection onto that subspace, so ``project(x) = Q π(Qᵀ(x − c)) + c`` exactly.

    Args:
        name: identifier.
        dim: intrinsic dimension d.
        local_dim: k, the dimension of the natural coordinates.
        ambient_dim: D >= k.
        seed: seed of the random isometry ``Q`` (ignored when ``embedding`` is given or D == k).
        embedding: optional explicit (D, k) matrix with orthonormal columns.
        offset: optional (D,) translation ``c``.
    """

    def __init__(
        self,
        name: str,
        dim: int,
        local_dim: int,
        ambient_dim: int,
        seed: int = 0,
        embedding: Tensor | None = None,
        offset: Tensor | None = None,
    ) -> None:
        super().__init__(name, dim, ambient_dim)
        self.local_dim = int(local_dim)
        if embedding is None:
            q = random_isometry(self.ambient_dim, self.local_dim, seed)
        else:
            q = torch.as_tensor(embedding).detach().to("cpu", torch.float64)
            if q.shape != (self.ambient_dim, self.local_dim):
                raise ValueError(
                    f"embedding must have shape ({ambient_dim}, {local_dim}), got {tuple(q.shape)}"
                )
            gram = q.T @ q
            if not torch.allclose(gram, torch.eye(self.local_dim, dtype=torch.float64), atol=1e-6):
                raise ValueError("embedding must have orthonormal columns (Qᵀ Q = I)")
        c = torch.zeros(self.ambient_dim, dtype=torch.float64)
        if offset is not None:
            c = torch.as_tensor(offset).detach().to("cpu", torch.float64).clone()
            if c.shape != (self.ambient_dim,):
                raise ValueError(f"offset must have shape ({ambient_dim},), got {tuple(c.shape)}")
        self.embedding: Tensor = q
        """Tensor (D, k), float64: the isometry Q."""
        self.offset: Tensor = c
        """Tensor (D,), float64: the translation c."""
        eye = torch.eye(self.local_dim, dtype=torch.float64)
        self._identity = q.shape[0] == q.shape[1] and torch.equal(q, eye) and not bool(c.any())

    # --- coordinates -------------------------------------------------------------------------------------

    def embed(self, u: Tensor) -> Tensor:
        """Map natural coordinates to ambient points, ``x = Q u + c``.

        Args:
            u: Tensor (n, k).

        Returns:
            Tensor (n, D), same dtype and device as ``u``.
        """
        if self._identity:
            return u
        q = self.embedding.to(device=u.device, dtype=u.dtype)
        return u @ q.T + self.offset.to(device=u.device, dtype=u.dtype)

    def coordinates(self, x: Tensor) -> Tensor:
        """Natural coordinates of the orthogonal projection of x onto the embedding subspace, ``Qᵀ(x − c)``.

        Args:
            x: Tensor (n, D).

        Returns:
            Tensor (n, k).
        """
        if self._identity:
            return x
        q = self.embedding.to(device=x.device, dtype=x.dtype)
        return (x - self.offset.to(device=x.device, dtype=x.dtype)) @ q

    # --- hooks in natural coordinates ---------------------------------------------------------------------

    @abc.abstractmethod
    def _sample_local(self, n: int, generator: torch.Generator | None, device: torch.device) -> Tensor:
        """Tensor (n, k), float64, on ``device``: points on the manifold in natural coordinates."""

    @abc.abstractmethod
    def _project_local(self, u: Tensor) -> Tensor:
        """Tensor (n, k) -> (n, k): nearest point in natural coordinates."""

    @abc.abstractmethod
    def _tangent_local(self, u: Tensor) -> Tensor:
        """Tensor (n, k) -> (n, k, d): orthonormal tangent basis at (the projection of) u."""

    def _geodesic_local(self, u0: Tensor, u1: Tensor) -> Tensor:
        """Tensor (n, k), (n, k) -> (n,): geodesic distance between (the projections of) u0 and u1."""
        raise NotImplementedError(f"{type(self).__name__} ({self.name}) has no closed-form geodesic distance")

    # --- public API ---------------------------------------------------------------------------------------

    def sample(
        self,
        n: int,
        *,
        generator: torch.Generator | None = None,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str | None = None,
    ) -> Tensor:
        n = _check_n(n)
        u = self._sample_local(n, generator, _sample_device(generator, device))
        out_device = torch.device(device) if device is not None else u.device
        return self.embed(u).to(device=out_device, dtype=dtype)

    def project(self, x: Tensor) -> Tensor:
        x = _check_points(x, self.ambient_dim)
        return self.embed(self._project_local(self.coordinates(x)))

    def tangent_basis(self, x: Tensor) -> Tensor:
        x = _check_points(x, self.ambient_dim)
        t_local = self._tangent_local(self.coordinates(x))  # (n, k, d)
        if self._identity:
            return t_local
        q = self.embedding.to(device=x.device, dtype=x.dtype)
        return torch.einsum("ak,nkd->nad", q, t_local)

    def geodesic_distance(self, x0: Tensor, x1: Tensor) -> Tensor:
        x0 = _check_points(x0, self.ambient_dim, "x0")
        x1 = _check_points(x1, self.ambient_dim, "x1")
        if x0.shape != x1.shape:
            raise ValueError(
                f"x0 and x1 must have the same shape, got {tuple(x0.shape)} and {tuple(x1.shape)}"
            )
        return self._geodesic_local(self.coordinates(x0), self.coordinates(x1))
