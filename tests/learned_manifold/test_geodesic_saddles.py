"""Saddles of the geodesic energy are refuted (`learned_manifold.geodesic_saddles`, SPEC §6)."""

from __future__ import annotations

import dataclasses
import math

import torch

from learned_manifold.evaluation import lerp
from learned_manifold.geodesic_saddles import refute_saddles, solve_verified
from learned_manifold.geodesic_solvers import GEODESIC_METHODS, _Energy
from learned_manifold.geodesics import geodesic
from tests.learned_manifold.test_geodesics import EuclideanField, SphereProjector

F64 = torch.float64


def flat_cone_length(delta: float, angle: float) -> float:
    """Metric length of the geodesic between unit vectors ``angle`` apart for the projector field plus ``δ I``:
    ``dr²/δ + r² dθ²/(1 + δ)`` is a flat cone (``ρ = r/√δ``, ``φ = θ √(δ/(1+δ))``), whose geodesic is its chord."""
    return 2 / math.sqrt(delta) * math.sin(angle * math.sqrt(delta / (1 + delta)) / 2)


def test_antipodal_points_leave_the_chord_through_the_centre():
    """The chord through the centre is a stationary point of the energy by symmetry: the solver stopped there
    after one step, "converged", with length 18.8 (δ = 10⁻²) where the geodesic (a half great circle, dipping
    to radius cos(φ/2) = 0.988) has 3.113. The kick refutes it and the solve continues to the arc."""
    x0 = torch.tensor([[1.0, 0.0, 0.0]], dtype=F64)
    x1 = torch.tensor([[math.cos(math.pi), math.sin(math.pi), 0.0]], dtype=F64)  # antipodal to rounding
    res = geodesic(SphereProjector(delta=1e-2), x0, x1, n_points=16)
    assert bool(res.converged.all())
    assert abs(float(res.length[0]) / flat_cone_length(1e-2, math.pi) - 1) < 0.01
    assert float(res.path[0].norm(dim=-1).min()) > 0.98


def test_a_kick_leaves_a_true_minimum_alone():
    """The straight line of a Euclidean field is the minimum: a kick and ten solver steps come back to (not
    below) its energy, so nothing is refuted and the path is unchanged."""
    x0, x1 = torch.zeros(2, 3, dtype=F64), torch.tensor([[1.0, 2.0, 0.0], [0.0, 0.0, 3.0]], dtype=F64)
    problem = _Energy(EuclideanField(), x0, x1, lerp(x0, x1, 12))
    v = torch.zeros_like(problem.base)
    out, refuted, done = refute_saddles(problem, v, torch.tensor([True, True]), GEODESIC_METHODS["lbfgs"],
                                        steps=500, lr=1.0, tol=1e-9, rtol=1e-6)
    assert not bool(refuted.any()) and done > 0
    assert torch.equal(out, v)


def test_a_pairs_kick_and_path_do_not_depend_on_its_batch_mates():
    """The kick was one draw for the whole batch, row j to the j-th claimed pair: the antipodal pair's midpoint
    moved from (0.007, −0.357, −0.921) alone to (0.001, −0.851, 0.501) second in a batch, and two copies of it in
    one batch came back as different half circles (1.04 apart). Now every pair gets the same draw."""
    a, e = torch.tensor([[1.0, 0.0, 0.0]], dtype=F64), torch.tensor([[0.0, 0.0, 1.0]], dtype=F64)
    b = torch.tensor([[0.6, 0.0, 0.8]], dtype=F64)
    alone = geodesic(SphereProjector(delta=1e-2), a, -a, n_points=17, init="linear")
    assert float(alone.path[0].norm(dim=-1).min()) > 0.98  # the kick took it off the chord through the centre
    batch = geodesic(SphereProjector(delta=1e-2), torch.cat([e, a, b, a]), torch.cat([-e, -a, -b, -a]), n_points=17,
                     init="linear")
    for j in (1, 3):  # (a, −a) second and fourth, after other antipodal pairs whose kicks came first
        torch.testing.assert_close(batch.path[j], alone.path[0], atol=1e-6, rtol=0)
        assert bool(batch.converged[j]) == bool(alone.converged[0])


def test_a_claim_the_verification_refutes_is_solved_on():
    """A solver that stops early and claims a minimum (float32 data at 5,000, where rounding let the energy stall)
    was refuted by the verification and the pair ended unconverged on a path the solver could still improve: now
    the refuted pair is solved on from where it stopped (`RESUME_ROUNDS`), and converges to the full solve's path."""
    lbfgs, calls = GEODESIC_METHODS["lbfgs"], []

    def hasty(problem, v, *, steps, lr, tol):
        calls.append(v.shape[0])
        if len(calls) == 1:  # the first solve stops after one step and claims every pair converged
            v, _, done = lbfgs.solve(problem, v, steps=1, lr=lr, tol=tol)
            return v, torch.ones(v.shape[0], dtype=torch.bool), done
        return lbfgs.solve(problem, v, steps=steps, lr=lr, tol=tol)

    x0 = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]], dtype=F64)
    x1 = torch.tensor([[0.0, 1.0, 0.0], [0.0, 0.6, 0.8]], dtype=F64)
    problem = _Energy(SphereProjector(delta=1e-2), x0, x1, lerp(x0, x1, 12))
    opts = dict(steps=500, lr=1.0, tol=1e-10, rtol=1e-6, kick=False)
    v, converged, _ = solve_verified(problem, dataclasses.replace(lbfgs, solve=hasty), **opts)
    full, full_converged, _ = solve_verified(problem, lbfgs, **opts)
    assert len(calls) == 2 and bool(converged.all()) and bool(full_converged.all())
    torch.testing.assert_close(problem.value(v), problem.value(full), rtol=1e-6, atol=0)
