"""Geodesics with DEFAULT settings (``init="auto"``) follow the data (issue 12).

Specified: on a learned S² and on the torus (R = 1, r = 0.4), default `geodesic` calls return paths whose Euclidean
length is within 3% of the true geodesic distance and which stay within 0.05 of the manifold, and say
``converged=True`` honestly. On centred k-NN fields of 4,000 points of S² (k = 16, 32, 64, σ = 0.05, δ = 0) the
length depends on the draw of the sample: within 6% per path and 3% on average over two draws (measured spread in
`test_knn_sphere_default_geodesics_follow_great_circles`).
"""

from __future__ import annotations

import math
import warnings

import pytest
import torch
from torch import Tensor

from learned_manifold.evaluation import path_quality
from learned_manifold.geodesics import geodesic, path_energy, regularising_delta
from learned_manifold.geometry import lowrank_apply, lowrank_solve
from learned_manifold.metrics import KNNCDC, LearnedCDC
from learned_manifold.metrics.base import CoMetricField

F64 = torch.float64
ANGLES = [math.pi / 2, 2 * math.pi / 3, 5 * math.pi / 6]  # 90°, 120°, 150°


def sphere_pairs(seed: int = 1) -> tuple[Tensor, Tensor]:
    """Pairs at the angles `ANGLES` on the unit sphere, in a random plane through the centre."""
    q = torch.linalg.qr(torch.randn(3, 3, generator=torch.Generator().manual_seed(seed))).Q
    a = torch.tensor([[1.0, 0.0, 0.0]] * len(ANGLES))
    b = torch.tensor([[math.cos(t), math.sin(t), 0.0] for t in ANGLES])
    return a @ q.T, b @ q.T


def check(result, truth: Tensor, manifold, *, length_tol: float = 0.03, distance_tol: float = 0.05) -> None:
    q = path_quality(result.path, manifold=manifold)
    ratio = q.length / truth.to(q.length)
    assert ((ratio - 1).abs() < length_tol).all(), ratio
    assert (q.max_distance <= distance_tol).all(), q.max_distance
    assert result.converged.all(), result.converged


@pytest.mark.parametrize("init", ["auto", "landing"])
def test_learned_sphere_default_geodesics_follow_great_circles(sphere_model, sphere, init):
    """LearnedCDC at the model's default σ, δ = 0. The fixture's file stores landmarks, so ``"auto"`` starts on the
    graph path through them (with landing, as for every field with a denoiser); a model without landmarks starts
    on the landed chord (``"landing"``; measured ratios 0.987/0.984/0.985, max distance ≤ 0.024)."""
    a, b = sphere_pairs()
    result = geodesic(LearnedCDC(sphere_model), a, b, init=init)
    assert result.init == ("graph" if init == "auto" else "landing")
    check(result, torch.tensor(ANGLES), sphere)


def test_learned_sphere_geodesics_have_no_jump_at_the_ends(sphere_model, sphere):
    """Data points of a curved manifold are not fixed points of the landing (the posterior mean lies inside the
    sphere, by about dσ²/2 here): the landed interior carries the ends' offsets, so a 10° arc keeps its length as
    the path gets more points, and a pair x0 = x1 gives the constant path. Before: the ends jumped through the
    expensive normal direction: on this fixture the arc was 1.15 and 1.46 times the great circle with 4 and 32
    points (now 1.000 and 1.000), and on a model trained to σ = 0.125 x0 = x1 had metric length 0.18, each
    "converged"."""
    field = LearnedCDC(sphere_model)
    a = math.radians(10)
    x0, x1 = torch.tensor([[1.0, 0.0, 0.0]]), torch.tensor([[math.cos(a), math.sin(a), 0.0]])
    ratios = []
    for n in (4, 32):
        res = geodesic(field, x0, x1, n_points=n)
        assert res.init == "graph" and bool(res.converged.all())
        ratios.append(float(res.euclidean_length) / a)
    assert abs(ratios[1] - ratios[0]) < 0.01 and all(abs(r - 1) < 0.03 for r in ratios), ratios
    ends = sphere.sample(3, generator=torch.Generator().manual_seed(2))
    res = geodesic(field, ends, ends.clone())
    assert bool(res.converged.all()) and bool((res.length == 0).all()), res.length
    torch.testing.assert_close(res.path, ends.unsqueeze(1).expand(3, 16, 3))


