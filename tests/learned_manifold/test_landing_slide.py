"""Landing warns where it moves points that started near the data *along* the data (`landing_slide.warn_slide`).
Landing iterates normal-only denoiser steps; where the normals turn from step to step (data bent on the scale of
``σ``, a denoiser that pulls along the data) the iteration slides along the data to the denoiser's fixed points.
On single-cell trajectories trained at ``σ`` near their bends, `projx` moved training cells up to 2.3 ``σ`` along the
trajectory (every cell with t ≤ 0.35 to its t ≈ 0.04 end), and RiemannianAdam with landing ended below where it
began, silently."""

import re
import warnings

import pytest
import torch
from torch import Tensor

from learned_manifold import LearnedDataManifold
from learned_manifold.geometry import eigenpairs
from learned_manifold.landing_slide import SLIDE_MIN_POINTS, SLIDE_SMALL, SLIDE_WARN, warn_slide
from learned_manifold.metrics import KNNCDC
from learned_manifold.metrics.base import CoMetricField


class PulledCircle(CoMetricField):
    """The unit circle in R² with a denoiser at ``σ`` that also pulls along it towards angle 0: ``x̂(x)`` is the
    circle's point at angle ``φ = θ − pull · sin θ`` (``θ``: the angle of ``x``), and the factor ``(B, 2, 1)`` the
    circle's unit tangent at ``φ`` (the tangent of the denoiser's image). ``pull = 0`` is the exact circle
    (``x̂ = x/|x|``, tangent at ``θ``), which normal-only landing moves only radially."""

    dim, low_rank = 2, True

    def __init__(self, pull: float, sigma: float):
        super().__init__()
        self.pull, self.sigma = pull, sigma

    def _angle(self, x: Tensor) -> Tensor:
        theta = torch.atan2(x[:, 1], x[:, 0])
        return theta - self.pull * torch.sin(theta)

    def factor(self, x: Tensor, *, sigma: float | Tensor | None = None) -> Tensor:
        phi = self._angle(x)
        return torch.stack([-torch.sin(phi), torch.cos(phi)], -1)[..., None]

    def project(self, x: Tensor, *, sigma: float | Tensor | None = None) -> Tensor:
        phi = self._angle(x)
        return torch.stack([torch.cos(phi), torch.sin(phi)], -1)

    @property
    def can_project(self) -> bool:
        return True


def _circle(n: int, radius: float = 1.0) -> Tensor:
    theta = torch.linspace(-3.0, 3.0, n, dtype=torch.float64)
    return radius * torch.stack([theta.cos(), theta.sin()], -1)


def test_points_on_a_circle_whose_denoiser_pulls_along_it_are_warned_of_once():
    """At ``pull = 0.5``, ``σ = 1`` the denoiser moves every point on the circle by at most ``2 sin(0.25) = 0.49 ≤ σ/2``
    (all started near the data); the landing slides 4 of 13 of them 0.57-1.09 along the circle (θ = ±2 lands at
    ∓0.90), more than a `SLIDE_SHARE` of them by more than `SLIDE_SMALL` σ. The warning names the count, the
    largest move in σ, the σ, the cause and the remedies; a second landing on the same manifold is silent."""
    M = LearnedDataManifold(PulledCircle(pull=0.5, sigma=1.0), landing=True)
    x = _circle(13)
    message = re.escape("landing: 4 of 13 point(s) that started near the data (of 13 given) moved more than "
                        f"{SLIDE_SMALL:g} sigma along the data, up to 1.09 sigma (sigma = 1;")
    with pytest.warns(UserWarning, match=message) as record:
        landed = M.projx(x)
    text = str(record[0].message)
    assert "denoiser's fixed points" in text and "sigma_min" in text and "landing=False" in text
    moved = torch.atan2(landed[:, 1], landed[:, 0]) - torch.atan2(x[:, 1], x[:, 0])
    assert moved.abs().max() > 0.8  # radians: the slide the warning reports is real
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        M.projx(x)


