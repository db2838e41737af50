"""Discrete geodesics (SPEC §6) against closed forms: straight lines in R^D and great circles on S²."""

from __future__ import annotations

import math
import re
import warnings

import pytest
import torch
from torch import Tensor, nn

from learned_manifold.evaluation import lerp
from learned_manifold.flows import polyline_lengths
from learned_manifold.geodesics import GEODESIC_METHODS, GeodesicResult, geodesic, path_energy, segment_energies
from learned_manifold.geometry import lowrank_apply, lowrank_solve
from learned_manifold.metrics import KNNCDC, EuclideanMetric
from learned_manifold.metrics.base import CoMetricField

F64 = torch.float64


class EuclideanField(CoMetricField):
    """``G = I``, ``δ = 0``: the metric is the identity."""

    def apply(self, x: Tensor, w: Tensor) -> Tensor:
        return w

    def metric(self, x: Tensor, v: Tensor) -> Tensor:
        return v


class SphereProjector(CoMetricField):
    """Projector onto the tangent plane of S² at ``x/|x|`` (a closed-form, mean-centred field) plus ``δ I``."""

    dim = 3
    low_rank = True
    centred = True

    def __init__(self, delta: float = 1e-2) -> None:
        super().__init__()
        self.delta = delta
        self.calls: list[tuple[int, ...]] = []

    def factor(self, x: Tensor) -> Tensor:
        n = x / x.norm(dim=-1, keepdim=True)
        e = nn.functional.one_hot(n.abs().argmin(-1), 3).to(x)  # the axis least aligned with n
        t1 = e - (e * n).sum(-1, keepdim=True) * n
        t1 = t1 / t1.norm(dim=-1, keepdim=True)
        t2 = torch.linalg.cross(n, t1)
        return torch.stack([t1, t2], dim=-1)

    def apply(self, x: Tensor, w: Tensor) -> Tensor:
        return lowrank_apply(self.factor(x), w, self.delta)

    def metric(self, x: Tensor, v: Tensor) -> Tensor:
        self.calls.append(tuple(x.shape))
        return lowrank_solve(self.factor(x), v, self.delta)


class ScaledEuclidean(CoMetricField):
    """``g = c I`` with a learnable ``c``: checks that the solver leaves the field's parameters alone."""

    def __init__(self) -> None:
        super().__init__()
        self.c = nn.Parameter(torch.tensor(2.0, dtype=F64))

    def apply(self, x: Tensor, w: Tensor) -> Tensor:
        return w / self.c

    def metric(self, x: Tensor, v: Tensor) -> Tensor:
        return self.c * v


class InverseSquare(EuclideanField):
    """``g = I / |x|²``: infinite at the origin."""

    def metric(self, x: Tensor, v: Tensor) -> Tensor:
        return v / x.pow(2).sum(-1, keepdim=True)


class Holder:
    """Stands in for `LearnedDataManifold`: anything with a ``.field``."""

    def __init__(self, field: CoMetricField) -> None:
        self.field = field


def rotation(seed: int = 0) -> Tensor:
    q, _ = torch.linalg.qr(torch.randn(3, 3, dtype=F64, generator=torch.Generator().manual_seed(seed)))
    return q


def sphere_pairs(angles: list[float], seed: int = 0) -> tuple[Tensor, Tensor]:
    q = rotation(seed)
    x0 = torch.tensor([[1.0, 0.0, 0.0]] * len(angles), dtype=F64) @ q.T
    x1 = torch.tensor([[math.cos(a), math.sin(a), 0.0] for a in angles], dtype=F64) @ q.T
    return x0, x1


