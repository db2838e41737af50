"""Flows with ``landing=True`` land by one normal-only step per output interval (SPEC §5 "Landing, normal-only",
§6; `landing.normal_landing`): no drift along the data, whatever ``n_points``; and `interpolate` says when the
landing undoes the flow."""

import re

import pytest
import torch

from learned_manifold import LearnedDataManifold, gradient_flow, interpolate
from tests.conftest import FixedSubspaceField

E = torch.eye(3, dtype=torch.float64)


class _SlidingDenoiser(FixedSubspaceField):
    """The plane ``z = 0`` in R³ (``G = diag(1, slow², 0)``) whose denoiser also moves points *along* the plane, as
    a model's does by its error and a curved manifold's posterior mean by curvature terms: ``x̂ = Px + C Px`` with
    ``C`` a quarter turn about the z axis scaled by ``shift``."""

    sigma = 0.1

    def __init__(self, shift: float, slow: float = 1.0):
        super().__init__(E[:, :2] * E.new_tensor([1.0, slow]))
        self.shift = shift

    def project(self, x):
        on = x * x.new_tensor([1.0, 1.0, 0.0])
        return on + self.shift * torch.stack([-on[:, 1], on[:, 0], torch.zeros_like(on[:, 0])], dim=-1)

    @property
    def can_project(self):
        return True


@pytest.mark.parametrize("n_points", [2, 33, 257])
def test_a_flow_started_at_its_minimiser_stays_put_with_landing_for_any_n_points(n_points):
    """f = ½‖x − x₀‖² from x₀ on the data: the path is x₀ exactly. A full denoiser step per interval slid it along
    the plane once per output interval (on a trained sphere 0.007, 0.078, 0.41 for 2, 33, 257 points)."""
    field = _SlidingDenoiser(0.05)
    x0 = torch.tensor([[1.0, 0.5, 0.0], [-0.3, 2.0, 0.0]], dtype=torch.float64)
    res = gradient_flow(field, lambda x: 0.5 * (x - x0).pow(2).sum(-1), x0, n_points=n_points, landing=True)
    torch.testing.assert_close(res.path, x0[:, None].expand_as(res.path), rtol=0, atol=1e-12)


def test_a_start_off_the_data_lands_along_the_normal_only():
    """From x₀ + 0.3 e_z (δ = 0: the flow cannot move along e_z) the first landing goes straight down to x₀, and
    the path stays there; the full denoiser step also turned it about the z axis."""
    field = _SlidingDenoiser(0.05)
    x0 = torch.tensor([[1.0, 0.5, 0.0]], dtype=torch.float64)
    res = gradient_flow(field, lambda x: 0.5 * (x - x0).pow(2).sum(-1), x0 + 0.3 * E[2], n_points=9, landing=True)
    torch.testing.assert_close(res.path[:, 1:], x0[:, None].expand(1, 8, 3), rtol=0, atol=1e-12)


@pytest.mark.parametrize("n_points", [17, 65, 257])
def test_interpolate_with_landing_reaches_its_target_for_any_n_points(n_points):
    """On the plane the normal-only landing does nothing: the landed path is the flow's (up to the solver's
    tolerance: it restarts at every interval), a curve (x decays at rate 1, y at 0.64), and reaches x₁. The full
    denoiser step turned the path about the z axis once per interval (the ends' offsets cancel that only on a
    straight path) and it never reached x₁."""
    field = _SlidingDenoiser(0.5, slow=0.8)
    x0 = torch.tensor([[1.0, 0.0, 0.0], [0.0, 2.0, 0.0]], dtype=torch.float64)
    x1 = torch.tensor([[0.0, 1.0, 0.0], [1.0, 1.0, 0.0]], dtype=torch.float64)
    res = interpolate(field, x0, x1, t_end=16.0, n_points=n_points, landing=True)
    assert res.reason == ["reached", "reached"]
    free = interpolate(field, x0, x1, t_end=16.0, n_points=n_points)
    torch.testing.assert_close(res.path, free.path, rtol=0, atol=1e-3)
    assert res.path[..., 2].abs().max() == 0


class _Wall(FixedSubspaceField):
    """The plane ``z = 0`` with ``δ = 0.1`` whose denoiser lifts every point to ``z = 0.3`` except within 0.05 of
    ``(0, 0, 0)`` and ``(1, 0, 0)``: a flow between those two lands on the wall and the landing puts back, every
    interval, what the isotropic part ``δ`` of the flow brings down."""

    sigma = 0.1

    def __init__(self):
        super().__init__(E[:, :2].contiguous(), 0.1)

    def project(self, x):
        on = x * x.new_tensor([1.0, 1.0, 0.0])
        near = torch.minimum(x.norm(dim=-1), (x - E[0].to(x)).norm(dim=-1)) < 0.05
        return torch.where(near[:, None], on, on + 0.3 * E[2].to(x))

    @property
    def can_project(self):
        return True