def test_the_exact_circle_is_silent_for_points_on_it_and_near_it():
    """``pull = 0``: points on the circle stay put and points σ/2 inside or outside it land radially, onto it."""
    M = LearnedDataManifold(PulledCircle(pull=0.0, sigma=0.5), landing=True)
    for radius in (1.0, 0.75, 1.25):
        x = _circle(13, radius)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            landed = M.projx(x)
        torch.testing.assert_close(landed, x / radius, rtol=0, atol=1e-9)


def _slide(moves: Tensor, sigma: float = 1.0) -> list[warnings.WarningMessage]:
    """`warn_slide` on points at the origin of R² with tangent e₀ (eigenpairs of the factor ``(B, 2, 1)``),
    moved by ``moves`` ``(B, 2)``: the warnings it gave."""
    x = torch.zeros_like(moves)
    pairs = eigenpairs(torch.tensor([1.0, 0.0], dtype=moves.dtype).expand(moves.shape[0], 2)[..., None])
    near = torch.ones(moves.shape[0], dtype=torch.bool)
    manifold = LearnedDataManifold(PulledCircle(pull=0.0, sigma=sigma))
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        warn_slide(manifold, x, x + moves, pairs, 1, near, sigma, moves.shape[0])
    return list(record)


def test_one_point_moved_beyond_slide_warn_sigma_along_the_data_is_warned_of():
    """A batch of one (an optimiser's step): a move of `SLIDE_WARN` σ along the data is silent, a little more warns,
    and a move of 10 σ along the normal is no slide."""
    along = torch.tensor([[1.0, 0.0]], dtype=torch.float64)
    assert _slide(SLIDE_WARN * 0.99 * along) == []
    assert len(_slide(SLIDE_WARN * 1.01 * along)) == 1
    assert _slide(torch.tensor([[0.0, 10.0]], dtype=torch.float64)) == []


def test_a_share_of_small_slides_warns_only_in_batches_of_at_least_slide_min_points():
    """Edges slide a few points by up to about σ (a learned swiss roll: 8 of 2,933): a batch warns where more than
    `SLIDE_SHARE` of at least `SLIDE_MIN_POINTS` points slid more than `SLIDE_SMALL` σ."""
    n = SLIDE_MIN_POINTS
    moves = torch.zeros(n, 2, dtype=torch.float64)
    moves[:2, 0] = 2 * SLIDE_SMALL  # 2 of 10: 20%
    assert len(_slide(moves)) == 1
    moves[1, 0] = 0.5 * SLIDE_SMALL  # 1 of 10: 10%, not more
    assert _slide(moves) == []
    few = torch.zeros(n - 1, 2, dtype=torch.float64)
    few[:3, 0] = 2 * SLIDE_SMALL  # 3 of 9: too few points for a share
    assert _slide(few) == []


@pytest.mark.parametrize("sigma", [1.0, 0.3])
def test_one_point_slid_two_sigma_warns_and_one_point_four_sigma_does_not(sigma):
    """The threshold in absolute terms (not read from `SLIDE_WARN`): RiemannianAdam with landing moved a training
    cell 2.01 ``σ`` along a trajectory in one step, which must warn; edges of well-trained models slide points
    within ``σ/2`` of them at most 1.27 ``σ``, which must not (the `SLIDE_WARN` docstring)."""
    along = torch.tensor([[1.0, 0.0]], dtype=torch.float64)
    assert len(_slide(2.0 * sigma * along, sigma)) == 1
    assert _slide(1.4 * sigma * along, sigma) == []


