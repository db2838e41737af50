"""`interpolate`'s stopping rule in closed form (SPEC §6 interpolation; the `interpolate` docstring): the velocity
is scaled by ``clamp(gap/stop_tol − 1, 0, 1)``, so the flow runs freely down to ``2 · stop_tol``, brakes, and
freezes at ``stop_tol``, never below."""

import math

import torch

from learned_manifold.flows import interpolate
from learned_manifold.metrics import EuclideanMetric

F64 = torch.float64


def test_the_euclidean_flow_decays_then_brakes_and_freezes_at_stop_tol():
    """With ``G = I`` the gap ``g`` to ``x₁`` obeys ``ġ = −g · clamp(g/τ − 1, 0, 1)``: ``g = e^{−t}`` from 1 down to
    ``2τ`` (at ``t₀ = ln(1/(2τ))``), then the logistic ``ġ = g (1 − g/τ)``, ``g = τ / (1 − ½ e^{−(t − t₀)})``, which
    tends to ``τ`` from above. With ``τ = 0.1`` and ``t_end = 60`` the path follows that curve at every output
    time and ends at ``τ`` (to the solver's tolerance), reached. A brake without the ``− 1`` never freezes: its
    ``ġ = −g²/τ`` below ``τ`` ends near ``τ / t`` (0.0017 here)."""
    tau = 0.1
    x0, x1 = torch.zeros(1, 2, dtype=F64), torch.tensor([[1.0, 0.0]], dtype=F64)
    result = interpolate(EuclideanMetric(2), x0, x1, t_end=60.0, n_points=61, stop_tol=tau, rtol=1e-9, atol=1e-10)
    gap = (result.path[0] - x1[0]).norm(dim=-1)
    t, t0 = torch.arange(61, dtype=F64), math.log(1 / (2 * tau))
    want = torch.where(t <= t0, torch.exp(-t), tau / (1 - 0.5 * torch.exp(-(t - t0))))
    torch.testing.assert_close(gap, want, rtol=1e-6, atol=0)
    assert abs(float(result.final_gap[0]) - tau) < 1e-6 * tau
    assert bool(result.reached[0]) and result.reason == ["reached"]