@pytest.mark.parametrize("method", list(GEODESIC_METHODS))
def test_euclidean_geodesic_is_the_straight_line(method: str) -> None:
    g = torch.Generator().manual_seed(1)
    x0, x1 = torch.randn(3, 5, dtype=F64, generator=g), torch.randn(3, 5, dtype=F64, generator=g)
    n = 9
    line = lerp(x0, x1, n)
    res = geodesic(EuclideanField(), x0, x1, n_points=n, method=method)
    assert isinstance(res, GeodesicResult)
    assert res.path.shape == (3, n, 5)
    assert (res.path - line).abs().max() < 1e-6
    exact = (x1 - x0).pow(2).sum(-1) / (n - 1)  # (n − 1) segments of |x1 − x0|² / (n − 1)²
    torch.testing.assert_close(res.energy, exact)
    torch.testing.assert_close(res.length, (x1 - x0).norm(dim=-1))
    torch.testing.assert_close(res.euclidean_length, (x1 - x0).norm(dim=-1))
    assert bool(res.converged.all())

    # From a perturbed start the solver must find the line again.
    init = line.clone()
    init[:, 1:-1] += 0.3 * torch.randn(3, n - 2, 5, dtype=F64, generator=g)
    res = geodesic(EuclideanField(), x0, x1, init=init, method=method, steps=2000)
    tol = 1e-6 if method == "lbfgs" else 1e-3
    assert (res.path - line).abs().max() < tol
    assert bool(res.converged.all())
    assert (res.initial_energy > res.energy).all()


@pytest.mark.parametrize("method", list(GEODESIC_METHODS))
def test_sphere_geodesic_follows_the_great_circle(method: str) -> None:
    angles = [math.pi / 2, 2 * math.pi / 3]
    x0, x1 = sphere_pairs(angles)
    field = SphereProjector(delta=1e-2)
    n = 16
    res = geodesic(field, x0, x1, n_points=n, method=method)
    arc = torch.tensor(angles, dtype=F64)
    assert bool(res.converged.all())
    assert ((res.euclidean_length / arc - 1).abs() < 0.03).all()
    assert (res.path.norm(dim=-1) - 1).abs().max() < 0.02
    # LERP cuts through the ball (to |x| = cos(θ/2)) and costs more.
    line_energy, _ = path_energy(field, lerp(x0, x1, n))
    torch.testing.assert_close(res.initial_energy, line_energy)
    assert (res.energy < 0.2 * line_energy).all()
    # An energy minimiser has equal metric segment lengths, so E = L² / (n − 1) (Cauchy–Schwarz equality).
    seg = segment_energies(field, res.path).sqrt()
    spread = 1e-2 if method == "lbfgs" else 3e-2
    assert (seg.amax(-1) / seg.amin(-1) < 1 + spread).all()
    torch.testing.assert_close(res.energy, res.length**2 / (n - 1), rtol=1e-3, atol=0)
    # Closed form: g = P_T / (1 + δ) + n nᵀ / δ depends on x/|x| only, so in polar coordinates of the pair's plane
    # ds² = dρ²/δ + ρ² dφ²/(1 + δ); with u = ρ/sqrt(δ) and ψ = c φ, c = sqrt(δ/(1 + δ)), that is the flat
    # du² + u² dψ². The geodesic is the chord of the unrolled wedge: it dips to |x| = cos(cθ/2) and its metric
    # length is 2 sin(cθ/2) / sqrt(δ).
    c = math.sqrt(field.delta / (1 + field.delta))
    dip = 1 - torch.cos(c * arc / 2)
    torch.testing.assert_close((1 - res.path.norm(dim=-1)).amax(-1), dip, rtol=0.05, atol=0)
    torch.testing.assert_close(
        res.length, 2 * torch.sin(c * arc / 2) / math.sqrt(field.delta), rtol=2e-3, atol=0
    )


def test_energy_is_one_batched_metric_call() -> None:
    x0, x1 = sphere_pairs([1.0, 2.0])
    field = SphereProjector()
    path = lerp(x0, x1, 7)
    field.calls.clear()
    energy, length = path_energy(field, path)
    assert field.calls == [(2 * 6, 3)]
    assert energy.shape == length.shape == (2,)


