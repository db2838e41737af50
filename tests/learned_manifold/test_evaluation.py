"""Path and tangent scores (SPEC §5, §6) against closed forms on spheres."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
import torch
from torch import Tensor

from learned_manifold.evaluation import (
    PathQuality,
    dimension_accuracy,
    field_eigenpairs,
    lerp,
    nearest_distance,
    path_quality,
    peak_memory,
    tangent_error,
    time_per_query,
)
from learned_manifold.geometry import lowrank_apply, lowrank_solve
from learned_manifold.metrics.base import CoMetricField

F64 = torch.float64


class UnitSphere:
    """The unit sphere in R^D with its closed-form distances."""

    def distance(self, x: Tensor) -> Tensor:
        return (x.norm(dim=-1) - 1).abs()

    def geodesic_distance(self, x0: Tensor, x1: Tensor) -> Tensor:
        cos = (x0 * x1).sum(-1) / (x0.norm(dim=-1) * x1.norm(dim=-1))
        return torch.arccos(cos.clamp(-1, 1))


class NoGeodesics(UnitSphere):
    def geodesic_distance(self, x0: Tensor, x1: Tensor) -> Tensor:
        raise NotImplementedError


class FactorField(CoMetricField):
    """A low-rank field whose factor at each point is given in advance (tests pass the points in order)."""

    low_rank = True

    def __init__(self, factors: Tensor, delta: float = 0.0) -> None:
        super().__init__()
        self.factors = factors
        self.delta = delta

    def factor(self, x: Tensor) -> Tensor:
        return self.factors

    def apply(self, x: Tensor, w: Tensor) -> Tensor:
        return lowrank_apply(self.factors, w, self.delta)

    def metric(self, x: Tensor, v: Tensor) -> Tensor:
        return lowrank_solve(self.factors, v, self.delta)


class DenseProjector(CoMetricField):
    """``G = P`` (a projector given per point) without a low-rank factor: exercises the dense route."""

    def __init__(self, projectors: Tensor) -> None:
        super().__init__()
        self.projectors = projectors

    def apply(self, x: Tensor, w: Tensor) -> Tensor:
        return (self.projectors @ w.unsqueeze(-1)).squeeze(-1)

    def metric(self, x: Tensor, v: Tensor) -> Tensor:  # pragma: no cover - not used here
        raise NotImplementedError


def great_circle(theta: float, n: int) -> Tensor:
    t = torch.linspace(0, theta, n, dtype=F64)
    return torch.stack([torch.cos(t), torch.sin(t), torch.zeros_like(t)], dim=-1)


def sphere_tangents(b: int, dim: int, gen: torch.Generator) -> tuple[Tensor, Tensor]:
    """Random points on S^{dim−1} ⊂ R^dim and orthonormal bases ``(b, dim, dim − 1)`` of their tangent spaces."""
    x = torch.nn.functional.normalize(torch.randn(b, dim, dtype=F64, generator=gen), dim=-1)
    q, _ = torch.linalg.qr(
        torch.cat([x.unsqueeze(-1), torch.randn(b, dim, dim - 1, dtype=F64, generator=gen)], -1)
    )
    return x, q[..., 1:]


def test_lerp() -> None:
    x0 = torch.tensor([[0.0, 1.0], [2.0, 3.0]], dtype=F64)
    x1 = torch.tensor([[1.0, 1.0], [0.3, -0.7]], dtype=F64)
    line = lerp(x0, x1, 5)
    assert line.shape == (2, 5, 2)
    assert torch.equal(line[:, 0], x0) and torch.equal(line[:, -1], x1)
    torch.testing.assert_close(line[:, 2], 0.5 * (x0 + x1))
    assert lerp(x0[0], x1[0], 3).shape == (3, 2)
    with pytest.raises(ValueError):
        lerp(x0, x1, 1)
    assert lerp(x0, x1, np.int64(4)).shape == (2, 4, 2)  # a NumPy integer is an integer


@pytest.mark.parametrize("bad", [2.5, None, True, "3", 1])
def test_lerp_refuses_a_count_that_is_not_an_integer_by_name(bad) -> None:
    """n_points=2.5 and None failed with raw TypeErrors from torch.linspace / the comparison (tester U). A
    non-integer is a TypeError naming the argument, as every count's (tenth round: it was a ValueError here and a
    TypeError in `geodesic`), one out of range a ValueError."""
    x0, x1 = torch.zeros(2, 3, dtype=F64), torch.ones(2, 3, dtype=F64)
    error, what = (ValueError, "lie in >= 2") if type(bad) is int else (TypeError, "be an integer")
    with pytest.raises(error, match=rf"^n_points \(both ends counted\) must {what}, got "):
        lerp(x0, x1, bad)


def test_great_circle_scores() -> None:
    theta, n = 2.0, 21
    path = torch.stack([great_circle(theta, n), great_circle(1.0, n)])
    q = path_quality(path, manifold=UnitSphere(), target=path[:, -1])
    assert isinstance(q, PathQuality)
    assert q.max_distance.shape == (2,) and q.max_distance.max() < 1e-12 and q.mean_distance.max() < 1e-12
    chords = torch.tensor([(n - 1) * 2 * math.sin(a / (2 * (n - 1))) for a in (theta, 1.0)], dtype=F64)
    torch.testing.assert_close(q.length, chords)
    torch.testing.assert_close(q.geodesic_length, torch.tensor([theta, 1.0], dtype=F64))
    torch.testing.assert_close(q.length_ratio, chords / torch.tensor([theta, 1.0], dtype=F64))
    assert q.endpoint_gap.abs().max() == 0
    summary = q.summary()
    assert set(summary) == {
        "max_distance",
        "mean_distance",
        "length",
        "endpoint_gap",
        "geodesic_length",
        "length_ratio",
    }
    assert all(isinstance(v, float) for v in summary.values())


def test_lerp_cuts_through_the_ball() -> None:
    theta = math.radians(170)
    x0 = torch.tensor([1.0, 0.0, 0.0], dtype=F64)
    x1 = torch.tensor([math.cos(theta), math.sin(theta), 0.0], dtype=F64)
    q = path_quality(lerp(x0, x1, 33), manifold=UnitSphere())
    torch.testing.assert_close(q.max_distance, torch.tensor([1 - math.cos(theta / 2)], dtype=F64))
    torch.testing.assert_close(q.length, (x1 - x0).norm().view(1))
    torch.testing.assert_close(q.length_ratio, (x1 - x0).norm().view(1) / theta)
    assert q.endpoint_gap is None


def test_target_gap_and_missing_geodesics() -> None:
    path = great_circle(1.0, 9).unsqueeze(0)
    target = torch.tensor([[0.0, 0.0, 1.0]], dtype=F64)
    q = path_quality(path, manifold=NoGeodesics(), target=target)
    torch.testing.assert_close(q.endpoint_gap, (path[:, -1] - target).norm(dim=-1))
    assert q.geodesic_length is None and q.length_ratio is None
    # With a target the true geodesic goes to the target, not to where the path stopped.
    q = path_quality(path, manifold=UnitSphere(), target=target)
    torch.testing.assert_close(q.geodesic_length, torch.tensor([math.pi / 2], dtype=F64))
    q = path_quality(path)
    assert q.max_distance is None and q.mean_distance is None and q.geodesic_length is None
    with pytest.raises(ValueError):
        path_quality(path, target=target[:, :2])


@pytest.mark.parametrize("offset", [0.0, 100.0])
def test_nearest_distance_is_exact_for_dense_float32_data_anywhere(offset) -> None:
    """A float32 circle of 4,000 points (spacing 0.0016) in R⁸: every data point is at distance 0 from the set,
    wherever the circle sits. Before, the expanded square chose the wrong point: up to 0.04 away at offset 100,
    0.0004 at the origin."""
    t = torch.linspace(0, 2 * math.pi, 4001)[:-1]
    circle = torch.zeros(4000, 8)
    circle[:, 0], circle[:, 1] = t.cos(), t.sin()
    data = circle + offset
    assert float(nearest_distance(data, data).max()) == 0.0
    mid = (data[:-1] + data[1:]) / 2  # halfway between neighbours: half the spacing
    want = (data[1:] - data[:-1]).norm(dim=-1) / 2
    torch.testing.assert_close(nearest_distance(mid, data), want, atol=2e-5 * (1 + offset), rtol=0)


def test_nearest_data_fallback_matches_brute_force() -> None:
    gen = torch.Generator().manual_seed(0)
    data = torch.randn(500, 5, dtype=F64, generator=gen)
    path = torch.randn(3, 11, 5, dtype=F64, generator=gen)
    brute = (path.reshape(-1, 1, 5) - data.unsqueeze(0)).norm(dim=-1).amin(-1).reshape(3, 11)
    torch.testing.assert_close(nearest_distance(path.reshape(-1, 5), data, chunk=4), brute.reshape(-1))
    q = path_quality(path, data=data)
    torch.testing.assert_close(q.max_distance, brute.amax(-1))
    torch.testing.assert_close(q.mean_distance, brute.mean(-1))
    # A path through data points is at distance 0.
    assert path_quality(data[:7].unsqueeze(0), data=data).max_distance.item() == 0


def test_tangent_error_of_exact_and_random_bases() -> None:
    gen = torch.Generator().manual_seed(1)
    b, dim = 64, 6
    x, basis = sphere_tangents(b, dim, gen)
    exact = FactorField(basis, delta=1e-2)
    err = tangent_error(exact, x, basis)
    assert err.shape == (b,) and err.max() < 1e-6
    assert dimension_accuracy(exact, x, torch.full((b,), dim - 1)) == 1.0
    assert dimension_accuracy(exact, x, dim - 1) == 1.0

    random_basis, _ = torch.linalg.qr(torch.randn(b, dim, dim - 1, dtype=F64, generator=gen))
    err = tangent_error(FactorField(random_basis), x, basis)
    # Two random hyperplanes of R^6 differ by their normals: error sqrt(2) sin(angle between normals).
    assert err.mean() > 0.8

    # Factor scaled and with an extra weak column: still the same top-d eigenvectors.
    extra = torch.cat([3.0 * basis, 0.1 * x.unsqueeze(-1)], dim=-1)
    assert tangent_error(FactorField(extra), x, basis).max() < 1e-6
    assert dimension_accuracy(FactorField(extra), x, dim - 1) == 1.0


def test_a_random_plane_scores_sqrt_2d_1_minus_d_over_D_in_root_mean_square() -> None:
    """The docstring's ``sqrt(2d(1 − d/D))`` is the RMS of the score over random planes, not its mean (tester A):
    for a line in R² the mean is 2√2/π ≈ 0.90 while the RMS is 1."""
    gen = torch.Generator().manual_seed(4)
    b, dim, d = 4000, 2, 1
    x, basis = sphere_tangents(b, dim, gen)
    random_basis, _ = torch.linalg.qr(torch.randn(b, dim, d, dtype=F64, generator=gen))
    err = tangent_error(FactorField(random_basis), x, basis)
    assert err.pow(2).mean().sqrt().item() == pytest.approx(math.sqrt(2 * d * (1 - d / dim)), rel=0.03)
    assert err.mean().item() == pytest.approx(2 * math.sqrt(2) / math.pi, rel=0.03)  # E|√2 sin θ|, θ uniform


def test_evaluation_helpers_take_a_manifold_and_name_a_wrong_true_dim() -> None:
    """`tangent_error`, `dimension_accuracy` and `field_eigenpairs` raised AttributeError 'low_rank' on a
    `LearnedDataManifold` (tester C): they take its field, as `curvature` does; a ``true_dim`` of the wrong length
    failed with torch's bare ``expand`` error."""
    from learned_manifold import LearnedDataManifold
    from learned_manifold.evaluation import spectral_report

    x, basis = sphere_tangents(6, 4, torch.Generator().manual_seed(5))
    field = FactorField(basis)
    M = LearnedDataManifold(field, data_shape=(4,))
    torch.testing.assert_close(field_eigenpairs(M, x).values, field_eigenpairs(field, x).values)
    assert tangent_error(M, x, basis).max() < 1e-6
    assert dimension_accuracy(M, x, 3) == 1.0
    message = re.escape("true_dim must be one integer or one per point, shape (6,), got shape (2,)")
    with pytest.raises(ValueError, match=message):
        dimension_accuracy(field, x, torch.tensor([3, 3]))
    with pytest.raises(ValueError, match=message):
        spectral_report(field_eigenpairs(field, x), true_basis=basis, true_dim=torch.tensor([3, 3]))


