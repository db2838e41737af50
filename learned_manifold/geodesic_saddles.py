"""A geodesic solve that refutes saddles of the energy (SPEC §6), used by `geodesics.geodesic`.

The solvers stop where the energy stops changing, and `geodesic_solvers.verify_minimum` tries short descent steps:
neither can leave a stationary point whose gradient is zero by symmetry. Between antipodal points of a sphere the
straight chord through the centre is such a saddle: the solver stopped there after one step, "converged", with
length 0 (δ = 0) or 20 (δ = 10⁻², against π). `solve_verified` therefore also kicks each claimed minimum by a
small seeded random perturbation of its interior points and re-optimises a few steps (`refute_saddles`): from a
minimum the energy comes back to (not below) its value, from a saddle it falls, and the solve continues there.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .geodesic_solvers import GeodesicMethod, _Energy, mean_segment, verify_minimum

__all__ = ["RESUME_ROUNDS", "SADDLE_KICK", "SADDLE_ROUNDS", "SADDLE_STEPS", "refute_saddles", "solve_verified"]

SADDLE_KICK = 0.25
"""Largest move of an interior point by `refute_saddles`' kick, in segment lengths (of the straight line, or of the
path where its segments are longer): small against the path, so a minimum's kick stays in its basin."""

SADDLE_STEPS = 5
"""Solver iterations after the kick (at most the solve's ``steps``): enough to leave the antipodal chord of the unit
sphere (projector field, δ = 10⁻², 16 points: energy 24.9 → 0.71 in 5 L-BFGS iterations, against 0.65 at the half
great circle). With 5, `geodesic` took 1.2–1.4 times as long as without kicks on a k-NN sphere (8 pairs, 32
points); with 10, up to twice as long, for no better paths."""

RESUME_ROUNDS = 2
"""Solves resumed from a claimed minimum that `geodesic_solvers.verify_minimum` refuted, before the pair is marked
unconverged: float32 data at 5,000 (a grid of 5e-4) gave energies whose rounding let the solver stop early, and the
pair ended unconverged on a right path."""

SADDLE_ROUNDS = 2
"""Kicks, each followed by a full solve from the lower path, before a pair still refuted is marked unconverged."""


def refute_saddles(problem: _Energy, v: Tensor, claimed: Tensor, spec: GeodesicMethod, *, steps: int, lr: float,
                   tol: float, rtol: float) -> tuple[Tensor, Tensor, int]:
    """Which ``claimed`` minima a kick refutes, and the lower paths it found there.

    Each claimed pair's whitened interior ``v`` ``(B, m, D)`` is moved by ``s · r``, ``r`` ``(m, D)`` standard normal
    from a generator seeded with 0, the same draw for every pair (so a pair's kick, and its path, depend on the pair
    alone, not on its batch mates or its position in the batch; the result is deterministic), ``s`` such that no
    interior point moves farther than `SADDLE_KICK` segments; then ``min(steps, SADDLE_STEPS)`` iterations of
    ``spec`` follow. A pair whose energy ends more than ``rtol`` (relatively) below its claimed energy was not at a
    minimum.

    Returns:
        ``(v, refuted, iterations)``: ``v`` with the refuted pairs' lower coordinates put in, ``(B,)`` bool.
    """
    refuted = torch.zeros_like(claimed)
    idx = claimed.nonzero().squeeze(-1)
    if idx.numel() == 0 or v.shape[1] == 0 or steps < 1:
        return v, refuted, 0
    sub = problem.subset(idx)
    start = v[idx]
    before = sub.value(start)
    gen = torch.Generator().manual_seed(0)  # one draw (m, D), the same for every pair: no pair sees its batch mates
    r = torch.randn(start.shape[1:], generator=gen, dtype=torch.float64).to(start).expand_as(start)
    move = torch.einsum("ij,bjd->bid", sub.whiten, r).norm(dim=-1).amax(-1)  # in straight segments h
    scale = SADDLE_KICK * mean_segment(sub, start) / move.clamp_min(1e-30)
    kicked, _, done = spec.solve(sub, start + scale.view(-1, 1, 1) * r, steps=min(steps, SADDLE_STEPS), lr=lr,
                                 tol=tol)
    after = sub.value(kicked)
    lower = torch.isfinite(after) & torch.isfinite(before) & (after < before - rtol * before.abs())
    if bool(lower.any()):
        v = v.clone()
        v[idx[lower]] = kicked[lower]
        refuted[idx[lower]] = True
    return v, refuted, done


def _solve_on(problem: _Energy, spec: GeodesicMethod, v: Tensor, *, steps: int, lr: float, tol: float,
              rtol: float) -> tuple[Tensor, Tensor, int]:
    """Solve every pair of ``problem`` from ``v`` and verify its claim (`geodesic_solvers.verify_minimum`); a claim
    refuted there is solved on from where it stopped, with fresh curvature memory, up to `RESUME_ROUNDS` times.
    Returns ``(v, converged, iterations)`` as `solve_verified`."""
    v, claimed, done = spec.solve(problem, v, steps=steps, lr=lr, tol=tol)
    converged = verify_minimum(problem, v, claimed, rtol=rtol)
    for _ in range(RESUME_ROUNDS):
        again = (claimed & ~converged).nonzero().squeeze(-1)
        if again.numel() == 0:
            break
        sub = problem.subset(again)
        more, resumed, extra = spec.solve(sub, v[again], steps=steps, lr=lr, tol=tol)
        v, claimed, converged = v.clone(), torch.zeros_like(claimed), converged.clone()
        v[again], claimed[again] = more, resumed
        converged[again] = verify_minimum(sub, more, resumed, rtol=rtol)
        done += extra
    return v, converged, done


def solve_verified(problem: _Energy, spec: GeodesicMethod, *, steps: int, lr: float, tol: float, rtol: float,
                   kick: bool = True) -> tuple[Tensor, Tensor, int]:
    """Solve ``problem`` from its start, verify (`geodesic_solvers.verify_minimum`; a refuted claim is solved on,
    `_solve_on`) and, with ``kick``, refute saddles (`refute_saddles`): a refuted pair continues from the lower
    path, up to `SADDLE_ROUNDS` times, and one still refuted after that is marked unconverged.
    (`geodesics.geodesic` kicks only at the last level of its coarse-to-fine refinement: a coarse saddle is a fine
    one too, and is refuted there.)

    Returns:
        ``(v, converged, iterations)``: whitened interior ``(B, m, D)``, ``(B,)`` bool, and the iterations of all
        solves (the most any pair needed in each, summed).
    """
    opts = dict(steps=steps, lr=lr, tol=tol, rtol=rtol)
    v, converged, done = _solve_on(problem, spec, torch.zeros_like(problem.base), **opts)
    pending = converged  # the pairs still to kick: a pair that survived its kick is a minimum
    for round_no in range(SADDLE_ROUNDS + 1 if kick else 0):
        v, saddle, extra = refute_saddles(problem, v, pending, spec, **opts)
        done += extra
        if not bool(saddle.any()):
            break
        if round_no == SADDLE_ROUNDS:
            converged = converged & ~saddle
            break
        idx = saddle.nonzero().squeeze(-1)
        more, found, extra = _solve_on(problem.subset(idx), spec, v[idx], **opts)
        v, converged = v.clone(), converged.clone()
        v[idx], converged[idx] = more, found
        pending = torch.zeros_like(converged)
        pending[idx] = found
        done += extra
    return v, converged, done