class ScaledPulledCircle(PulledCircle):
    """`PulledCircle` with its factor scaled by ``scale``: the same tangent spaces and denoiser, co-metric
    eigenvalue ``scale²`` (a KNNCDC's on a unit circle at ``σ`` 0.05-0.4: 0.02-0.7) instead of 1."""

    def __init__(self, pull: float, sigma: float, scale: float):
        super().__init__(pull, sigma)
        self.scale = scale

    def factor(self, x: Tensor, *, sigma: float | Tensor | None = None) -> Tensor:
        return self.scale * super().factor(x, sigma=sigma)


@pytest.mark.parametrize("scale", [0.3, 3.0])
def test_the_slide_is_measured_in_the_tangent_space_whatever_the_co_metrics_eigenvalues(scale):
    """The slide is the move's part within the tangent space (a projection), not the move weighted by the
    co-metric: a factor scaled by a constant gives the same warning as the unit factor."""
    M = LearnedDataManifold(ScaledPulledCircle(pull=0.5, sigma=1.0, scale=scale), landing=True)
    message = re.escape("landing: 4 of 13 point(s) that started near the data (of 13 given) moved more than "
                        f"{SLIDE_SMALL:g} sigma along the data, up to 1.09 sigma (sigma = 1;")
    with pytest.warns(UserWarning, match=message):
        M.projx(_circle(13))


def test_points_that_started_far_from_the_data_are_no_slide_however_far_they_land_along_it():
    """A point far from the data moves along the data's directions while landing (here: 5 ``σ`` beyond the end of
    a segment, onto its end); only points that started near the data are counted, so no warning."""
    moves = torch.tensor([[5.0, 0.0], [0.1, 0.0]], dtype=torch.float64)
    x = torch.zeros_like(moves)
    pairs = eigenpairs(torch.tensor([1.0, 0.0], dtype=moves.dtype).expand(2, 2)[..., None])
    near = torch.tensor([False, True])
    manifold = LearnedDataManifold(PulledCircle(pull=0.0, sigma=1.0))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        slide = warn_slide(manifold, x, x + moves, pairs, 1, near, 1.0, 2)
    torch.testing.assert_close(slide, torch.tensor([0.0, 0.1], dtype=torch.float64))


def test_a_far_point_landing_on_a_segments_end_gives_no_slide_warning():
    """End to end on KNNCDC (segment [0, 6] on the x-axis, ``σ = 0.3``): ``(7.5, 0.2)`` lands on the segment's end,
    1.5 (5 ``σ``) along it, next to two points near the segment; nothing warns."""
    t = torch.linspace(0, 6, 121, dtype=torch.float64)
    M = LearnedDataManifold(KNNCDC(torch.stack([t, 0 * t], -1), k=8, sigma=0.3), landing=True)
    x = torch.tensor([[7.5, 0.2], [3.0, 0.05], [2.0, -0.05]], dtype=torch.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        landed = M.projx(x)
    assert landed[0, 0] < 6.5  # it did move a long way along the data


def test_points_the_denoiser_moves_more_than_half_sigma_are_not_counted_however_far_they_slide():
    """The documented limitation of `warn_slide` (no threshold on ``slide / max(σ, d)`` tells a learned swiss roll's
    edges from a VAE-code model's sliding end cell): the 13 points of the warning test, but 0.6 ``σ`` outside the
    circle, where the denoiser moves each by 0.6-0.87 ``σ``, slide as far (up to 1.04 ``σ`` along the circle, 8
    of them more than `SLIDE_SMALL` ``σ``) and nothing warns; on the circle the same slide warns (the first test)."""
    M = LearnedDataManifold(PulledCircle(pull=0.5, sigma=1.0), landing=True)
    x = _circle(13, radius=1.6)
    assert ((M.field.project(x) - x).norm(dim=-1) > 0.5).all()  # every point started farther than σ/2
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        landed = M.projx(x)
    moved = torch.atan2(landed[:, 1], landed[:, 0]) - torch.atan2(x[:, 1], x[:, 0])  # radians = σ on the unit circle
    assert moved.abs().max() > 1.0 and (moved.abs() > SLIDE_SMALL).sum() >= 8