def test_tangent_error_refuses_a_basis_that_is_not_orthonormal() -> None:
    """A scaled basis, or random columns, made ``tr P + tr Q − 2‖UᵀV‖²`` negative, clamped to a perfect 0."""
    gen = torch.Generator().manual_seed(1)
    x, basis = sphere_tangents(8, 4, gen)
    exact = FactorField(basis)
    for bad in (2 * basis, torch.randn(8, 4, 4, dtype=F64, generator=gen)):
        with pytest.raises(ValueError, match="orthonormal"):
            tangent_error(exact, x, bad)


def test_tangent_error_with_variable_dimension() -> None:
    gen = torch.Generator().manual_seed(2)
    b, dim = 10, 5
    x, basis = sphere_tangents(b, dim, gen)
    d = torch.tensor([1, 2, 3, 4, 2, 1, 3, 4, 4, 2])
    padded = basis * (torch.arange(dim - 1) < d.unsqueeze(-1)).unsqueeze(-2)  # zero columns beyond d
    # The field has the true tangents strong and the padded-away directions weak.
    true_cols = torch.arange(dim - 1) < d.unsqueeze(-1)  # (b, dim − 1)
    weights = torch.where(true_cols, 1.0, 0.05).to(F64)
    field = FactorField(basis * weights.unsqueeze(-2))
    assert tangent_error(field, x, padded).max() < 1e-6
    assert dimension_accuracy(field, x, d) == 1.0
    assert dimension_accuracy(field, x, torch.full((b,), 4)) == pytest.approx((d == 4).float().mean().item())
    # Strong where the truth is padding: for d ≤ 2 the top-d eigenvectors miss the tangent space entirely.
    inverted = FactorField(basis * torch.where(true_cols, 0.05, 1.0).to(F64).unsqueeze(-2))
    wrong = tangent_error(inverted, x, padded)
    small = d <= 2
    torch.testing.assert_close(wrong[small], (2.0 * d[small]).to(F64).sqrt())