KNN_DRAWS = (0, 1)  # data seeds of the 4,000-point S² samples; each draw's pair plane has seed data seed + 1


def knn_draw_excess(sphere, k: int, seed: int) -> tuple[Tensor, Tensor]:
    """Length excess ``(3,)`` (Euclidean length / great circle − 1) and ``converged`` ``(3,)`` of the default
    geodesics at `ANGLES` on a centred KNNCDC(k, σ = 0.05) of the draw ``seed``; checks the start and the
    warnings (the gap rule's, and that an unconverged path was flagged) and that the paths stay within 0.05."""
    data = sphere.sample(4000, generator=torch.Generator().manual_seed(seed))
    a, b = sphere_pairs(seed + 1)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = geodesic(KNNCDC(data, k=k, sigma=0.05), a, b)
    messages = [str(w.message) for w in caught]
    # the gap rule reads d = 1 at some midpoints (λ₂/λ₁ just below 1/2): the reported lengths drop a real direction
    assert any("keep the gap rule's directions" in m for m in messages), messages
    unresolved = [m for m in messages if "do not resolve the metric" in m]
    assert len(messages) == 1 + len(unresolved) and bool(unresolved) == (not bool(result.converged.all())), messages
    assert result.init == "graph"
    q = path_quality(result.path, manifold=sphere)
    assert (q.max_distance <= 0.05).all(), q.max_distance
    return q.length / torch.tensor(ANGLES).to(q.length) - 1, result.converged


@pytest.mark.parametrize("k", [16, 32, 64])
def test_knn_sphere_default_geodesics_follow_great_circles(sphere, k):
    """Centred KNNCDC(σ = 0.05, δ = 0) of 4,000 points of S², two draws (`KNN_DRAWS`). Before issue 12, k = 16
    died with LinAlgError (NaN gradients of eigh on the k×k Gram's k − 3 repeated zero eigenvalues) and k = 32, 64
    returned the chord with converged=True.

    How long the paths are depends on the draw, not on k. Measured over data seeds 0–9 (90 paths, float32 data):
    the excess is 0.9–5.2% (mean 2.2% at k = 16 and 32, 2.3% at k = 64; worst 4.3 / 5.2 / 5.2%); 15 of the 90
    paths exceed 3%, and the worst pair of 4, 4 and 6 draws of 10 does. It is the sample's field, not the solver:
    restarted from the true arc (k = 64, seed 2, 90°: 4.9%) the solver ends on a longer path (metric length 1.467
    against 1.397). Hence: each path within 6%, and the mean over a k's six paths below 3% (1.6–2.8% for every two
    consecutive seeds of 0–9). At seeds 0 / 1: k = 16 2.25, 1.82, 0.85 / 2.44, 2.76, 2.18%; k = 32 1.71, 1.84, 1.58
    / 1.57, 1.89, 2.04%; k = 64 1.42, 1.73, 1.65 / 0.94, 1.95, 2.05%. The paths stay within 0.008 of the sphere.
    89 of the 90 converge: k = 32 at seed 1 marks its 90° pair unconverged, with a warning (its length grows by
    6.8% from 4 to 16 sub-points per segment)."""
    excess, converged = zip(*(knn_draw_excess(sphere, k, seed) for seed in KNN_DRAWS), strict=True)
    excess = torch.cat(excess)
    assert bool((excess.abs() < 0.06).all()) and float(excess.mean()) < 0.03, excess
    assert int(torch.cat(converged).sum()) >= len(excess) - 1, converged


class TorusChart(CoMetricField):
    """The exact induced metric of the torus of revolution in the chart (θ, φ): ``diag((R + r cos φ)², r²)``."""

    dim = 2

    def __init__(self, major: float, minor: float) -> None:
        super().__init__()
        self.major, self.minor = major, minor

    def _diag(self, x: Tensor) -> Tensor:
        ring = (self.major + self.minor * torch.cos(x[:, 1])) ** 2
        return torch.stack([ring, torch.full_like(ring, self.minor**2)], -1)

    def metric(self, x: Tensor, v: Tensor) -> Tensor:
        return self._diag(x) * v

    def apply(self, x: Tensor, w: Tensor) -> Tensor:
        return w / self._diag(x)