def test_batched_equals_per_pair_and_single_pair_input() -> None:
    x0, x1 = sphere_pairs([math.pi / 2, 2 * math.pi / 3], seed=3)
    field = SphereProjector()
    both = geodesic(field, x0, x1, n_points=12)
    for i in range(2):
        one = geodesic(field, x0[i], x1[i], n_points=12)
        assert one.path.shape == (12, 3)
        assert one.energy.shape == one.length.shape == one.converged.shape == ()
        torch.testing.assert_close(one.path, both.path[i], atol=1e-8, rtol=0)
        torch.testing.assert_close(one.energy, both.energy[i], atol=1e-10, rtol=1e-8)


def test_init_path_from_another_curve_reaches_the_same_geodesic() -> None:
    x0, x1 = sphere_pairs([2 * math.pi / 3], seed=5)
    field = SphereProjector()
    ref = geodesic(field, x0, x1, n_points=12)
    # A curve bulging outward, like a flow path that stays near the data but is no geodesic.
    init = lerp(x0, x1, 12)
    bulge = 1 + 0.2 * torch.sin(torch.linspace(0, math.pi, 12, dtype=F64)).view(1, -1, 1)
    init = init / init.norm(dim=-1, keepdim=True) * bulge
    res = geodesic(Holder(field), x0, x1, init=init)
    assert res.path.shape == (1, 12, 3)
    torch.testing.assert_close(res.energy, ref.energy, rtol=1e-6, atol=0)
    assert (res.path - ref.path).abs().max() < 1e-3


def test_validation() -> None:
    x0, x1 = sphere_pairs([1.0, 2.0])
    field = SphereProjector()
    with pytest.raises(ValueError, match="lbfgs"):
        geodesic(field, x0, x1, method="newton")
    with pytest.raises(TypeError):
        geodesic(object(), x0, x1)
    with pytest.raises(ValueError, match="shape"):
        geodesic(field, x0, x1, init=torch.zeros(2, 8, 4, dtype=F64))
    with pytest.raises(ValueError, match="shape"):
        geodesic(field, x0, x1, init=torch.zeros(3, 8, 3, dtype=F64))
    with pytest.raises(ValueError, match="n_points"):
        geodesic(field, x0, x1, init=lerp(x0, x1, 8), n_points=10)
    bad_end = lerp(x0, x1, 8)
    bad_end[:, -1] += 0.1
    with pytest.raises(ValueError, match="end at x1"):
        geodesic(field, x0, x1, init=bad_end)
    bad_start = lerp(x0, x1, 8)
    bad_start[0, 0] += 0.1
    with pytest.raises(ValueError, match="start at x0"):
        geodesic(field, x0, x1, init=bad_start)
    with pytest.raises(ValueError, match="init"):
        geodesic(field, x0, x1, init="spline")
    with pytest.raises(ValueError):
        geodesic(field, x0, x1[:1])
    with pytest.raises(ValueError, match="non-finite"):
        # The midpoint is the origin, where this metric blows up.
        geodesic(InverseSquare(), x0, -x0, n_points=2)


def test_two_points_and_zero_steps() -> None:
    """Two points: nothing to solve, the chord; its energy is the midpoint rule's. Through the sphere's inside the
    projector metric charges the chord's normal part away from its midpoint, which the midpoint rule misses: the
    chord re-measured between its ends is 2.8 times as long, so it is not reported converged (a warning says so)."""
    x0, x1 = sphere_pairs([1.0])
    field = SphereProjector()
    with pytest.warns(UserWarning, match=r"1 of 1 converged path\(s\) do not resolve the metric"):
        res = geodesic(field, x0, x1, n_points=2)
    assert res.path.shape == (1, 2, 3) and res.steps == 0 and not bool(res.converged.any())
    d = x1 - x0
    torch.testing.assert_close(res.energy, (d * field.metric(0.5 * (x0 + x1), d)).sum(-1))
    res = geodesic(field, x0, x1, n_points=5, steps=0)
    torch.testing.assert_close(res.path, lerp(x0, x1, 5))
    assert not bool(res.converged.any())