def test_dense_fields_use_eigh() -> None:
    gen = torch.Generator().manual_seed(3)
    x, basis = sphere_tangents(8, 4, gen)
    field = DenseProjector(basis @ basis.transpose(-1, -2))
    pairs = field_eigenpairs(field, x)
    assert pairs.values.shape == (8, 4) and pairs.vectors.shape == (8, 4, 4)
    torch.testing.assert_close(
        pairs.values, torch.tensor([1.0, 1.0, 1.0, 0.0], dtype=F64).expand(8, 4), atol=1e-12, rtol=0
    )
    assert tangent_error(field, x, basis).max() < 1e-6
    assert dimension_accuracy(field, x, 3) == 1.0
    with pytest.raises(ValueError):
        tangent_error(field, x, basis[:4])


def test_time_and_memory() -> None:
    x = torch.randn(32, 4, dtype=F64)
    calls = []

    def fn(y: Tensor) -> Tensor:
        calls.append(1)
        return y * 2

    seconds = time_per_query(fn, x, repeats=3, warmup=1)
    assert isinstance(seconds, float) and seconds > 0
    assert len(calls) == 4
    assert peak_memory(fn, x) is None
    with pytest.raises(ValueError):
        time_per_query(fn, x, repeats=0)
    for kwargs, name, error in [({"repeats": True}, "repeats", TypeError), ({"repeats": 2.5}, "repeats", TypeError),
                                ({"warmup": -3}, "warmup", ValueError), ({"warmup": False}, "warmup", TypeError)]:
        calls.clear()
        what = "be an integer" if error is TypeError else "lie in >= 0"
        with pytest.raises(error, match=rf"^{name} must {what}, got "):
            time_per_query(fn, x, **kwargs)  # repeats=True and warmup=-3 were accepted (tester U)
        assert not calls


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_peak_memory_on_cuda() -> None:  # pragma: no cover - GPU only
    x = torch.randn(1024, 256, device="cuda")
    peak = peak_memory(lambda y: y @ y.T, x)
    assert peak is not None and peak >= 1024 * 1024 * 4
    assert time_per_query(lambda y: y @ y.T, x, repeats=2, warmup=1) > 0