# (θ₀, φ₀, θ₁, φ₁): each pair more than 2 rad apart in θ; the second crosses the inner side of the tube.
TORUS_PAIRS = torch.tensor([(0.0, 0.0, 2.3, 0.6), (0.5, 1.5, -1.8, -0.5), (1.0, 2.5, 3.4, 3.8)], dtype=torch.float64)


def torus_truth(torus) -> Tensor:
    """True geodesic distances of `TORUS_PAIRS`: the discrete geodesic (65 points, float64) of the exact chart
    metric, minimised by this package's solver (checked against closed forms in test_geodesics.py), taking the
    shortest over the three windings of φ (θ: the short way round). Agrees with an independent torch.optim.LBFGS
    solve of the same chart energy at 129 points to 1e-4 (2.7723, 2.4582, 1.5833)."""
    a = TORUS_PAIRS[:, :2]
    d = (TORUS_PAIRS[:, 2:] - a + math.pi) % (2 * math.pi) - math.pi
    chart = TorusChart(torus.major, torus.minor)
    lengths = []
    for k in (-1, 0, 1):
        res = geodesic(chart, a, a + d + torch.tensor([0.0, 2 * math.pi * k], dtype=torch.float64), n_points=65)
        assert res.converged.all()
        lengths.append(res.length)
    return torch.stack(lengths).amin(0)


def torus_points(torus) -> tuple[Tensor, Tensor]:
    p = TORUS_PAIRS.float()
    return torus.parametrize(p[:, 0], p[:, 1]), torus.parametrize(p[:, 2], p[:, 3])


def test_torus_truth_matches_an_independent_solve(torus):
    torch.testing.assert_close(torus_truth(torus), torch.tensor([2.7723, 2.4582, 1.5833], dtype=torch.float64),
                               atol=2e-4, rtol=0)


def test_knn_torus_default_geodesics(torus):
    """Centred KNNCDC(k = 32, σ = 0.05) on 6000 torus points; measured ratios 1.016/1.015/1.024, distance ≤ 0.008."""
    data = torus.sample(6000, generator=torch.Generator().manual_seed(0))
    a, b = torus_points(torus)
    with pytest.warns(UserWarning, match="keep the gap rule's directions"):  # d = 1 read at some midpoints
        result = geodesic(KNNCDC(data, k=32, sigma=0.05), a, b)
    check(result, torus_truth(torus), torus)


def test_learned_torus_default_geodesics(torus_model, torus):
    """LearnedCDC of the torus fixture at its default σ, all three pairs; measured ratios 0.995/0.994/0.996,
    distance ≤ 0.014. Pair 1 failed with the landed chord as the start (the small model's normal eigenvalue rises
    to 0.75 inside the tube and that start's minimum cut through it); the graph path through the file's landmarks,
    with landing, follows the surface."""
    a, b = torus_points(torus)
    result = geodesic(LearnedCDC(torus_model), a, b)
    assert result.init == "graph"
    check(result, torus_truth(torus), torus)


class _CircleTangentField(CoMetricField):
    """``G = u uᵀ`` with ``u`` the unit circle's tangent at ``x/‖x‖``: rank 1 in R², so with ``δ = 0`` its metric
    (the pseudo-inverse) charges nothing for radial motion."""

    low_rank = True
    dim = 2

    def factor(self, x):
        return (torch.stack([-x[:, 1], x[:, 0]], -1) / x.norm(dim=-1, keepdim=True)).unsqueeze(-1)

    def apply(self, x, w):
        return lowrank_apply(self.factor(x), w, self.delta)

    def metric(self, x, v):
        return lowrank_solve(self.factor(x), v, self.delta)


