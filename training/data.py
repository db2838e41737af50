"""Data for training: synthetic manifolds with exact geometry, built-in data sets and user arrays.

Synthetic manifolds know their geometry at every point: the tangent space, the intrinsic dimension, the
nearest-point projection, the distance to the manifold and (where known in closed form) the geodesic distance.
Every manifold lives in low-dimensional natural coordinates ``u ∈ R^k`` and is placed in ``R^D`` by a fixed
isometric embedding ``x = Q u + c`` (``Q`` of shape (D, k) with orthonormal columns, ``c`` an offset, zero
unless stated). When ``D == k`` the embedding is the identity, so e.g. ``Sphere(2, 3)`` is the plain unit
sphere.

Everything is batched and dtype/device-agnostic: points are tensors of shape (n, D), tangent spaces are
returned as orthonormal bases of shape (n, D, d) (never as D×D projectors).

Shapes: ``n`` points, ``D`` ambient dimension, ``d`` intrinsic dimension, ``k`` natural-coordinate dimension.
"""

from __future__ import annotations

import abc
import math
import os
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

__all__ = [
    "DATASETS",
    "DEFAULT_SYNTHETIC_N",
    "Circle",
    "DataFileNotFoundError",
    "EmbeddedManifold",
    "FlatPatch",
    "Sphere",
    "SwissRoll",
    "SUPPORTED_EXTENSIONS",
    "SyntheticManifold",
    "Torus",
    "UnionManifold",
    "get_dataset",
    "load_array",
    "random_isometry",
    "resolve_data",
]

DEFAULT_SYNTHETIC_N = 10_000
"""Number of points ``resolve_data`` draws from a synthetic data set when ``n`` is not given."""


# ----------------------------------------------------------------------------------------------------------
# Helpers
# ----------------------------------------------------------------------------------------------------------


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


# ----------------------------------------------------------------------------------------------------------
# Concrete manifolds
# ----------------------------------------------------------------------------------------------------------


class Sphere(EmbeddedManifold):
    """The sphere S^d of a given radius, centred at the origin of R^{d+1}, isometrically embedded in R^D.

    Samples are exactly uniform. Projection: ``r u / ‖u‖`` (the origin maps to a fixed pole). Geodesic
    distance: ``r × angle``.

    Args:
        d: intrinsic dimension (S^1 is a circle).
        ambient_dim: D >= d + 1 (default d + 1, identity embedding).
        radius: sphere radius.
        seed: seed of the random isometric embedding.
        embedding: optional explicit (D, d + 1) isometry (overrides ``seed``).
        offset: optional (D,) centre.
    """

    def __init__(
        self,
        d: int,
        ambient_dim: int | None = None,
        radius: float = 1.0,
        seed: int = 0,
        *,
        embedding: Tensor | None = None,
        offset: Tensor | None = None,
    ) -> None:
        if d < 1:
            raise ValueError(f"sphere dimension must be >= 1, got {d}")
        if radius <= 0:
            raise ValueError(f"radius must be positive, got {radius}")
        ambient_dim = d + 1 if ambient_dim is None else ambient_dim
        super().__init__(f"sphere{d}", d, d + 1, ambient_dim, seed, embedding, offset)
        self.radius = float(radius)

    def _sample_local(self, n: int, generator: torch.Generator | None, device: torch.device) -> Tensor:
        g = torch.randn(n, self.local_dim, generator=generator, device=device, dtype=torch.float64)
        return self._project_local(g)

    def _unit(self, u: Tensor) -> Tensor:
        norm = torch.linalg.vector_norm(u, dim=-1, keepdim=True)
        pole = torch.zeros_like(u)
        pole[:, 0] = 1.0
        return torch.where(norm > 0, u / norm.clamp_min(torch.finfo(u.dtype).tiny), pole)

    def _project_local(self, u: Tensor) -> Tensor:
        return self.radius * self._unit(u)

    def _tangent_local(self, u: Tensor) -> Tensor:
        # Householder reflection H with H e_0 = ±p: its other columns are an orthonormal basis of p^⊥.
        p = self._unit(u)
        s = torch.where(p[:, :1] >= 0, 1.0, -1.0).to(p.dtype)
        v = p.clone()
        v[:, :1] += s
        vv = (v * v).sum(-1).clamp_min(1.0)[:, None, None]  # |v|^2 >= 2
        eye = torch.eye(self.local_dim, dtype=u.dtype, device=u.device)
        h = eye - 2.0 * v[:, :, None] * v[:, None, :] / vv
        return h[:, :, 1:]

    def _geodesic_local(self, u0: Tensor, u1: Tensor) -> Tensor:
        p0, p1 = self._unit(u0), self._unit(u1)
        diff = torch.linalg.vector_norm(p0 - p1, dim=-1)
        summ = torch.linalg.vector_norm(p0 + p1, dim=-1)
        return self.radius * 2.0 * torch.atan2(diff, summ)