class FlatteningProjection(EuclideanField):
    """A landing projection ``P(x) = (x₁, x₂, x₃ / 2)``: its fixed points are the plane ``x₃ = 0``."""

    def project(self, x: Tensor) -> Tensor:
        return x * x.new_tensor([1.0, 1.0, 0.5])

    @property
    def can_project(self) -> bool:
        return True


def test_landing_writes_interior_points_as_two_denoiser_steps() -> None:
    """With ``landing=True`` the interior points are ``P(P(z))`` (`LANDING_STEPS`; one posterior-mean step from
    between two sheets returns a blend of both): ends on the plane of fixed points, a start ``z`` off it, and the
    interior points come out at ``z₃ / 4``, ends kept."""
    from learned_manifold.geodesic_solvers import LANDING_STEPS

    assert LANDING_STEPS == 2
    x0, x1 = torch.tensor([[1.0, 2.0, 0.0]], dtype=F64), torch.tensor([[3.0, -2.0, 0.0]], dtype=F64)
    z = lerp(x0, x1, 5)
    z[:, 1:-1, 2] = torch.tensor([4.0, -8.0, 2.0], dtype=F64)
    res = geodesic(FlatteningProjection(), x0, x1, init=z, landing=True, steps=0)
    want = z.clone()
    want[:, 1:-1, 2] /= 4
    torch.testing.assert_close(res.path, want)


def test_landing_carries_the_ends_offsets_along_the_path() -> None:
    """Ends that are not fixed points of the landing keep their offsets ``o = x − P(P(x))``, blended linearly
    along the path (`end_offsets`), so no segment jumps between an end and the landed interior: from the straight
    line between ends at heights 4 and 8 (offsets 3 and 6), the interior points sit at ``z₃/4 + 3 + 3t``, here
    exactly on the line; and ``x0 = x1`` off the plane has the constant path, length 0, converged (before: a jump
    to the plane and back)."""
    x0, x1 = torch.tensor([[1.0, 2.0, 4.0]], dtype=F64), torch.tensor([[3.0, -2.0, 8.0]], dtype=F64)
    line = lerp(x0, x1, 5)
    res = geodesic(FlatteningProjection(), x0, x1, n_points=5, init="linear", landing=True, steps=0)
    torch.testing.assert_close(res.path, line)
    res = geodesic(FlatteningProjection(), x0, x1, n_points=5, init="linear", landing=True)
    torch.testing.assert_close(res.path, line)  # the straight line is the Euclidean geodesic, and lies in the set
    assert bool(res.converged.all())
    res = geodesic(FlatteningProjection(), x0, x0.clone(), n_points=6, init="linear", landing=True)
    torch.testing.assert_close(res.path, x0.unsqueeze(1).expand(1, 6, 3))
    assert float(res.length) == 0.0 and bool(res.converged.all())


def test_runs_under_no_grad_and_leaves_field_parameters_alone() -> None:
    field = ScaledEuclidean()
    x0 = torch.zeros(2, 4, dtype=F64)
    x1 = torch.ones(2, 4, dtype=F64)
    init = lerp(x0, x1, 6)
    init[:, 2:4] += 0.5
    with torch.no_grad():
        res = geodesic(field, x0, x1, init=init)
    assert field.c.grad is None
    assert not res.path.requires_grad
    assert (res.path - lerp(x0, x1, 6)).abs().max() < 1e-6
    torch.testing.assert_close(res.energy, 2.0 * 4 / 5 * torch.ones(2, dtype=F64))


def test_float32_converges() -> None:
    x0, x1 = sphere_pairs([math.pi / 2])
    res = geodesic(SphereProjector(), x0.float(), x1.float(), n_points=16)
    assert res.path.dtype == torch.float32
    assert bool(res.converged.all())
    assert (res.path.norm(dim=-1) - 1).abs().max() < 0.02