def test_a_low_rank_field_without_delta_gets_a_regularised_energy_by_default():
    """With its singular δ = 0 metric the energy is minimised by cutting through the circle's inside (length 2
    through the origin, metric length 0); the default δ = 10⁻³ λ₁ gives the arcs of 90° and 120°."""
    field = _CircleTangentField()
    x0 = torch.tensor([[1.0, 0.0], [1.0, 0.0]], dtype=torch.float64)
    x1 = torch.tensor([[0.0, 1.0], [-0.5, 3**0.5 / 2]], dtype=torch.float64)
    torch.testing.assert_close(regularising_delta(field, x0, x1), torch.full((2,), 1e-3, dtype=torch.float64))
    res = geodesic(field, x0, x1, n_points=33)
    assert bool(res.converged.all())
    assert torch.allclose(res.euclidean_length, torch.tensor([math.pi / 2, 2 * math.pi / 3], dtype=torch.float64),
                          rtol=0.01)
    assert float((res.path.norm(dim=-1) - 1).abs().max()) < 0.01
    with pytest.warns(UserWarning, match="do not resolve the metric"):  # its ~0 length is the midpoints' only
        singular = geodesic(field, x0, x1, n_points=33, delta=0.0)
    assert float((singular.path.norm(dim=-1) - 1).abs().max()) > 0.5  # what the default prevents


class _CircleWithNormalLeak(CoMetricField):
    """``A = [u, 10⁻² n]`` (``(B, 2, 2)``): the unit circle's tangent ``u`` and normal ``n`` at ``x/‖x‖``, so
    ``G`` has the tangent eigenvalue 1 and a small learned normal eigenvalue 10⁻⁴ (rank D = 2, as a learned factor
    of a curve in R²); its own δ = 0 metric, the pseudo-inverse of ``G``, charges normal motion 10⁴ times."""

    low_rank = True
    dim = 2

    def factor(self, x):
        n = x / x.norm(dim=-1, keepdim=True)
        return torch.stack([torch.stack([-n[:, 1], n[:, 0]], -1), 1e-2 * n], -1)

    def apply(self, x, w):
        return lowrank_apply(self.factor(x), w, self.delta)

    def metric(self, x, v):
        return lowrank_solve(self.factor(x), v, self.delta)


def test_a_low_rank_field_without_delta_reports_lengths_on_its_learned_tangent_bundle():
    """An arc of 3 rad with a radial wobble of ±10⁻³ (steps=0: the reported metric only). In the field's own δ = 0
    metric it is more than twice the arc (each segment's normal step of 2·10⁻³ costs 0.2, twice its tangent step);
    on the learned tangent bundle (SPEC §5: ``G⁺`` on the top-d eigen-directions, d = 1 by the gap rule) it is the
    closed form ``Σ_i |u(x_{i+½})ᵀ Δ_i|``, within 1% of the arc."""
    field = _CircleWithNormalLeak()
    t = torch.linspace(0.0, 3.0, 33, dtype=torch.float64)
    radius = 1 + 1e-3 * (-1.0) ** torch.arange(33, dtype=torch.float64)
    radius[0] = radius[-1] = 1.0
    path = (radius.unsqueeze(-1) * torch.stack([torch.cos(t), torch.sin(t)], -1)).unsqueeze(0)
    res = geodesic(field, path[:, 0], path[:, -1], init=path, steps=0)
    mid, step = 0.5 * (path[0, 1:] + path[0, :-1]), path[0, 1:] - path[0, :-1]
    tangent = torch.stack([-mid[:, 1], mid[:, 0]], -1) / mid.norm(dim=-1, keepdim=True)
    along = (tangent * step).sum(-1)
    torch.testing.assert_close(res.length, along.abs().sum().reshape(1))
    torch.testing.assert_close(res.energy, along.square().sum().reshape(1))
    torch.testing.assert_close(res.initial_energy, res.energy)
    assert abs(float(res.length) - 3.0) < 0.03
    own = path_energy(field, path)[1]  # the field's own δ = 0 metric: what was reported before
    assert float(own) > 2 * 3.0, own


class _TwoSpheres(CoMetricField):
    """``G = w (I − n nᵀ)``, ``δ = 0``: unit spheres about 0 (``w = 1``) and about ``(10, 0, 0)`` (``w = 100``),
    ``n`` the unit normal of the nearer sphere."""

    dim = 3
    low_rank = True

    def factor(self, x: Tensor) -> Tensor:
        far = (x[:, :1] > 5).to(x.dtype)
        n = torch.nn.functional.normalize(x - far * torch.tensor([10.0, 0.0, 0.0], dtype=x.dtype), dim=-1)
        return (1 + 99 * far).sqrt().unsqueeze(-1) * (torch.eye(3, dtype=x.dtype) - n.unsqueeze(-1) * n.unsqueeze(-2))


