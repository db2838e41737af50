"""Discrete geodesics of a co-metric field by energy minimisation (SPEC §6).

A path of ``T`` points ``x_0, …, x_{T−1}`` with fixed ends has the discrete energy

    ``E = Σ_i Δ_iᵀ g(x_{i+½}) Δ_i``,  ``Δ_i = x_{i+1} − x_i``,  ``x_{i+½} = (x_i + x_{i+1}) / 2``,

with ``g = (G + δI)^{-1}`` applied by the field's ``metric`` (Woodbury for low-rank fields, SPEC §5). The
interior points are optimised by autograd through the field. Minimisers have (nearly) equal metric segment
lengths, since ``E ≥ L² / (T − 1)`` with equality exactly for equal segments (Cauchy–Schwarz).

The interior points are written as ``x = x_init + h · L^{-1/2} v`` with ``L = tridiag(−1, 2, −1)`` the path
Laplacian and ``h = ‖x₁ − x₀‖ / (T − 1)`` the straight segment length. The energy's Hessian is about
``2 L ⊗ g``, so this removes the ``O(T²)`` conditioning of the path; the default ``"lbfgs"`` solver (batched, one
independent L-BFGS per pair, so one hard pair does not slow the others) handles the conditioning of ``g`` itself.
On the unit sphere with a projector field it needs about 15–25 energy evaluations per pair for δ from 0.1 to
0.001 and ``T`` from 16 to 64. (Preconditioning by ``G + δI`` at the path points does worse: the radial dip of
a geodesic is governed by how ``g`` varies, not by ``g``.)

Paths that leave the data need a mean-centred field (SPEC §2): with an uncentred one the metric makes leaving the
data cheap and the geodesic cuts through empty space.

Example:
    >>> res = geodesic(field, x0, x1, n_points=32)          # x0, x1: (B, D)
    >>> res.path.shape, res.length, res.euclidean_length     # (B, 32, D), (B,), (B,)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from .evaluation import lerp
from .metrics.base import CoMetricField, as_field, check_points

__all__ = [
    "GEODESIC_METHODS",
    "GeodesicMethod",
    "GeodesicResult",
    "geodesic",
    "path_energy",
    "segment_energies",
]


@dataclass
class GeodesicResult:
    """A batch of discrete geodesics (SPEC §6). A single pair given as ``(D,)`` vectors drops the batch axis.

    Attributes:
        path: ``(B, T, D)`` points, ends equal to ``x0`` and ``x1``; detached.
        energy: ``(B,)`` discrete energy ``Σ_i Δ_iᵀ g(x_{i+½}) Δ_i``.
        length: ``(B,)`` metric length ``Σ_i sqrt(Δ_iᵀ g(x_{i+½}) Δ_i)``.
        euclidean_length: ``(B,)`` Euclidean polyline length ``Σ_i ‖Δ_i‖``.
        initial_energy: ``(B,)`` energy of the initial path (LERP or the given ``init``).
        converged: ``(B,)`` bool, whether the relative change of the pair's energy fell below ``tol``.
        steps: optimiser iterations performed (the most any pair needed).
        method: the solver's name in `GEODESIC_METHODS`.
    """

    path: Tensor
    energy: Tensor
    length: Tensor
    euclidean_length: Tensor
    initial_energy: Tensor
    converged: Tensor
    steps: int
    method: str


def segment_energies(field: CoMetricField, path: Tensor) -> Tensor:
    """Squared metric lengths ``Δ_iᵀ g(x_{i+½}) Δ_i`` of the segments of a batch of paths.

    All segments of all paths go through one call of ``field.metric`` on ``(B·(T−1), D)`` points.

    Args:
        field: the co-metric field; ``g = (G + δI)^{-1}`` is ``field.metric``.
        path: ``(B, T, D)`` points, ``T ≥ 2``.

    Returns:
        ``(B, T − 1)``.
    """
    if path.ndim != 3 or path.shape[1] < 2:
        raise ValueError(f"path must have shape (B, T, D) with T >= 2, got {tuple(path.shape)}")
    b, t, d = path.shape
    step = (path[:, 1:] - path[:, :-1]).reshape(-1, d)
    mid = (0.5 * (path[:, 1:] + path[:, :-1])).reshape(-1, d)
    return (step * field.metric(mid, step)).sum(-1).reshape(b, t - 1)


def path_energy(field: CoMetricField, path: Tensor) -> tuple[Tensor, Tensor]:
    """Discrete energy and metric length of a batch of paths (SPEC §6).

    Args:
        field: the co-metric field.
        path: ``(B, T, D)``.

    Returns:
        ``(energy, length)``, each ``(B,)``: ``Σ_i Δ_iᵀ g Δ_i`` and ``Σ_i sqrt(Δ_iᵀ g Δ_i)``.
    """
    seg = segment_energies(field, path)
    return seg.sum(-1), seg.clamp_min(0.0).sqrt().sum(-1)


def _path_preconditioner(m: int, dtype: torch.dtype, device: torch.device) -> Tensor:
    """``L^{-1/2}`` of the path Laplacian ``L = tridiag(−1, 2, −1)`` on ``m`` interior points, ``(m, m)``.

    ``L`` is diagonalised by the sine transform, ``S_jk = sqrt(2/(m+1)) sin(jkπ/(m+1))``, with eigenvalues
    ``λ_k = 4 sin²(kπ/(2(m+1)))``. Applying it densely costs ``O(m² D)`` per path, small beside the field.
    """
    k = torch.arange(1, m + 1, dtype=torch.float64)
    s = (2.0 / (m + 1)) ** 0.5 * torch.sin(torch.outer(k, k) * torch.pi / (m + 1))
    inv_sqrt = 0.5 / torch.sin(k * torch.pi / (2 * (m + 1)))
    return ((s * inv_sqrt) @ s).to(dtype=dtype, device=device)


class _Energy:
    """The energy of the interior points in whitened coordinates ``v`` (``(B, m, D)``), pair by pair.

    Interior points are ``base + h · (L^{-1/2} v)``; ``value_and_grad`` returns each pair's energy and the
    gradient of the energy divided by ``norm`` (the initial energy), so every pair's objective is about 1.
    Methods taking ``idx`` work on the subset ``idx`` of the pairs (``v`` then holds that subset only).
    """

    def __init__(self, field: CoMetricField, x0: Tensor, x1: Tensor, path0: Tensor) -> None:
        self.field = field
        self.x0, self.x1 = x0, x1
        self.base = path0[:, 1:-1]
        n = path0.shape[1]
        h = (x1 - x0).norm(dim=-1) / (n - 1)
        self.h = torch.where(h > 0, h, torch.ones_like(h))
        self.whiten = _path_preconditioner(n - 2, x0.dtype, x0.device)
        with torch.enable_grad():
            self.initial = segment_energies(field, path0).sum(-1).detach()
        bad = (~torch.isfinite(self.initial)).nonzero().flatten()
        if bad.numel():
            raise ValueError(
                f"the field gives a non-finite energy on the initial path of pairs {bad.tolist()}"
            )
        self.norm = self.initial.clamp_min(torch.finfo(self.initial.dtype).tiny)
        # The Hessian of energy / norm in v is about (2 h² / norm) I ⊗ g: its inverse scale.
        self.gamma = self.norm / (2.0 * self.h**2)

    def interior(self, v: Tensor, idx: Tensor | None = None) -> Tensor:
        base, h = (self.base, self.h) if idx is None else (self.base[idx], self.h[idx])
        return base + h.view(-1, 1, 1) * torch.einsum("ij,bjd->bid", self.whiten, v)

    def path(self, v: Tensor, idx: Tensor | None = None) -> Tensor:
        x0, x1 = (self.x0, self.x1) if idx is None else (self.x0[idx], self.x1[idx])
        return torch.cat([x0.unsqueeze(1), self.interior(v, idx), x1.unsqueeze(1)], dim=1)

    def value_and_grad(self, v: Tensor, idx: Tensor | None = None) -> tuple[Tensor, Tensor]:
        norm = self.norm if idx is None else self.norm[idx]
        with torch.enable_grad():
            v = v.detach().requires_grad_(True)
            energy = segment_energies(self.field, self.path(v, idx)).sum(-1)
            (grad,) = torch.autograd.grad((energy / norm).sum(), v)
        return energy.detach(), grad


def _dot(a: Tensor, b: Tensor) -> Tensor:
    return (a * b).sum(dim=(1, 2))


def _solve_lbfgs(
    problem: _Energy, v: Tensor, *, steps: int, lr: float, tol: float
) -> tuple[Tensor, Tensor, int]:
    """Batched L-BFGS, one independent problem per pair, with Armijo backtracking per pair.

    Every evaluation (all pairs still running, all their segments) is one batched field call. A pair stops once
    a full (not backtracked) step changes its energy by less than ``tol`` relatively. When its line search fails,
    or can only make a tiny change with a cut step, the pair's curvature memory is dropped and it restarts from
    the scaled gradient; the same from there (no descent left at the working precision) stops it.
    """
    history, c1, max_backtracks = 8, 1e-4, 20
    b = v.shape[0]
    energy, grad = problem.value_and_grad(v)
    converged = torch.zeros(b, dtype=torch.bool, device=v.device)
    gamma = problem.gamma.clone()
    mem_s: list[Tensor] = []
    mem_y: list[Tensor] = []
    mem_rho: list[Tensor] = []
    done = 0
    for it in range(steps):
        act = (~converged).nonzero().squeeze(-1)
        if act.numel() == 0:
            break
        done = it + 1
        va, ga = v[act], grad[act]
        fa = energy[act] / problem.norm[act]

        # Two-loop recursion; initial inverse Hessian γ I with γ = sᵀy / yᵀy of the last accepted step.
        q = ga.clone()
        alphas = []
        for s, y, rho in zip(reversed(mem_s), reversed(mem_y), reversed(mem_rho), strict=True):
            alpha = rho[act] * _dot(s[act], q)
            q = q - alpha.view(-1, 1, 1) * y[act]
            alphas.append(alpha)
        r = gamma[act].view(-1, 1, 1) * q
        for s, y, rho, alpha in zip(mem_s, mem_y, mem_rho, reversed(alphas), strict=True):
            beta = rho[act] * _dot(y[act], r)
            r = r + (alpha - beta).view(-1, 1, 1) * s[act]
        direction = -r
        slope = _dot(ga, direction)
        bad = ~(slope < 0)
        if bool(bad.any()):  # not a descent direction (numerics): fall back to the scaled gradient
            direction = torch.where(bad.view(-1, 1, 1), -gamma[act].view(-1, 1, 1) * ga, direction)
            slope = _dot(ga, direction)

        # Armijo backtracking, pair by pair; each trial evaluates only the pairs still searching.
        t = torch.full_like(fa, lr)
        new_v, new_e, new_g = va.clone(), energy[act].clone(), ga.clone()
        pending = torch.arange(act.numel(), device=v.device)
        full_step = torch.zeros(act.numel(), dtype=torch.bool, device=v.device)
        for trial_no in range(max_backtracks):
            trial = va[pending] + t[pending].view(-1, 1, 1) * direction[pending]
            e, g = problem.value_and_grad(trial, act[pending])
            f = e / problem.norm[act[pending]]
            ok = torch.isfinite(f) & (f <= fa[pending] + c1 * t[pending] * slope[pending])
            hit = pending[ok]
            new_v[hit], new_e[hit], new_g[hit] = trial[ok], e[ok], g[ok]
            if trial_no == 0:
                full_step[hit] = True
            # Safeguarded quadratic interpolation of the step for the rest.
            tp, sp, fp = t[pending][~ok], slope[pending][~ok], f[~ok]
            denom = 2.0 * (fp - fa[pending][~ok] - sp * tp)
            quad = torch.where(torch.isfinite(denom) & (denom > 0), -sp * tp**2 / denom, 0.5 * tp)
            pending = pending[~ok]
            if pending.numel() == 0:
                break
            t[pending] = torch.minimum(torch.maximum(quad, 0.1 * tp), 0.5 * tp)

        s_new = new_v - va
        y_new = new_g - ga
        sy = _dot(s_new, y_new)
        yy = _dot(y_new, y_new)
        curved = sy > 1e-12 * (_dot(s_new, s_new) * yy).sqrt()
        rho_new = torch.where(curved, 1.0 / sy, torch.zeros_like(sy))
        gamma[act] = torch.where(curved, sy / yy.clamp_min(torch.finfo(yy.dtype).tiny), gamma[act])
        for mem, new in ((mem_s, s_new), (mem_y, y_new), (mem_rho, rho_new)):
            full = torch.zeros((b, *new.shape[1:]), dtype=new.dtype, device=new.device)
            full[act] = new
            mem.append(full)
            if len(mem) > history:
                mem.pop(0)

        rel = (energy[act] - new_e).abs() / energy[act].abs().clamp_min(torch.finfo(energy.dtype).tiny)
        v[act], energy[act], grad[act] = new_v, new_e, new_g
        small = rel < tol
        stop = small & full_step
        # A failed line search, or a tiny change from a step the line search had to cut, means the direction is
        # poor: drop the pair's curvature memory and restart from the scaled gradient; stop if it was that already.
        stalled = small & ~full_step
        stalled[pending] = True
        if bool(stalled.any()):
            failed = act[stalled]
            had_memory = torch.zeros_like(failed, dtype=torch.bool)
            for rho in mem_rho[:-1]:
                had_memory |= rho[failed] != 0
                rho[failed] = 0.0
            mem_rho[-1][failed] = 0.0
            stop[stalled] = ~had_memory
        converged[act] = stop
    return v, converged, done


def _solve_adam(
    problem: _Energy, v: Tensor, *, steps: int, lr: float, tol: float
) -> tuple[Tensor, Tensor, int]:
    """``torch.optim.Adam`` on all pairs at once; stops when every pair has met the energy criterion once."""
    v = v.clone().requires_grad_(True)
    opt = torch.optim.Adam([v], lr=lr)
    converged = torch.zeros(v.shape[0], dtype=torch.bool, device=v.device)
    prev = problem.initial
    done = 0
    for it in range(steps):
        energy, grad = problem.value_and_grad(v)
        if it > 0:
            rel = (prev - energy).abs() / prev.abs().clamp_min(torch.finfo(prev.dtype).tiny)
            converged |= rel < tol
            if bool(converged.all()):
                break
        prev = energy
        v.grad = grad
        opt.step()
        done = it + 1
    return v.detach(), converged, done


Solver = Callable[..., tuple[Tensor, Tensor, int]]


@dataclass(frozen=True)
class GeodesicMethod:
    """An entry of `GEODESIC_METHODS`.

    Attributes:
        solve: ``solve(problem, v0, *, steps, lr, tol) -> (v, converged, steps)`` on the whitened
            interior coordinates ``v0`` ``(B, T − 2, D)``; ``problem`` (internal) evaluates energies and
            gradients pair by pair.
        lr: default step (``"lbfgs"``: the first trial step of each line search; ``"adam"``: Adam's rate in
            whitened segment-length units).
        tol: default tolerance on the relative change of each pair's energy between iterations.
    """

    solve: Solver
    lr: float
    tol: float


GEODESIC_METHODS: dict[str, GeodesicMethod] = {
    "lbfgs": GeodesicMethod(solve=_solve_lbfgs, lr=1.0, tol=1e-9),
    "adam": GeodesicMethod(solve=_solve_adam, lr=0.1, tol=1e-7),
}
"""Solvers of the discrete energy by name (the torchdiffeq ``SOLVERS`` pattern)."""


def _initial_path(init: Tensor | str, x0: Tensor, x1: Tensor, n_points: int | None, single: bool) -> Tensor:
    if isinstance(init, str):
        if init != "linear":
            raise ValueError(f"init must be 'linear' or a tensor path, got {init!r}")
        n = 16 if n_points is None else n_points
        if n < 2:
            raise ValueError(f"n_points counts both ends and must be >= 2, got {n}")
        return lerp(x0, x1, n)
    if not isinstance(init, Tensor):
        raise TypeError(f"init must be 'linear' or a Tensor, got {type(init).__name__}")
    path = init.detach().to(dtype=x0.dtype, device=x0.device)
    if single and path.ndim == 2:
        path = path.unsqueeze(0)
    b, d = x0.shape
    if path.ndim != 3 or path.shape[0] != b or path.shape[2] != d or path.shape[1] < 2:
        want = f"(T, {d})" if single else f"({b}, T, {d})"
        raise ValueError(f"init path must have shape {want} with T >= 2, got {tuple(init.shape)}")
    if n_points is not None and path.shape[1] != n_points:
        raise ValueError(f"init path has {path.shape[1]} points but n_points={n_points}")
    atol = 1e-6 * (1.0 + torch.maximum(x0.abs().amax(), x1.abs().amax()))
    for k, end, name in ((0, x0, "x0"), (-1, x1, "x1")):
        gap = (path[:, k] - end).abs().amax()
        if gap > atol:
            where = "start at x0" if k == 0 else "end at x1 (a gradient-flow path need not reach x1, SPEC §6)"
            raise ValueError(f"init path must {where}; max gap {gap.item():.3g}: set its end point to {name}")
    path = path.clone()
    path[:, 0] = x0
    path[:, -1] = x1
    return path


def geodesic(
    field_or_manifold: CoMetricField | object,
    x0: Tensor,
    x1: Tensor,
    *,
    n_points: int | None = None,
    init: Tensor | str = "linear",
    steps: int = 500,
    lr: float | None = None,
    tol: float | None = None,
    method: str = "lbfgs",
) -> GeodesicResult:
    """Discrete geodesics between pairs of points by minimising the path energy (SPEC §6).

    The interior points are optimised in whitened, segment-length units (module docstring) and each pair's energy
    is divided by its initial value, so ``lr`` and ``tol`` are scale-free. Each evaluation sends all segments of
    all pairs still running through one batched ``field.metric`` call; gradients flow through the field by
    autograd (``torch.autograd.grad``, so the field's own parameters get no ``.grad``). Works under
    ``torch.no_grad()``.

    Args:
        field_or_manifold: a `CoMetricField`, or an object whose ``.field`` is one (e.g. `LearnedDataManifold`).
            Use a mean-centred field (SPEC §2).
        x0: ``(B, D)`` start points, or ``(D,)`` for a single pair.
        x1: ``(B, D)`` end points, or ``(D,)``.
        n_points: points per path, both ends included; default 16 for ``init="linear"``, else the length of
            ``init`` (which must then agree).
        init: ``"linear"`` (straight line, LERP) or an initial path ``(B, T, D)`` (``(T, D)`` for a single pair),
            e.g. from a gradient flow; its ends must equal ``x0`` and ``x1``.
        steps: maximum solver iterations.
        lr: the solver's step; default from `GEODESIC_METHODS`.
        tol: a pair stops when one iteration changes its energy by less than ``tol`` relatively (for
            ``"lbfgs"``: a full, not backtracked, step); default from `GEODESIC_METHODS`, raised to ``10 ε`` of
            the dtype (``1.2e-6`` in float32).
        method: a key of `GEODESIC_METHODS`: ``"lbfgs"`` (batched per-pair L-BFGS, the default) or ``"adam"``.

    Returns:
        `GeodesicResult` with ``path`` ``(B, T, D)`` and per-pair energy, metric and Euclidean lengths.

    Raises:
        TypeError: if no co-metric field can be found.
        ValueError: for an unknown ``method``, bad shapes, or an ``init`` path whose ends are not ``x0``, ``x1``.
    """
    if method not in GEODESIC_METHODS:
        raise ValueError(
            f'Invalid method "{method}". Must be one of {{"' + '", "'.join(GEODESIC_METHODS) + '"}}.'
        )
    spec = GEODESIC_METHODS[method]
    lr = spec.lr if lr is None else float(lr)
    if steps < 0:
        raise ValueError(f"steps must be >= 0, got {steps}")
    field = as_field(field_or_manifold)

    single = isinstance(x0, Tensor) and x0.ndim == 1
    if single:
        x0 = x0.unsqueeze(0)
        x1 = x1.unsqueeze(0) if isinstance(x1, Tensor) else x1
    check_points(x0, field.dim, "x0")
    check_points(x1, field.dim, "x1")
    if x1.shape != x0.shape:
        raise ValueError(f"x0 and x1 must have the same shape, got {tuple(x0.shape)} and {tuple(x1.shape)}")
    x0, x1 = x0.detach(), x1.detach().to(x0)
    tol = max(spec.tol, 10.0 * torch.finfo(x0.dtype).eps) if tol is None else float(tol)

    path0 = _initial_path(init, x0, x1, n_points, single)
    problem = _Energy(field, x0, x1, path0)
    v = torch.zeros_like(problem.base)
    if path0.shape[1] > 2 and steps > 0:
        v, converged, done = spec.solve(problem, v, steps=steps, lr=lr, tol=tol)
    else:  # nothing to optimise (two points) or nothing done (steps = 0)
        converged = torch.full((x0.shape[0],), path0.shape[1] == 2, dtype=torch.bool, device=x0.device)
        done = 0

    path = problem.path(v).detach()
    with torch.enable_grad():  # some fields differentiate internally
        energy, length = (t.detach() for t in path_energy(field, path))
    euclid = (path[:, 1:] - path[:, :-1]).norm(dim=-1).sum(-1)
    result = GeodesicResult(
        path=path,
        energy=energy,
        length=length,
        euclidean_length=euclid,
        initial_energy=problem.initial,
        converged=converged,
        steps=done,
        method=method,
    )
    if single:
        for name in ("path", "energy", "length", "euclidean_length", "initial_energy", "converged"):
            setattr(result, name, getattr(result, name).squeeze(0))
    return result