def test_an_image_shaped_start_path_is_taken_like_image_shaped_points():
    from learned_manifold import LearnedDataManifold, interpolate

    manifold = LearnedDataManifold(EuclideanMetric(), data_shape=(1, 4, 4))
    g = torch.Generator().manual_seed(0)
    x0, x1 = torch.rand(2, 1, 4, 4, generator=g), torch.rand(2, 1, 4, 4, generator=g)
    flow = interpolate(manifold, x0, x1, n_points=5, stop_tol=1e-12)
    flow.path[:, -1] = x1  # ends must be the pair's
    res = geodesic(manifold, x0, x1, init=flow.path)
    assert res.path.shape == (2, 5, 1, 4, 4) and res.init == "path"


def test_an_unknown_method_names_the_choices_in_one_set():
    msg = 'Invalid method "bogus". Must be one of {"lbfgs", "adam"}.'
    with pytest.raises(ValueError, match=re.escape(msg) + "$"):
        geodesic(EuclideanField(), torch.zeros(1, 3), torch.ones(1, 3), method="bogus")


def test_a_callers_autocast_does_not_change_the_geodesic():
    """Under ``torch.autocast('cpu', bfloat16)`` the energy's Woodbury algebra ran in bf16: another path and length.
    Float32 in gives float32 out and the answer outside autocast (`precision.full_precision`)."""
    x0, x1 = (x.float() for x in sphere_pairs([1.0, 2.0]))
    field = SphereProjector()
    plain = geodesic(field, x0, x1, n_points=8, steps=30)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        cast = geodesic(field, x0, x1, n_points=8, steps=30)
        _, remeasured = polyline_lengths(plain.path, field)
    assert cast.path.dtype == cast.length.dtype == remeasured.dtype == torch.float32
    for name in ("path", "length", "energy", "initial_energy"):
        assert torch.equal(getattr(cast, name), getattr(plain, name)), name
    assert torch.equal(remeasured, plain.length)


def test_an_end_beyond_the_data_warns_once_and_is_not_converged():
    """Tester E: an end 2 above a learned circle gave a "converged" path 5 times the straight segment, lengths that
    ignored or inflated the off-data leg, silently, though the field knew (``beyond_data``). The ends are checked
    once before solving: one warning naming the end and distance, ``ends_off_data`` per pair, and that pair (only)
    not converged. An on-data pair, and a field holding no data, stay silent."""
    t = torch.arange(64, dtype=F64) * 2 * math.pi / 64
    field = KNNCDC(torch.stack([t.cos(), t.sin(), 0 * t], -1), k=8, sigma=0.1, delta=1e-2)  # 4 spacings: 0.39
    x0 = torch.tensor([[1.0, 0.0, 0.0], [1.0, 0.0, 1.0]], dtype=F64)
    x1 = torch.tensor([[math.cos(1.0), math.sin(1.0), 0.0]] * 2, dtype=F64)
    with pytest.warns(UserWarning, match=r"^geodesic: points beyond the data: x0 \(1 of 2\), up to 1 from .* only "
                      r"defined near the data; move the ends onto the data first") as seen:
        res = geodesic(field, x0, x1, n_points=8)
    assert len(seen) == 1 and seen[0].filename == __file__
    assert res.converged.tolist() == [True, False]
    torch.testing.assert_close(res.ends_off_data, torch.tensor([0.0, 1.0], dtype=F64))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        alone = geodesic(field, x0[0], x1[0], n_points=8)
        flat = geodesic(EuclideanMetric(), x0, x1, n_points=4)  # no data held: no test, no warning
    assert bool(alone.converged) and alone.ends_off_data.shape == () and float(alone.ends_off_data) == 0.0
    assert flat.converged.all() and torch.equal(flat.ends_off_data, torch.zeros(2, dtype=F64))