def test_the_default_delta_is_each_pairs_own():
    """The default δ was 10⁻³ × the mean λ₁ over the ends of the whole batch: a quarter circle on the w = 1
    sphere got δ = 0.0505 beside a pair on the w = 100 one, and cut inside to radius 0.985 (0.010 off its path
    alone). Now each pair has 10⁻³ × its own ends' λ₁ (`GeodesicResult.delta` ``(B,)``) and the same path."""
    a0, a1 = torch.tensor([[1.0, 0.0, 0.0]], dtype=F64), torch.tensor([[0.0, 1.0, 0.0]], dtype=F64)
    shift = torch.tensor([10.0, 0.0, 0.0], dtype=F64)
    alone = geodesic(_TwoSpheres(), a0, a1, n_points=17, init="linear")
    batch = geodesic(_TwoSpheres(), torch.cat([a0, a0 + shift]), torch.cat([a1, a1 + shift]), n_points=17,
                     init="linear")
    torch.testing.assert_close(batch.delta, torch.tensor([1e-3, 0.1], dtype=F64))
    torch.testing.assert_close(alone.delta, torch.tensor([1e-3], dtype=F64))
    torch.testing.assert_close(batch.path[0], alone.path[0], atol=1e-6, rtol=0)
    assert float((alone.path[0].norm(dim=-1) - 1).abs().max()) < 1e-3
    single = geodesic(_TwoSpheres(), a0[0], a1[0], n_points=5, init="linear", steps=0)  # one pair: a 0-d delta
    assert single.delta.shape == () and float(single.delta) == pytest.approx(1e-3)


def test_a_given_delta_is_reported_per_pair_as_the_default_one():
    """``GeodesicResult.delta`` was a float where ``delta`` was given and a ``(B,)`` tensor by default, so code
    formatting it (``f"{res.delta:.3g}"``) broke on one of the two (the reviewer). One type now: ``(B,)``."""
    field = _TwoSpheres()
    x0 = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]], dtype=F64)
    x1 = torch.tensor([[0.0, 1.0, 0.0], [0.0, 0.0, 1.0]], dtype=F64)
    given = geodesic(field, x0, x1, n_points=5, init="linear", delta=1e-2, steps=0)
    torch.testing.assert_close(given.delta, torch.full((2,), 1e-2, dtype=F64))
    assert geodesic(field, x0[0], x1[0], n_points=5, init="linear", delta=1e-2, steps=0).delta.shape == ()
    assert geodesic(field, x0[:0], x1[:0], n_points=5, init="linear", delta=1e-2).delta.shape == (0,)


def test_geodesic_follows_a_landing_manifolds_own_setting_by_default():
    """``landing=None`` lands the interior points for a `LearnedDataManifold` built with ``landing=True``, whatever
    the start: a given start bulging 0.4 off the plane z = 0 (δ = 0: the energy does not see z) comes back on the
    plane; ``landing=False`` keeps the bulge, as a manifold without landing does with a given start. Before, the
    manifold's setting was ignored and a given or linear start never landed."""
    from learned_manifold import LearnedDataManifold
    from tests.learned_manifold.test_flows_landing import _SlidingDenoiser

    field = _SlidingDenoiser(0.0)
    x0, x1 = torch.tensor([[1.0, 0.0, 0.0]], dtype=F64), torch.tensor([[0.0, 1.0, 0.0]], dtype=F64)
    t = torch.linspace(0, 1, 9, dtype=F64)[:, None]
    bulge = (1 - t) * x0 + t * x1 + 0.4 * torch.sin(torch.pi * t) * torch.tensor([0.0, 0.0, 1.0], dtype=F64)
    lands = LearnedDataManifold(field, landing=True)
    assert float(geodesic(lands, x0, x1, init=bulge[None], delta=0.0).path[..., 2].abs().max()) < 1e-12
    for manifold, landing in ((lands, False), (LearnedDataManifold(field), None)):
        path = geodesic(manifold, x0, x1, init=bulge[None], landing=landing, delta=0.0).path
        torch.testing.assert_close(path[0, :, 2], bulge[:, 2], rtol=0, atol=1e-12)
