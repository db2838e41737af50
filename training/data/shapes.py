"""The synthetic manifolds themselves: spheres and circles, the torus, the swiss roll and a flat patch."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .base import (
    EmbeddedManifold,
    _check_points,
    _rejection_sample,
    _work_dtype,
)

__all__ = ["Circle", "FlatPatch", "Sphere", "SwissRoll", "Torus"]


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
