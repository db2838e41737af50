"""Solvers of the discrete geodesic energy (SPEC §6), used by `learned_manifold.geodesics.geodesic`.

The energy of a path ``x_0, …, x_{T−1}`` is ``E = Σ_i Δ_iᵀ g(x_{i+½}) Δ_i`` (`segment_energies`; `path_energy`
measures a finished path chunk by chunk: both live in `learned_manifold.path_energies`). Interior
points are optimised in whitened coordinates ``x = x_init + h · L^{-1/2} v`` (`_Energy`, ``L`` the path
Laplacian), by batched per-pair L-BFGS (`_solve_lbfgs`) or Adam; `verify_minimum` then checks honestly that no
short descent step from the result still lowers the energy (and `geodesic_saddles.refute_saddles` that no small
kick does: a gradient step cannot leave a saddle).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from .metrics.base import CoMetricField, NonFiniteFieldOutput
from .path_energies import path_energy, segment_energies
from .precision import full_precision

__all__ = [
    "GEODESIC_METHODS",
    "LANDING_STEPS",
    "RESOLUTION_COARSE",
    "RESOLUTION_GROWTH",
    "RESOLUTION_SUBSTEPS",
    "RESOLUTION_TOL",
    "GeodesicMethod",
    "mean_segment",
    "path_energy",
    "resolution",
    "segment_energies",
    "verify_minimum",
]

RESOLUTION_SUBSTEPS = 16
"""Sub-segments per segment at which `resolution` re-measures a solved path's length (one metric call on
``16 (T − 1)`` points per path: a few percent of a solve)."""

RESOLUTION_COARSE = 4
"""Sub-segments of the coarser re-measurement `geodesic_checks.unresolved` compares `RESOLUTION_SUBSTEPS` with."""

RESOLUTION_GROWTH = 0.05
"""A solved path whose re-measured length grows by more than this fraction from `RESOLUTION_COARSE` to
`RESOLUTION_SUBSTEPS` sub-segments is not resolved: on a resolved path the sub-point lengths have converged (at
most 0.3% on the Poincaré half-plane, 1% on k-NN fields of S²), while a segment across which the metric changes by
orders of magnitude keeps growing (the 16-point half-plane geodesics 5–35% off the closed form, "converged":
9–21%), below the ratio `RESOLUTION_TOL` would see."""

RESOLUTION_TOL = 1.0
"""A solved path whose length, re-measured on `RESOLUTION_SUBSTEPS` sub-segments per segment, exceeds its discrete
length by more than this fraction (twice as long) is not resolved: the metric rises between its points (a VAE
decoder's uncertainty between codes: 15 to 76 times), where the midpoint rule does not look, and its energy and
length are not the path's. Not tighter: the tangent planes of a k-NN CDC with few neighbours turn by a few degrees
between samples, and at the solver's regularisation (normals 10³ times dearer) a resolved path re-measures 1.3 to
1.5 times as long."""


def _path_preconditioner(m: int, dtype: torch.dtype, device: torch.device) -> Tensor:
    """``L^{-1/2}`` of the path Laplacian ``L = tridiag(−1, 2, −1)`` on ``m`` interior points, ``(m, m)``.

    ``L`` is diagonalised by the sine transform, ``S_jk = sqrt(2/(m+1)) sin(jkπ/(m+1))``, with eigenvalues
    ``λ_k = 4 sin²(kπ/(2(m+1)))``. Applying it densely costs ``O(m² D)`` per path, small beside the field.
    """
    k = torch.arange(1, m + 1, dtype=torch.float64)
    s = (2.0 / (m + 1)) ** 0.5 * torch.sin(torch.outer(k, k) * torch.pi / (m + 1))
    inv_sqrt = 0.5 / torch.sin(k * torch.pi / (2 * (m + 1)))
    return ((s * inv_sqrt) @ s).to(dtype=dtype, device=device)


LANDING_STEPS = 2
"""Denoiser steps ``x = P(P(z))`` that land a geodesic's interior points (``landing=True``; SPEC §6).

One posterior-mean step ``P(z) = x̂(z, σ)`` is not a projection: from a point between two sheets of the data it
returns a blend of both, off the data, and the energy minimiser found such shortcuts. On a swiss roll in R¹⁰
(three CLI-trained models, pairs on adjacent layers 52–67 apart along the roll) one step left paths up to 0.58 off
the roll, two steps at most 0.021 (`benchmarks/RESULTS.md`, eleventh session), in no more solver time."""


def end_offsets(field: CoMetricField, x0: Tensor, x1: Tensor, n: int, anchors: Tensor | None = None) -> Tensor:
    """Offsets ``(B, n − 2, D)`` added to a landed geodesic's interior points (SPEC §6, landing).

    The ends ``x0``, ``x1`` ``(B, D)`` are fixed, but they need not be fixed points of the landing ``P(P(·))``:
    a data point of a curved manifold lies about ``dσ²/(2R)`` from the denoiser's image (its posterior mean lies
    inside), and any user's point may be off it. Without correction every path then jumps by that offset at
    both ends, through the metric's expensive normal directions: on a learned unit sphere (σ = 0.125) a pair
    ``x0 = x1`` came back with metric length 0.18 instead of 0, and a 10° arc grew 2% → 16% longer from 4 to
    32 points, each "converged". The offsets ``o = x − P(P(x))`` of the two ends are therefore carried along
    the path, ``(1 − t_i) o₀ + t_i o₁`` at ``t_i = i/(n − 1)``: ends that are fixed points change nothing, and
    ``x0 = x1`` has the constant path (energy 0) as its minimiser. An end off the data is measured from its landed
    point instead, ``o = x − P(P(a))`` with ``anchors`` ``a`` ``(2B, D)`` (`geodesic_init.landing_anchors`; default
    the ends): two steps barely move it, and the short offset pulled the path to the data and back.
    """
    with torch.no_grad():
        ends = torch.cat([x0, x1])
        landed = ends if anchors is None else anchors.to(ends)
        for _ in range(LANDING_STEPS):
            landed = field.project(landed)
        o0, o1 = (ends - landed.to(ends)).chunk(2)
    t = torch.arange(1, n - 1, dtype=x0.dtype, device=x0.device) / (n - 1)
    return (1 - t).view(1, -1, 1) * o0.unsqueeze(1) + t.view(1, -1, 1) * o1.unsqueeze(1)


class _Energy:
    """The energy of the interior points in whitened coordinates ``v`` (``(B, m, D)``), pair by pair.

    Interior points are ``base + h · (L^{-1/2} v)``, landed by `LANDING_STEPS` steps of ``field.project`` when
    ``landing`` (the path is then constrained to the image of the field's denoiser: the learned data manifold),
    plus the ends' own offsets from it, ``o = x − P(P(x))`` at ``x0`` and ``x1``, blended linearly along the path
    (`end_offsets`);
    ``value_and_grad``
    returns each pair's energy and the gradient of the energy divided by ``norm`` (the initial energy), so every
    pair's objective is about 1.
    Methods taking ``idx`` work on the subset ``idx`` of the pairs (``v`` then holds that subset only).
    """

    def __init__(self, field: CoMetricField, x0: Tensor, x1: Tensor, path0: Tensor, *, landing: bool = False,
                 anchors: Tensor | None = None) -> None:
        self.field = field
        self.landing = landing
        self.x0, self.x1 = x0, x1
        self.base = path0[:, 1:-1]
        n = path0.shape[1]
        h = (x1 - x0).norm(dim=-1) / (n - 1)
        self.h = torch.where(h > 0, h, torch.ones_like(h))
        self.whiten = _path_preconditioner(n - 2, x0.dtype, x0.device)
        self.offsets = end_offsets(field, x0, x1, n, anchors) if landing else None
        with torch.enable_grad():
            self.initial = path_energy(field, self.path(torch.zeros_like(self.base)))[0].detach()  # chunked
        bad = (~torch.isfinite(self.initial)).nonzero().flatten()
        if bad.numel():
            raise ValueError(
                f"the field gives a non-finite energy on the initial path of pairs {bad.tolist()}"
            )
        self.norm = self.initial.clamp_min(torch.finfo(self.initial.dtype).tiny)
        # The Hessian of energy / norm in v is about (2 h² / norm) I ⊗ g: its inverse scale.
        self.gamma = self.norm / (2.0 * self.h**2)

    def subset(self, idx: Tensor) -> _Energy:
        """The problem of the pairs ``idx`` ``(k,)`` alone: the same field, landing, offsets and normalisation."""
        sub = copy.copy(self)
        sub.field = self.pairs_field(idx)
        for name in ("x0", "x1", "base", "h", "initial", "norm", "gamma"):
            setattr(sub, name, getattr(self, name)[idx])
        sub.offsets = None if self.offsets is None else self.offsets[idx]
        return sub

    def pairs_field(self, idx: Tensor | None = None) -> CoMetricField:
        """The field of the pairs ``idx`` (all for ``None``): a field with one ``δ`` per pair
        (`regularised.Regularised`) picks theirs, so each pair's energy is its own."""
        pick = getattr(self.field, "for_pairs", None)
        return self.field if idx is None or pick is None else pick(idx)

    def interior(self, v: Tensor, idx: Tensor | None = None) -> Tensor:
        base, h = (self.base, self.h) if idx is None else (self.base[idx], self.h[idx])
        x = base + h.view(-1, 1, 1) * torch.einsum("ij,bjd->bid", self.whiten, v)
        if self.landing and x.shape[1] > 0:  # interior points on the data: x ↦ P(P(x)), differentiable
            flat = x.reshape(-1, x.shape[-1])
            for _ in range(LANDING_STEPS):
                flat = self.field.project(flat)
            x = flat.reshape(x.shape) + (self.offsets if idx is None else self.offsets[idx])
        return x

    def path(self, v: Tensor, idx: Tensor | None = None) -> Tensor:
        x0, x1 = (self.x0, self.x1) if idx is None else (self.x0[idx], self.x1[idx])
        return torch.cat([x0.unsqueeze(1), self.interior(v, idx), x1.unsqueeze(1)], dim=1)

    def value(self, v: Tensor, idx: Tensor | None = None) -> Tensor:
        """Each pair's energy ``(B,)`` (no gradient; fields that differentiate internally still may)."""
        with torch.enable_grad():
            return segment_energies(self.pairs_field(idx), self.path(v.detach(), idx)).sum(-1).detach()

    def value_and_grad(self, v: Tensor, idx: Tensor | None = None) -> tuple[Tensor, Tensor]:
        norm = self.norm if idx is None else self.norm[idx]
        with torch.enable_grad():
            v = v.detach().requires_grad_(True)
            energy = segment_energies(self.pairs_field(idx), self.path(v, idx)).sum(-1)
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

    The solver itself reads the device (a host sync on a GPU) once per iteration, for the pairs still running,
    and once per line-search trial, for the pairs still searching; everything else is masks on whole tensors.
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
        bad = ~(slope < 0)  # not a descent direction (numerics): fall back to the scaled gradient
        direction = torch.where(bad.view(-1, 1, 1), -gamma[act].view(-1, 1, 1) * ga, direction)
        slope = torch.where(bad, _dot(ga, direction), slope)

        # Armijo backtracking, pair by pair; each trial evaluates only the pairs still searching. Results are
        # merged with torch.where on the searching pairs' rows: the one host sync per trial is the count of
        # pairs left (boolean-mask indexing had cost nine).
        t = torch.full_like(fa, lr)
        new_v, new_e, new_g = va.clone(), energy[act].clone(), ga.clone()
        pending = torch.arange(act.numel(), device=v.device)
        full_step = torch.zeros(act.numel(), dtype=torch.bool, device=v.device)
        for trial_no in range(max_backtracks):
            tp, sp, fp0 = t[pending], slope[pending], fa[pending]
            trial = va[pending] + tp.view(-1, 1, 1) * direction[pending]
            try:
                e, g = problem.value_and_grad(trial, act[pending])
            except NonFiniteFieldOutput:  # a trial step so long that the field cannot be evaluated: shorter
                e, g = torch.full_like(tp, math.inf), torch.zeros_like(trial)
            f = e / problem.norm[act[pending]]
            ok = torch.isfinite(f) & (f <= fp0 + c1 * tp * sp)
            new_v[pending] = torch.where(ok.view(-1, 1, 1), trial, new_v[pending])
            new_e[pending] = torch.where(ok, e, new_e[pending])
            new_g[pending] = torch.where(ok.view(-1, 1, 1), g, new_g[pending])
            if trial_no == 0:  # (every pair searches in the first trial)
                full_step = ok.clone()
            # Safeguarded quadratic interpolation of the step for the rest.
            denom = 2.0 * (f - fp0 - sp * tp)
            quad = torch.where(torch.isfinite(denom) & (denom > 0), -sp * tp**2 / denom, 0.5 * tp)
            t[pending] = torch.where(ok, tp, torch.minimum(torch.maximum(quad, 0.1 * tp), 0.5 * tp))
            pending = pending[~ok]
            if pending.numel() == 0:
                break

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
        failed = torch.zeros(b, dtype=torch.bool, device=v.device)  # (B,): masks on whole tensors, no host sync
        failed[act] = stalled
        had_memory = torch.zeros_like(failed)
        for rho in mem_rho[:-1]:
            had_memory |= failed & (rho != 0)
            rho.masked_fill_(failed, 0.0)
        mem_rho[-1].masked_fill_(failed, 0.0)
        converged[act] = torch.where(stalled, ~had_memory[act], stop)
    return v, converged, done


def _solve_adam(
    problem: _Energy, v: Tensor, *, steps: int, lr: float, tol: float
) -> tuple[Tensor, Tensor, int]:
    """``torch.optim.Adam`` on all pairs at once; stops when every pair meets the energy criterion in the same
    iteration (every pair keeps moving until then, so a pair's flag is that of the last iteration, not the first
    small change: Adam's first steps are small against a large energy)."""
    v = v.clone().requires_grad_(True)
    opt = torch.optim.Adam([v], lr=lr)
    converged = torch.zeros(v.shape[0], dtype=torch.bool, device=v.device)
    prev = problem.initial
    done = 0
    for it in range(steps):
        energy, grad = problem.value_and_grad(v)
        if it > 0:
            rel = (prev - energy).abs() / prev.abs().clamp_min(torch.finfo(prev.dtype).tiny)
            converged = rel < tol
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


VERIFY_STEPS = (100.0, 10.0, 1.0, 0.1, 0.01, 0.001)
"""Multiples of the scaled-gradient step tried by `verify_minimum`."""


def verify_minimum(problem: _Energy, v: Tensor, claimed: Tensor, *, rtol: float) -> Tensor:
    """Which of the ``claimed`` pairs are (numerically) local minima of the energy: ``(B,)`` bool.

    A pair passes if its energy and gradient are finite and no step along the scaled negative gradient
    ``−γ ∇f`` (multiples `VERIFY_STEPS` of ``γ``, each capped so that no interior point moves by more than half a
    segment: a local test; a segment of the straight line, or of the path itself where that is longer, so that a path
    far longer than the chord can be refuted too) lowers the energy by more than ``rtol`` relatively. The solvers' own
    stopping rules (a small relative change of the energy) are necessary but not sufficient: a failed line search, a
    non-finite gradient or a flat plateau also produce small changes. Costs ``len(VERIFY_STEPS) + 1`` batched
    evaluations of the claimed pairs.

    Args:
        problem: the `_Energy` the solver minimised.
        v: ``(B, m, D)`` whitened interior coordinates returned by the solver.
        claimed: ``(B,)`` bool, the solver's convergence flags.
        rtol: relative energy decrease that refutes a claim.
    """
    out = claimed.clone()
    idx = claimed.nonzero().squeeze(-1)
    if idx.numel() == 0:
        return out
    energy, grad = problem.value_and_grad(v[idx], idx)
    f0 = energy / problem.norm[idx]
    finite = torch.isfinite(f0) & torch.isfinite(grad).flatten(1).all(-1)
    grad = torch.where(finite.view(-1, 1, 1), grad, torch.zeros_like(grad))
    # ‖whiten · grad‖_∞ bounds how far a point moves (in segment lengths h) for a unit step in v.
    move = torch.einsum("ij,bjd->bid", problem.whiten, grad).abs().flatten(1).amax(-1)
    cap = 0.5 * mean_segment(problem, v[idx], idx) / move.clamp_min(torch.finfo(move.dtype).tiny)
    refuted = ~finite
    for mult in VERIFY_STEPS:
        t = torch.minimum(mult * problem.gamma[idx], cap)
        f = problem.value(v[idx] - t.view(-1, 1, 1) * grad, idx) / problem.norm[idx]
        refuted |= torch.isfinite(f) & (f < f0 - rtol * f0.abs())
    out[idx] = ~refuted
    return out


def mean_segment(problem: _Energy, v: Tensor, idx: Tensor | None = None) -> Tensor:
    """``(B,)``: the mean segment length of the paths of ``v`` (the pairs ``idx``, or all) in units of the straight
    segment ``h``, at least 1 (1 where not finite): the scale of a test step that moves no point too far."""
    with torch.no_grad():
        x = problem.path(v, idx)
        h = problem.h if idx is None else problem.h[idx]
        segment = (x[:, 1:] - x[:, :-1]).norm(dim=-1).mean(-1) / h
    return torch.nan_to_num(segment, nan=1.0).clamp_min(1.0)


@full_precision
def resolution(field: CoMetricField, path: Tensor, length: Tensor, substeps: int = RESOLUTION_SUBSTEPS) -> Tensor:
    """``(B,)``: the metric length of ``path`` ``(B, T, D)`` re-measured on ``substeps`` sub-segments per
    segment, divided by its discrete ``length`` ``(B,)`` (1 where the length is 0).

    The sub-points follow the smooth curve through the points (a Catmull–Rom spline: cubic Hermite pieces with
    tangents ``(x_{i+1} − x_{i−1})/2``), so on a path that resolves the metric the two lengths agree to
    ``O(Δ²)`` even where the metric is strongly anisotropic (straight sub-pieces of a curved chord would be
    charged for its turn). A solver that placed its points either side of a ridge of the metric, where the
    midpoint rule does not look, gives far more: a VAE geodesic had "converged" at 1/76 of its length (§6, §11).
    """
    m = substeps
    b, t, d = path.shape
    if t < 2:
        return torch.ones_like(length)
    ahead = torch.cat([path[:, 1:], 2 * path[:, -1:] - path[:, -2:-1]], 1)  # reflected past the ends
    behind = torch.cat([2 * path[:, :1] - path[:, 1:2], path[:, :-1]], 1)
    tangent = (ahead - behind) / 2  # (B, T, D)
    s = (torch.arange(m, dtype=path.dtype, device=path.device) / m).view(1, 1, m, 1)
    p0, p1, m0, m1 = (z.unsqueeze(2) for z in (path[:, :-1], path[:, 1:], tangent[:, :-1], tangent[:, 1:]))
    fine = ((2 * s**3 - 3 * s**2 + 1) * p0 + (s**3 - 2 * s**2 + s) * m0 + (3 * s**2 - 2 * s**3) * p1
            + (s**3 - s**2) * m1).reshape(b, (t - 1) * m, d)
    fine = torch.cat([fine, path[:, -1:]], 1)
    with torch.enable_grad():
        fine_length = path_energy(field, fine)[1].detach()
    return torch.where(length > 0, fine_length / length.clamp_min(torch.finfo(length.dtype).tiny),
                       torch.ones_like(length))