class Circle(Sphere):
    """The circle S^1 of a given radius, isometrically embedded in R^D (identity in R^2).

    Args:
        ambient_dim: D >= 2.
        radius: circle radius.
        seed: seed of the random isometric embedding.
        embedding: optional explicit (D, 2) isometry.
        offset: optional (D,) centre.
    """

    def __init__(
        self,
        ambient_dim: int = 2,
        radius: float = 1.0,
        seed: int = 0,
        *,
        embedding: Tensor | None = None,
        offset: Tensor | None = None,
    ) -> None:
        super().__init__(1, ambient_dim, radius, seed, embedding=embedding, offset=offset)
        self.name = "circle"


class Torus(EmbeddedManifold):
    """The 2-torus of revolution in R^3 (then isometrically embedded in R^D).

    ``u(θ, φ) = ((R + r cos φ) cos θ, (R + r cos φ) sin θ, r sin φ)`` with major radius R > minor radius
    r > 0. Samples are uniform with respect to area. Projection is closed form: onto the core circle, then
    onto the tube.

    Args:
        ambient_dim: D >= 3.
        major: R, distance from the axis to the tube centre.
        minor: r, tube radius.
        seed: seed of the random isometric embedding.
        embedding: optional explicit (D, 3) isometry.
        offset: optional (D,) centre.
    """

    def __init__(
        self,
        ambient_dim: int = 3,
        major: float = 1.0,
        minor: float = 0.4,
        seed: int = 0,
        *,
        embedding: Tensor | None = None,
        offset: Tensor | None = None,
    ) -> None:
        if not 0 < minor < major:
            raise ValueError(f"need 0 < minor < major, got minor={minor}, major={major}")
        super().__init__("torus", 2, 3, ambient_dim, seed, embedding, offset)
        self.major = float(major)
        self.minor = float(minor)

    def _local_point(self, theta: Tensor, phi: Tensor) -> Tensor:
        ring = self.major + self.minor * torch.cos(phi)
        return torch.stack(
            [ring * torch.cos(theta), ring * torch.sin(theta), self.minor * torch.sin(phi)], -1
        )

    def parametrize(self, theta: Tensor, phi: Tensor) -> Tensor:
        """Points of the torus at angles (θ around the axis, φ around the tube).

        Args:
            theta: Tensor (n,).
            phi: Tensor (n,).

        Returns:
            Tensor (n, D).
        """
        return self.embed(self._local_point(theta, phi))

    def angles(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Angles (θ, φ), each Tensor (n,) in (−π, π], of ``project(x)`` for x (n, D)."""
        x = _check_points(x, self.ambient_dim)
        return self._angles_local(self.coordinates(x))

    def _angles_local(self, u: Tensor) -> tuple[Tensor, Tensor]:
        rho = torch.hypot(u[:, 0], u[:, 1])
        theta = torch.atan2(u[:, 1], u[:, 0])  # atan2(0, 0) = 0: a fixed choice on the axis
        phi = torch.atan2(u[:, 2], rho - self.major)  # atan2(0, 0) = 0: outward on the core circle
        return theta, phi

    def _sample_local(self, n: int, generator: torch.Generator | None, device: torch.device) -> Tensor:
        def propose(m: int) -> Tensor:
            return 2 * math.pi * torch.rand(m, 2, generator=generator, device=device, dtype=torch.float64)

        def accept(ang: Tensor) -> Tensor:  # area element ∝ R + r cos φ
            return (self.major + self.minor * torch.cos(ang[:, 1])) / (self.major + self.minor)

        ang = _rejection_sample(n, propose, accept, generator, device)
        return self._local_point(ang[:, 0], ang[:, 1])

    def _project_local(self, u: Tensor) -> Tensor:
        theta, phi = self._angles_local(u)
        return self._local_point(theta, phi)

    def _tangent_local(self, u: Tensor) -> Tensor:
        theta, phi = self._angles_local(u)
        ct, st, cp, sp = torch.cos(theta), torch.sin(theta), torch.cos(phi), torch.sin(phi)
        e_theta = torch.stack([-st, ct, torch.zeros_like(ct)], -1)
        e_phi = torch.stack([-sp * ct, -sp * st, cp], -1)
        return torch.stack([e_theta, e_phi], -1)


class SwissRoll(EmbeddedManifold):
    """The Swiss roll surface in R^3 (then isometrically embedded in R^D), a flat 2-manifold with boundary.

    ``u(t, h) = (t cos t, h, t sin t) / scale`` for ``t ∈ [t_min, t_max]`` and ``h ∈ [0, width]``. Samples are
    uniform with respect to area. Projection: h in closed form (clamped), t by the nearest point of a dense
    grid followed by Newton steps on ``‖γ(t) − p‖²``. The roll is intrinsically flat and its unrolled domain
    is a rectangle (convex), so the geodesic distance is exact: ``hypot(s(t₁) − s(t₀), h₁ − h₀) / scale`` with
    the arc length ``s(t) = (t √(1 + t²) + asinh t) / 2``.

    Args:
        ambient_dim: D >= 3.
        seed: seed of the random isometric embedding.
        t_min: start angle of the spiral (> 0).
        t_max: end angle of the spiral.
        width: extent of h (before scaling).
        scale: divisor of all coordinates (default ``t_max``, so the roll fits in the unit ball's span).
        grid_size: number of grid values of t in the projection's initial search.
        newton_steps: Newton refinement steps after the grid search.
        embedding: optional explicit (D, 3) isometry.
        offset: optional (D,) translation.
    """

    def __init__(
        self,
        ambient_dim: int = 3,
        seed: int = 0,
        *,
        t_min: float = 1.5 * math.pi,
        t_max: float = 4.5 * math.pi,
        width: float = 21.0,
        scale: float | None = None,
        grid_size: int = 512,
        newton_steps: int = 8,
        embedding: Tensor | None = None,
        offset: Tensor | None = None,
    ) -> None:
        if not 0 < t_min < t_max:
            raise ValueError(f"need 0 < t_min < t_max, got t_min={t_min}, t_max={t_max}")
        if width <= 0:
            raise ValueError(f"width must be positive, got {width}")
        super().__init__("swiss_roll", 2, 3, ambient_dim, seed, embedding, offset)
        self.t_min = float(t_min)
        self.t_max = float(t_max)
        self.width = float(width)
        self.scale = float(t_max if scale is None else scale)
        if self.scale <= 0:
            raise ValueError(f"scale must be positive, got {self.scale}")
        self.grid_size = int(grid_size)
        self.newton_steps = int(newton_steps)

    def _local_point(self, t: Tensor, h: Tensor) -> Tensor:
        return torch.stack([t * torch.cos(t), h, t * torch.sin(t)], -1) / self.scale

    def parametrize(self, t: Tensor, h: Tensor) -> Tensor:
        """Points of the roll at parameters (t, h), t ∈ [t_min, t_max], h ∈ [0, width].

        Args:
            t: Tensor (n,).
            h: Tensor (n,).

        Returns:
            Tensor (n, D).
        """
        return self.embed(self._local_point(t, h))

    def parameters(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Parameters (t, h), each Tensor (n,), of ``project(x)`` for x (n, D)."""
        x = _check_points(x, self.ambient_dim)
        return self._params_local(self.coordinates(x))

    @staticmethod
    def arc_length(t: Tensor) -> Tensor:
        """Arc length of the unscaled spiral ``(t cos t, t sin t)`` from 0 to t, elementwise."""
        return 0.5 * (t * torch.sqrt(1 + t * t) + torch.asinh(t))

    def _nearest_t(self, a: Tensor, c: Tensor) -> Tensor:
        """t minimising ``(a − t cos t)² + (c − t sin t)²`` over [t_min, t_max]; a, c (n,) unscaled."""
        grid = torch.linspace(self.t_min, self.t_max, self.grid_size, dtype=a.dtype, device=a.device)
        gx, gz = grid * torch.cos(grid), grid * torch.sin(grid)
        chunk = max(1, (1 << 22) // self.grid_size)
        starts = []
        for i in range(0, a.shape[0], chunk):
            ai, ci = a[i : i + chunk, None], c[i : i + chunk, None]
            starts.append(grid[((ai - gx) ** 2 + (ci - gz) ** 2).argmin(dim=1)])
        t0 = torch.cat(starts) if starts else a.new_zeros(0)

        def sqdist(t: Tensor) -> Tensor:
            return (a - t * torch.cos(t)) ** 2 + (c - t * torch.sin(t)) ** 2

        t = t0
        for _ in range(self.newton_steps):
            cos, sin = torch.cos(t), torch.sin(t)
            rx, rz = t * cos - a, t * sin - c  # γ(t) − p
            d1x, d1z = cos - t * sin, sin + t * cos  # γ'(t)
            d2x, d2z = -2 * sin - t * cos, 2 * cos - t * sin  # γ''(t)
            grad = rx * d1x + rz * d1z
            speed2 = d1x * d1x + d1z * d1z
            hess = speed2 + rx * d2x + rz * d2z
            hess = torch.where(hess > 0.1 * speed2, hess, speed2)  # Gauss–Newton where Newton is unsafe
            t = (t - grad / hess).clamp(self.t_min, self.t_max)
        return torch.where(sqdist(t) <= sqdist(t0), t, t0)

    def _params_local(self, u: Tensor) -> tuple[Tensor, Tensor]:
        wd = _work_dtype(u)
        v = u.to(wd) * self.scale
        t = self._nearest_t(v[:, 0], v[:, 2])
        h = v[:, 1].clamp(0.0, self.width)
        return t, h

    def _sample_local(self, n: int, generator: torch.Generator | None, device: torch.device) -> Tensor:
        span = self.t_max - self.t_min

        def propose(m: int) -> Tensor:
            r = torch.rand(m, 2, generator=generator, device=device, dtype=torch.float64)
            return torch.stack([self.t_min + span * r[:, 0], self.width * r[:, 1]], -1)

        def accept(p: Tensor) -> Tensor:  # area element ∝ |γ'(t)| = sqrt(1 + t²)
            return torch.sqrt(1 + p[:, 0] ** 2) / math.sqrt(1 + self.t_max**2)

        p = _rejection_sample(n, propose, accept, generator, device)
        return self._local_point(p[:, 0], p[:, 1])

    def _project_local(self, u: Tensor) -> Tensor:
        t, h = self._params_local(u)
        return self._local_point(t, h).to(u.dtype)

    def _tangent_local(self, u: Tensor) -> Tensor:
        t, _ = self._params_local(u)
        cos, sin = torch.cos(t), torch.sin(t)
        speed = torch.sqrt(1 + t * t)
        zero = torch.zeros_like(t)
        e_t = torch.stack([(cos - t * sin) / speed, zero, (sin + t * cos) / speed], -1)
        e_h = torch.stack([zero, torch.ones_like(t), zero], -1)
        return torch.stack([e_t, e_h], -1).to(u.dtype)

    def _geodesic_local(self, u0: Tensor, u1: Tensor) -> Tensor:
        t0, h0 = self._params_local(u0)
        t1, h1 = self._params_local(u1)
        ds = self.arc_length(t1) - self.arc_length(t0)
        return (torch.hypot(ds, h1 - h0) / self.scale).to(u0.dtype)


class FlatPatch(EmbeddedManifold):
    """A flat d-dimensional cube ``[−a, a]^d`` (a = half_width), isometrically placed in R^D.

    Projection clamps the coordinates; the geodesic distance is the Euclidean one (the cube is convex).

    Args:
        d: intrinsic dimension.
        ambient_dim: D >= d (default d).
        half_width: a, half the side length.
        seed: seed of the random isometric embedding.
        embedding: optional explicit (D, d) isometry.
        offset: optional (D,) centre of the cube.
    """

    def __init__(
        self,
        d: int,
        ambient_dim: int | None = None,
        half_width: float = 1.0,
        seed: int = 0,
        *,
        embedding: Tensor | None = None,
        offset: Tensor | None = None,
    ) -> None:
        if half_width <= 0:
            raise ValueError(f"half_width must be positive, got {half_width}")
        ambient_dim = d if ambient_dim is None else ambient_dim
        super().__init__(f"patch{d}", d, d, ambient_dim, seed, embedding, offset)
        self.half_width = float(half_width)

    def _sample_local(self, n: int, generator: torch.Generator | None, device: torch.device) -> Tensor:
        r = torch.rand(n, self.local_dim, generator=generator, device=device, dtype=torch.float64)
        return self.half_width * (2 * r - 1)

    def _project_local(self, u: Tensor) -> Tensor:
        return u.clamp(-self.half_width, self.half_width)

    def _tangent_local(self, u: Tensor) -> Tensor:
        return torch.eye(self.local_dim, dtype=u.dtype, device=u.device).repeat(u.shape[0], 1, 1)

    def _geodesic_local(self, u0: Tensor, u1: Tensor) -> Tensor:
        return torch.linalg.vector_norm(self._project_local(u1) - self._project_local(u0), dim=-1)


class UnionManifold(SyntheticManifold):
    """A disjoint union of manifolds, possibly of different dimensions, in the same R^D.

    ``dim`` is the largest piece dimension; ``tangent_basis`` pads lower-dimensional pieces with zero columns
    and ``point_dimension`` reports the dimension of the piece each point belongs to (the nearest piece). The
    pieces are assumed well separated (each point's nearest piece is the one it was sampled from).

    Default (``pieces=None``): the unit circle in the plane z = 0 (d = 1) and the square
    ``{x = 3, |y| <= 1, |z| <= 1}`` (d = 2), distance 2 apart, in R^3, isometrically embedded in R^D.

    Args:
        pieces: the pieces, all with the same ``ambient_dim``.
        weights: relative share of the samples per piece (default equal).
        ambient_dim: D for the default pieces (default 3); must match the pieces when they are given.
        seed: seed of the random isometric embedding of the default pieces.
        name: identifier.
    """

    def __init__(
        self,
        pieces: Sequence[SyntheticManifold] | None = None,
        *,
        weights: Sequence[float] | None = None,
        ambient_dim: int | None = None,
        seed: int = 0,
        name: str = "union",
    ) -> None:
        if pieces is None:
            pieces = self._circle_and_square(3 if ambient_dim is None else ambient_dim, seed)
        pieces = list(pieces)
        if not pieces:
            raise ValueError("a union needs at least one piece")
        dims = {p.ambient_dim for p in pieces}
        if len(dims) != 1 or (ambient_dim is not None and ambient_dim not in dims):
            raise ValueError(f"all pieces must share one ambient dimension, got {sorted(dims)}")
        if weights is None:
            weights = [1.0] * len(pieces)
        if len(weights) != len(pieces) or any(w < 0 for w in weights) or sum(weights) <= 0:
            raise ValueError(f"weights must be {len(pieces)} non-negative numbers with a positive sum")
        super().__init__(name, max(p.dim for p in pieces), pieces[0].ambient_dim)
        self.pieces = pieces
        total = float(sum(weights))
        self.weights = [float(w) / total for w in weights]

    @staticmethod
    def _circle_and_square(ambient_dim: int, seed: int) -> list[SyntheticManifold]:
        q = random_isometry(ambient_dim, 3, seed)  # columns play the roles of the x, y, z axes
        circle = Circle(ambient_dim, embedding=q[:, [0, 1]])
        square = FlatPatch(2, ambient_dim, half_width=1.0, embedding=q[:, [1, 2]], offset=3.0 * q[:, 0])
        return [circle, square]

    def _counts(self, n: int) -> list[int]:
        """Split n by the weights (largest remainder)."""
        raw = [w * n for w in self.weights]
        counts = [int(math.floor(r)) for r in raw]
        order = sorted(range(len(raw)), key=lambda i: counts[i] - raw[i])
        for i in order[: n - sum(counts)]:
            counts[i] += 1
        return counts

    def sample(
        self,
        n: int,
        *,
        generator: torch.Generator | None = None,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str | None = None,
    ) -> Tensor:
        n = _check_n(n)
        parts = [
            p.sample(c, generator=generator, dtype=torch.float64, device=_sample_device(generator, device))
            for p, c in zip(self.pieces, self._counts(n), strict=True)
        ]
        x = torch.cat(parts)
        perm = torch.randperm(n, generator=generator, device=x.device)  # mix the pieces
        out_device = torch.device(device) if device is not None else x.device
        return x[perm].to(device=out_device, dtype=dtype)

    def _candidates(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Projections onto every piece, (P, n, D), and the index of the nearest piece, (n,)."""
        proj = torch.stack([p.project(x) for p in self.pieces])
        dist = torch.linalg.vector_norm(proj - x[None], dim=-1)
        return proj, dist.argmin(dim=0)

    def piece_index(self, x: Tensor) -> Tensor:
        """Index of the nearest piece, LongTensor (n,), for x (n, D)."""
        x = _check_points(x, self.ambient_dim)
        return self._candidates(x)[1]

    def project(self, x: Tensor) -> Tensor:
        x = _check_points(x, self.ambient_dim)
        proj, idx = self._candidates(x)
        return proj.gather(0, idx[None, :, None].expand(1, -1, x.shape[1]))[0]

    def point_dimension(self, x: Tensor) -> Tensor:
        idx = self.piece_index(x)
        dims = torch.tensor([p.dim for p in self.pieces], dtype=torch.long, device=idx.device)
        return dims[idx]

    def tangent_basis(self, x: Tensor) -> Tensor:
        x = _check_points(x, self.ambient_dim)
        idx = self.piece_index(x)
        out = x.new_zeros(x.shape[0], self.ambient_dim, self.dim)
        for i, piece in enumerate(self.pieces):
            mask = idx == i
            if bool(mask.any()):
                out[mask, :, : piece.dim] = piece.tangent_basis(x[mask])
        return out

    def geodesic_distance(self, x0: Tensor, x1: Tensor) -> Tensor:
        """Geodesic distance within a piece (that piece's closed form); ``inf`` between different pieces."""
        if x0.shape != x1.shape:
            raise ValueError(
                f"x0 and x1 must have the same shape, got {tuple(x0.shape)} and {tuple(x1.shape)}"
            )
        i0, i1 = self.piece_index(x0), self.piece_index(x1)
        out = torch.full((x0.shape[0],), math.inf, dtype=x0.dtype, device=x0.device)
        for i, piece in enumerate(self.pieces):
            mask = (i0 == i) & (i1 == i)
            if bool(mask.any()):
                out[mask] = piece.geodesic_distance(x0[mask], x1[mask]).to(out.dtype)
        return out


# ----------------------------------------------------------------------------------------------------------
# Built-in data sets
# ----------------------------------------------------------------------------------------------------------

DATASETS: dict[str, Callable[[], SyntheticManifold] | None] = {
    "circle": partial(Circle, 2),
    "sphere": partial(Sphere, 2, 3),
    "sphere8": partial(Sphere, 8, 64),
    "torus": partial(Torus, 3),
    "swiss_roll": partial(SwissRoll, 3),
    "union": partial(UnionManifold, ambient_dim=3),
    "digits": None,
}
"""Built-in data sets: name -> factory of its (fixed, seed-0-embedded) manifold, or None for real data."""


def _load_digits(n: int, generator: torch.Generator, dtype: torch.dtype) -> Tensor:
    try:
        from sklearn.datasets import load_digits
    except ImportError as err:
        raise ImportError(
            "the 'digits' data set needs scikit-learn (an optional dependency): pip install scikit-learn"
        ) from err
    images = load_digits().images  # (1797, 8, 8), values 0..16
    total = images.shape[0]
    if n > total:
        raise ValueError(f"the 'digits' data set has {total} images, asked for n={n} (use n <= 0 for all)")
    data = torch.from_numpy(np.array(images, dtype=np.float64) / 16.0)
    if 0 < n < total:
        keep = torch.randperm(total, generator=generator)[:n].sort().values
        data = data[keep]
    return data.to(dtype)


def get_dataset(
    name: str, n: int, *, seed: int = 0, dtype: torch.dtype = torch.float32
) -> tuple[Tensor, SyntheticManifold | None]:
    """A built-in data set and its manifold.

    The manifold (including any random embedding) is fixed; ``seed`` only seeds the sampling, so the same call
    gives the same data and different seeds give different samples of the same manifold.

    Args:
        name: one of ``DATASETS``: "circle" (S^1 in R^2), "sphere" (S^2 in R^3), "sphere8" (S^8 in R^64,
            random isometric embedding), "torus" (R^3), "swiss_roll" (R^3), "union" (circle + square, R^3),
            "digits" (scikit-learn's 8×8 digits, scaled to [0, 1]).
        n: number of points (> 0). For "digits": at most 1797, and n <= 0 means all.
        seed: seed of the sampling generator.
        dtype: floating dtype of the data.

    Returns:
        ``(data, manifold)``: data Tensor (n, D) (digits: (n, 8, 8) and manifold None).

    Raises:
        ValueError: unknown name (the message lists the valid ones) or bad n.
        ImportError: "digits" without scikit-learn.
    """
    if name not in DATASETS:
        raise ValueError(f"unknown data set {name!r}; valid names: {', '.join(DATASETS)}")
    generator = torch.Generator().manual_seed(seed)
    factory = DATASETS[name]
    if factory is None:
        return _load_digits(n, generator, dtype), None
    if not isinstance(n, int) or n <= 0:
        raise ValueError(f"n must be a positive integer for the synthetic data set {name!r}, got {n!r}")
    manifold = factory()
    manifold.name = name
    return manifold.sample(n, generator=generator, dtype=dtype), manifold


# ----------------------------------------------------------------------------------------------------------
# User arrays
# ----------------------------------------------------------------------------------------------------------

SUPPORTED_EXTENSIONS = (".npy", ".npz", ".pt", ".pth")


class DataFileNotFoundError(FileNotFoundError, ValueError):
    """A data file does not exist (both a FileNotFoundError and a ValueError)."""


def _select_entry(keys: Sequence[str], label: str) -> str:
    if not keys:
        raise ValueError(f"{label}: contains no arrays")
    if len(keys) == 1:
        return keys[0]
    if "data" in keys:
        return "data"
    raise ValueError(f"{label}: holds several arrays {sorted(keys)}; name the one to use 'data'")


_NPY_MAGIC = b"\x93NUMPY"
_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")  # a zip archive (.npz), possibly empty


def _check_magic(path: Path, label: str) -> None:
    """Refuse a file whose first bytes are not those of its format (before np.load guesses "pickle")."""
    with open(path, "rb") as fh:
        head = fh.read(len(_NPY_MAGIC))
    if head.startswith(_NPY_MAGIC) or head.startswith(_ZIP_MAGIC):
        return
    what = ("a Python pickle, not NumPy data" if head[:1] == b"\x80"
            else "no NumPy (.npy) header and no zip (.npz) signature")
    raise ValueError(f"{label}: is not a valid {path.suffix.lower()} file ({what}; first bytes {head!r})")


def _read_numpy(path: Path, label: str) -> np.ndarray:
    pickled = (
        f"{label}: holds a pickled Python object array; refusing to load it (np.load allow_pickle=False)"
    )
    _check_magic(path, label)
    try:
        # Open the file ourselves: np.load leaks its own handle when a zip archive is corrupt.
        with open(path, "rb") as fh:
            loaded = np.load(fh, allow_pickle=False)
            if isinstance(loaded, np.lib.npyio.NpzFile):
                with loaded:
                    return loaded[_select_entry(list(loaded.files), label)]
            return loaded
    except ValueError as err:
        if "allow_pickle" in str(err):
            raise ValueError(pickled) from err
        if str(err).startswith(label):
            raise
        raise ValueError(f"{label}: corrupt or unreadable ({err})") from err
    except Exception as err:
        raise ValueError(f"{label}: corrupt or unreadable ({type(err).__name__}: {err})") from err


def _read_torch(path: Path, label: str) -> Tensor:
    try:
        obj = torch.load(path, weights_only=True, map_location="cpu")
    except Exception as err:
        raise ValueError(
            f"{label}: corrupt, unreadable or not a weights-only torch file ({type(err).__name__}: {err})"
        ) from err
    if isinstance(obj, dict):
        keys = {str(k): k for k in obj}  # keys may be ints or other non-strings
        obj = obj[keys[_select_entry(list(keys), label)]]
    if not isinstance(obj, Tensor):
        raise ValueError(
            f"{label}: holds a {type(obj).__name__}, expected a tensor or a dict with key 'data'"
        )
    return obj


def _read_file(path: Path, label: str) -> np.ndarray | Tensor:
    if not path.exists():
        raise DataFileNotFoundError(f"{label}: file does not exist")
    if path.is_dir():
        raise ValueError(f"{label}: is a directory, expected a file")
    suffix = path.suffix.lower()
    if suffix not in SUPPORTED_EXTENSIONS:
        raise ValueError(
            f"{label}: unsupported extension {suffix or '(none)'!r}; "
            f"supported: {', '.join(SUPPORTED_EXTENSIONS)}"
        )
    if suffix in (".npy", ".npz"):
        return _read_numpy(path, label)
    return _read_torch(path, label)


MAX_DENSE_FROM_SPARSE = 2**27  # values (512 MiB in float32): larger sparse tensors are refused, not densified


def _densify(raw: Tensor, label: str) -> Tensor:
    """A sparse tensor as a dense one when it has at most `MAX_DENSE_FROM_SPARSE` values; refuse it otherwise."""
    if raw.layout == torch.strided:
        return raw
    if raw.numel() > MAX_DENSE_FROM_SPARSE:
        raise ValueError(
            f"{label}: is a sparse tensor ({raw.layout}) of shape {tuple(raw.shape)} whose dense form has "
            f"{raw.numel():,} values (more than {MAX_DENSE_FROM_SPARSE:,}); store the data dense"
        )
    try:
        return raw.to_dense()
    except (RuntimeError, NotImplementedError) as err:
        raise ValueError(f"{label}: a sparse tensor ({raw.layout}) that cannot be made dense: {err}") from None


def _validate(raw: np.ndarray | Tensor, label: str) -> Tensor:
    shape = tuple(raw.shape)
    if isinstance(raw, np.ndarray):
        if raw.dtype.kind not in "biuf":
            raise ValueError(
                f"{label}: non-numeric dtype {raw.dtype}; expected real numbers (bool, integer or floating)"
            )
        is_f64 = raw.dtype == np.float64
    else:
        if raw.is_complex() or raw.is_quantized:
            raise ValueError(f"{label}: non-numeric dtype {raw.dtype}; expected real numbers")
        raw = _densify(raw, label)
        is_f64 = raw.dtype == torch.float64
    if len(shape) < 2:
        hint = " (reshape N scalars to (N, 1))" if len(shape) == 1 else ""
        raise ValueError(
            f"{label}: expected an array of shape (N, ...) with at least 2 axes, got shape {shape}{hint}"
        )
    if shape[0] == 0:
        raise ValueError(f"{label}: is empty (0 samples, shape {shape})")
    if 0 in shape[1:]:
        raise ValueError(f"{label}: has an empty feature axis (shape {shape})")
    target = torch.float64 if is_f64 else torch.float32
    if isinstance(raw, np.ndarray):
        x = torch.from_numpy(np.array(raw, dtype=np.float64 if is_f64 else np.float32))
    else:
        x = raw.detach().to(dtype=target, copy=True)
    bad = ~torch.isfinite(x)
    count = int(bad.sum())
    if count:
        bad_rows = bad.reshape(shape[0], -1).any(dim=1).nonzero()[:, 0]
        raise ValueError(
            f"{label}: contains {count} non-finite value(s) (NaN or inf) in {bad_rows.numel()} row(s); "
            f"the first bad row is index {int(bad_rows[0])}"
        )
    if shape[0] < 2:
        raise ValueError(f"{label}: needs at least 2 samples, got {shape[0]}")
    return x


def load_array(source: str | os.PathLike[str] | np.ndarray | Tensor, *, name: str = "data") -> Tensor:
    """Load and validate a user data array.

    Args:
        source: a path to ``.npy``, ``.npz`` (a single array, or the one named "data"), ``.pt``/``.pth``
            (``torch.load(..., weights_only=True)``: a tensor, or a dict with a single tensor or key "data"),
            or an in-memory ``np.ndarray`` / ``torch.Tensor``. Pickled object arrays are refused without
            running any code.
        name: how an in-memory array is called in error messages (files are named by their path).

    Returns:
        Tensor (N, ...), N >= 2, a new copy: float64 when the input is float64, float32 otherwise.

    Raises:
        DataFileNotFoundError: the file does not exist (also a ValueError).
        ValueError: unsupported extension, unreadable/corrupt file (a ``.npy``/``.npz`` without its format's
            signature is "not a valid .npy file"), pickled objects, non-numeric dtype, a sparse tensor too large
            to densify (smaller ones are made dense), fewer than 2 axes, no samples, NaN/inf values, fewer
            than 2 samples.
        TypeError: ``source`` is of an unsupported type.
    """
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        label = f"data file '{path}'"
        raw = _read_file(path, label)
    elif isinstance(source, (np.ndarray, Tensor)):
        label = f"array {name!r}"
        raw = source
    else:
        raise TypeError(
            f"{name}: expected a file path, np.ndarray or torch.Tensor, got {type(source).__name__}"
        )
    return _validate(raw, label)


def resolve_data(
    source: str | os.PathLike[str] | np.ndarray | Tensor, *, n: int | None = None, seed: int = 0
) -> tuple[Tensor, SyntheticManifold | None]:
    """Data from a built-in data set name or from a user array / file.

    A string that names a built-in data set (and is not an existing file) goes to ``get_dataset`` (n defaults
    to ``DEFAULT_SYNTHETIC_N`` for synthetic sets and to all images for "digits"); anything else goes to
    ``load_array`` and, when ``n > 0`` is given, keeps the first n rows (``seed`` is then unused).

    Args:
        source: data set name, file path or in-memory array.
        n: number of points (None or <= 0 for the default / all).
        seed: sampling seed for built-in data sets.

    Returns:
        ``(data, manifold)``; manifold is None for real data.
    """
    if isinstance(source, str) and source in DATASETS and not Path(source).exists():
        if n is None:
            n = 0 if DATASETS[source] is None else DEFAULT_SYNTHETIC_N
        return get_dataset(source, n, seed=seed)
    if isinstance(source, str) and not Path(source).exists() and not Path(source).suffix:
        raise ValueError(
            f"{source!r} is neither a built-in data set ({', '.join(DATASETS)}) nor an existing file"
        )
    data = load_array(source)
    if n is not None and n > 0:
        if n > data.shape[0]:
            raise ValueError(f"asked for n={n} rows but the data has only {data.shape[0]}")
        if n < 2:
            raise ValueError(f"n must be at least 2, got {n}")
        data = data[:n].clone()
    return data, None