def test_spectral_report_checks_its_truth_like_tangent_error():
    """A non-orthonormal true basis scored a perfect 0 here (tangent_error already refused it); an int true_dim,
    which dimension_accuracy takes, raised AttributeError; an empty batch raised "cannot convert NaN"."""
    from learned_manifold.evaluation import spectral_report
    from learned_manifold.geometry import eigenpairs

    A = torch.randn(4, 5, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    pairs = eigenpairs(A)
    basis = torch.linalg.qr(torch.randn(4, 5, 2, dtype=torch.float64))[0]
    with pytest.raises(ValueError, match="orthonormal"):
        spectral_report(pairs, true_basis=3 * basis, true_dim=torch.full((4,), 2))
    assert spectral_report(pairs, true_basis=basis, true_dim=2) == spectral_report(
        pairs, true_basis=basis, true_dim=torch.full((4,), 2))
    with pytest.raises(ValueError, match="together"):
        spectral_report(pairs, true_basis=basis)
    with pytest.raises(ValueError, match="non-empty batch"):
        spectral_report(eigenpairs(A[:0]))


def test_nearest_distance_refuses_bad_data_and_chunks():
    """One NaN data row made every distance a wrong finite number; chunk 0 divided by zero, negative ones
    returned uninitialised memory."""
    from learned_manifold.evaluation import nearest_distance

    data = torch.randn(20, 3, generator=torch.Generator().manual_seed(0))
    x = torch.randn(5, 3, generator=torch.Generator().manual_seed(1))
    bad = data.clone()
    bad[3, 0] = float("nan")
    with pytest.raises(ValueError, match="data holds NaN"):
        nearest_distance(x, bad)
    for chunk in (0, -5):
        with pytest.raises(ValueError, match="chunk"):
            nearest_distance(x, data, chunk=chunk)
    torch.testing.assert_close(nearest_distance(x, data, chunk=2), torch.cdist(x, data).min(-1).values)


def test_a_nan_point_of_a_dense_field_is_a_nan_row_not_a_failed_batch():
    from learned_manifold.evaluation import field_eigenpairs
    from learned_manifold.metrics import EuclideanMetric

    class Scaled(EuclideanMetric):  # G(x) = (1 + x₀²) I: finite where x is
        def apply(self, x, w):
            return (1 + x[:, :1] ** 2) * w

    x = torch.randn(4, 3, dtype=torch.float64)
    x[2, 0] = float("nan")
    pairs = field_eigenpairs(Scaled(3), x)
    assert torch.isnan(pairs.values[2]).all() and torch.isfinite(pairs.values[[0, 1, 3]]).all()


def test_feature_stability_refuses_a_field_without_directions():
    """A field with G = 0 scored 0, "perfectly stable": its z = 0 samples were no perturbation at all."""
    from learned_manifold.feature_stability import feature_stability

    class Zero(CoMetricField):
        low_rank, dim = True, 3

        def factor(self, x):
            return torch.zeros(x.shape[0], 3, 2, dtype=x.dtype)

    with pytest.raises(ValueError, match="only zero samples .* no direction"):
        feature_stability(Zero(), torch.randn(5, 3), lambda y: y, [0.1])


def test_nearest_distance_is_exact_for_a_dense_float32_curve() -> None:
    """200,000 float32 points on the unit circle (spacing 3e-5), queries 1e-5 off it: the expanded square's rounding
    exceeds the gaps, and its 8 best candidates missed the nearest point (up to 1.7x the distance at 10⁶ points).
    Now every distance is the float64 brute force's."""
    t = torch.rand(200_000, generator=torch.Generator().manual_seed(0), dtype=F64) * 2 * math.pi
    data = torch.stack([t.cos(), t.sin()], 1).float()
    x = data[:60] * (1 + 1e-5)
    want = (data.double().unsqueeze(0) - x.double().unsqueeze(1)).norm(dim=-1).amin(-1)
    got = nearest_distance(x, data)
    assert got.dtype == torch.float32
    torch.testing.assert_close(got.double(), want, rtol=1e-6, atol=0)


def test_scores_ignore_a_callers_autocast() -> None:
    """Under ``torch.autocast('cpu', bfloat16)`` float32 in gives float32 out and the same numbers."""
    g = torch.Generator().manual_seed(0)
    t = torch.rand(2000, generator=g) * 2 * math.pi
    data = torch.stack([t.cos(), t.sin()], 1)  # spacing 0.003: bf16 ranks its neighbours wrongly
    x, path = data[:30] * 1.001, torch.randn(2, 5, 2, generator=g)
    want = nearest_distance(x, data), path_quality(path, data=data).max_distance
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = nearest_distance(x, data), path_quality(path, data=data).max_distance
    for a, b in zip(got, want, strict=True):
        assert a.dtype == torch.float32
        torch.testing.assert_close(a, b, rtol=1e-6, atol=0)


def test_path_scores_take_numpy_and_image_shaped_paths() -> None:
    """NumPy paths and data crashed inside torch (``isfinite(): argument 'input' ... must be Tensor``, no argument
    named), and the ``(B, T, C, H, W)`` paths `interpolate` returns on an image model were refused (tester F)."""
    g = torch.Generator().manual_seed(0)
    data = torch.rand(20, 1, 2, 3, generator=g, dtype=F64)
    path = torch.stack([data[:2] + (data[2:4] - data[:2]) * s for s in torch.linspace(0, 1, 5, dtype=F64)], 1)
    flat = path_quality(path.flatten(2), data=data.flatten(1), target=data[2:4].flatten(1))
    for args in [(path, data, data[2:4]), (path.numpy(), data.numpy(), data[2:4].numpy())]:
        q = path_quality(args[0], data=args[1], target=args[2])
        for name in ("max_distance", "mean_distance", "length", "endpoint_gap"):
            torch.testing.assert_close(getattr(q, name), getattr(flat, name))
    one = path_quality(path[1], data=data)  # one image path (T, *data_shape): a batch of one
    torch.testing.assert_close(one.length, flat.length[1:])
    torch.testing.assert_close(nearest_distance(data[:3].numpy(), data.numpy()), torch.zeros(3, dtype=F64))
    torch.testing.assert_close(nearest_distance(path[0], data), nearest_distance(path[0].flatten(1), data.flatten(1)))
    with pytest.raises(TypeError, match="^data must be a tensor or an array-like of numbers, got str"):
        path_quality(path, data="points")
    with pytest.raises(TypeError, match="^x must be a tensor or an array-like of numbers, got object"):
        nearest_distance(object(), data)