def test_a_path_the_landing_holds_back_is_stalled_and_says_so():
    """The flow still pulls (its end speed is about δ = 0.1 times the remaining gap) but the landed path no longer
    moves: stalled, by the landing; the reason said "out of time … raise t_end", which did not help."""
    x0, x1 = torch.zeros(1, 3, dtype=torch.float64), E[:1]
    res = interpolate(_Wall(), x0, x1, t_end=16.0, landing=True)
    assert bool(res.stalled.all()) and not bool(res.reached.any())
    assert abs(res.final_gap.item() - 0.3) < 0.01
    assert re.fullmatch(r"stalled: the landing undoes the flow \(over the last output interval the path moved "
                        r"\S+× the remaining gap per unit time, against a flow speed of 0\.1× ?\); a longer t_end "
                        r"does not help, landing=False or a geodesic may", res.reason[0]), res.reason[0]


def test_landing_on_a_field_without_a_low_rank_factor_is_refused_by_name():
    """Normal-only landing needs the field's tangent spaces (as `LearnedDataManifold(landing=True)` does)."""

    class FullRank(_SlidingDenoiser):
        low_rank = False

    with pytest.raises(ValueError, match=r"^landing needs a low-rank field \(its tangent space gives the normals to "
                                         r"land along\); FullRank implements factor\(\) but does not set "
                                         r"low_rank = True"):
        interpolate(FullRank(0.0), E[:1], E[1:2], landing=True)


def test_a_manifolds_tangent_dim_sets_the_normals_the_flow_lands_along():
    """With ``tangent_dim = 1`` the plane's second direction e_y is normal too: a start at y = 0.4 is landed onto
    the x axis (the denoiser's image there), as `LearnedDataManifold.projx` would."""
    M = LearnedDataManifold(_SlidingDenoiser(0.0), tangent_dim=1)
    start = torch.tensor([[1.0, 0.4, 0.3]], dtype=torch.float64)
    res = gradient_flow(M, lambda x: 0.5 * (x - start).pow(2).sum(-1), start, n_points=3, landing=True)
    torch.testing.assert_close(res.path[0, -1], torch.tensor([1.0, 0.4, 0.0], dtype=torch.float64))


def test_a_landed_flow_whose_own_steps_raise_the_gap_is_a_solver_error():
    """Euler with η = 2.5 on the plane (the landing does nothing there): within every output interval the flow
    raises the gap 1.5-fold, which no exact flow does; it was "out of time: … raise t_end"."""
    field = _SlidingDenoiser(0.0)
    x0 = torch.tensor([[1.0, 0.5, 0.0]], dtype=torch.float64)
    x1 = torch.tensor([[-0.5, 1.0, 0.0]], dtype=torch.float64)
    res = interpolate(field, x0, x1, t_end=10.0, n_points=5, method="euler", step_size=2.5, landing=True)
    gaps = (res.path[0] - x1).norm(dim=-1)
    torch.testing.assert_close(gaps[1:] / gaps[:-1], torch.full((4,), 1.5, dtype=torch.float64))
    assert not res.reached.item() and not res.stalled.item()
    assert res.reason[0].startswith("solver error") and "use a smaller step_size" in res.reason[0], res.reason


def test_flows_follow_a_landing_manifolds_own_setting_by_default():
    """``landing=None`` (the default) takes a `LearnedDataManifold`'s own ``landing``: from x₀ + 0.3 e_z (δ = 0: the
    flow cannot move along e_z) a flow on a landing manifold lands on the plane; ``landing=False`` still turns it
    off, and so does a manifold built without landing. Before, the flows' own ``False`` default won silently (a
    trained circle's flow ended 0.55 off it)."""
    field = _SlidingDenoiser(0.05)
    x0 = torch.tensor([[1.0, 0.5, 0.0]], dtype=torch.float64)
    start, x1 = x0 + 0.3 * E[2], torch.tensor([[-0.5, 1.0, 0.0]], dtype=torch.float64)
    lands, plain = LearnedDataManifold(field, landing=True), LearnedDataManifold(field)

    def objective(x):
        return 0.5 * (x - x0).pow(2).sum(-1)

    torch.testing.assert_close(gradient_flow(lands, objective, start, n_points=9).path[:, 1:, 2],
                               torch.zeros(1, 8, dtype=torch.float64), rtol=0, atol=1e-12)
    for manifold, landing in ((lands, False), (plain, None)):
        path = gradient_flow(manifold, objective, start, n_points=9, landing=landing).path
        torch.testing.assert_close(path[..., 2], torch.full((1, 9), 0.3, dtype=torch.float64), rtol=0, atol=1e-12)
    assert float(interpolate(lands, start, x1).path[0, -1, 2].abs()) < 0.3 * 0.02  # the end's offset blended out
    for manifold, landing in ((lands, False), (plain, None)):
        end = interpolate(manifold, start, x1, landing=landing).path[0, -1, 2]
        torch.testing.assert_close(end, torch.tensor(0.3, dtype=torch.float64), rtol=0, atol=1e-12)
