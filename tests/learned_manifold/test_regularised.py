"""The metric paths are reported in (`regularised.reporting_metric`, SPEC §5, §6): a `LearnedDataManifold`'s
``tangent_dim`` fixes the dimension of the learned tangent bundle the lengths are measured on."""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor

from learned_manifold import LearnedDataManifold, geodesic, interpolate
from learned_manifold.flows import polyline_lengths
from learned_manifold.geometry import lowrank_apply, lowrank_solve
from learned_manifold.metrics.base import CoMetricField
from learned_manifold.metrics.learned import LearnedCDC
from learned_manifold.models import MetricModel, ModelConfig
from learned_manifold.regularised import Regularised, TangentBundle, reporting_metric, tangent_dim_of

F64 = torch.float64


class Plane(CoMetricField):
    """A constant factor in R³ with eigenvalues 1 (e₁), ``second`` (e₂; default 0.2) and 10⁻⁴ (e₃), ``δ = 0``: the
    gap rule reads d = 1 (for ``second < 1/2``), a user who knows the data are 2-D sets ``tangent_dim=2`` (tester
    F's case)."""

    low_rank = True
    dim = 3

    def __init__(self, second: float = 0.2) -> None:
        super().__init__()
        self.second = second

    def factor(self, x: Tensor) -> Tensor:
        a = torch.diag(torch.tensor([1.0, self.second**0.5, 0.01], dtype=x.dtype))
        return a.expand(x.shape[0], 3, 3).clone()


def test_the_gap_rule_reads_one_dimension_on_the_plane_field():
    M = LearnedDataManifold(Plane())
    assert M.intrinsic_dimension(torch.zeros(1, 3, dtype=F64)).tolist() == [1]


def test_tangent_bundle_uses_the_given_dimension():
    """``G_d^+ e₂`` is 0 with the gap rule (d = 1) and ``e₂ / 0.2`` with d = 2; ``G_d e₂`` likewise 0 and 0.2 e₂."""
    x, e2 = torch.zeros(1, 3, dtype=F64), torch.tensor([[0.0, 1.0, 0.0]], dtype=F64)
    torch.testing.assert_close(TangentBundle(Plane()).metric(x, e2), torch.zeros(1, 3, dtype=F64))
    torch.testing.assert_close(TangentBundle(Plane(), 2).metric(x, e2), e2 / 0.2)
    torch.testing.assert_close(TangentBundle(Plane(), 2).apply(x, e2), 0.2 * e2)
    assert reporting_metric(Plane(), 2).tangent_dim == 2
    assert tangent_dim_of(LearnedDataManifold(Plane(), tangent_dim=2)) == 2 and tangent_dim_of(Plane()) is None


def test_geodesic_and_flow_lengths_use_the_manifolds_tangent_dim():
    """From 0 to e₂ on `Plane` with ``tangent_dim=2``: the straight path has ``M.inner`` length 1/√0.2 and energy
    (1/0.2)/(T − 1); they were reported as 0 (the gap rule's d = 1 sees no e₂)."""
    M = LearnedDataManifold(Plane(), tangent_dim=2)
    x0, x1 = torch.zeros(1, 3, dtype=F64), torch.tensor([[0.0, 1.0, 0.0]], dtype=F64)
    res = geodesic(M, x0, x1, n_points=9)
    torch.testing.assert_close(res.length, torch.tensor([0.2**-0.5], dtype=F64), rtol=1e-6, atol=0)
    torch.testing.assert_close(res.energy, torch.tensor([5.0 / 8], dtype=F64), rtol=1e-6, atol=0)
    steps, mids = res.path[0, 1:] - res.path[0, :-1], 0.5 * (res.path[0, 1:] + res.path[0, :-1])
    torch.testing.assert_close(res.length[0], M.inner(mids, steps).sqrt().sum())
    flow = interpolate(M, x0, x1, t_end=4.0, n_points=9)
    torch.testing.assert_close(flow.metric_length, flow.euclidean_length / 0.2**0.5, rtol=1e-6, atol=0)
    torch.testing.assert_close(polyline_lengths(res.path, M)[1], res.length)
    # a bare field (no tangent_dim) keeps the gap rule: e₂ costs nothing
    assert float(polyline_lengths(res.path, Plane())[1]) == pytest.approx(0.0, abs=1e-12)


def test_regularised_with_one_delta_per_pair_gives_each_pair_its_own():
    """One ``δ`` per pair (`regularising_delta`'s default): rows grouped pair by pair, as a path's segments are;
    each row is solved as with that pair's float ``δ`` (``δ = 0``: the pseudo-inverse), and `for_pairs` picks."""
    delta = torch.tensor([1e-3, 0.5, 0.0], dtype=F64)
    field = Regularised(Plane(), delta)
    g = torch.Generator().manual_seed(0)
    x, v = torch.randn(6, 3, generator=g, dtype=F64), torch.randn(6, 3, generator=g, dtype=F64)
    a = Plane().factor(x)
    rows = delta.repeat_interleave(2)
    want = torch.stack([lowrank_solve(a[i:i + 1], v[i:i + 1], float(rows[i]))[0] for i in range(6)])
    torch.testing.assert_close(field.metric(x, v), want, rtol=1e-10, atol=0)
    torch.testing.assert_close(field.apply(x, v), lowrank_apply(a, v) + rows.unsqueeze(-1) * v)
    torch.testing.assert_close(field.for_pairs(torch.tensor([1])).metric(x[2:4], v[2:4]), want[2:4])
    with pytest.raises(ValueError, match="a multiple of 3 rows; got 4"):
        field.metric(x[:4], v[:4])


def test_regularised_passes_on_the_wrapped_fields_scale_bandwidths_and_projection():
    """`Regularised` promises the field's own landing projection and bandwidths: a user's ``Regularised(field, δ)``
    given to `geodesic` or a `LearnedDataManifold` is asked for them (`check_landing`, `landing_rounding`, `land`);
    the base class's answers (None, None, False) would refuse to land it. No test entered them (tester B, s32)."""
    model = MetricModel(ModelConfig(data_shape=(3,), rank=2, arch_kwargs={"hidden": 8, "depth": 1, "emb_dim": 4}),
                        scale=2.5)
    field = LearnedCDC(model, sigma=0.1)
    wrapped = Regularised(field, 1e-2)
    assert wrapped.length_scale() == field.length_scale() == 2.5
    assert wrapped.landing_bandwidths() == field.landing_bandwidths() == (0.1, float(model.config.sigma_max))
    assert wrapped.can_project is field.can_project is True
    assert Regularised(Plane(), 1e-2).landing_bandwidths() is None and not Regularised(Plane(), 1e-2).can_project


def test_wrappers_pass_on_how_far_points_lie_beyond_the_data():
    """`Regularised` and `TangentBundle` answered `beyond_data` with the base class's ``None``: the off-data warnings
    of `geodesic` and the flows, and landing's far check, stayed silent for a wrapped field (reviewer R, s32)."""
    import warnings

    from learned_manifold.landing import off_data_threshold, warn_off_data
    from learned_manifold.metrics import KNNCDC

    t = torch.linspace(0, 2 * math.pi, 301, dtype=F64)[:-1]
    field = KNNCDC(torch.stack([t.cos(), t.sin(), 0 * t], -1), k=8, sigma=0.05)
    x = torch.tensor([[1.0, 0.0, 3.0], [1.0, 0.0, 0.0]], dtype=F64)
    for wrapped in (Regularised(field, 1e-2), TangentBundle(field, 1)):
        torch.testing.assert_close(wrapped.beyond_data(x), field.beyond_data(x))
        assert wrapped.beyond_data(x).tolist() == [3.0, 0.0]  # (1, 0, 0) is a data point
        assert off_data_threshold(wrapped) == off_data_threshold(field)
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            warn_off_data(wrapped, x, "caller")
        assert len(seen) == 1 and "beyond which a point is off them" in str(seen[0].message)


def test_tangent_bundle_factor_is_a_factor_of_the_restricted_metric_it_applies():
    """`TangentBundle.factor` returned the wrapped field's ``A`` (``AAᵀ`` = all of ``G``, eigenvalue 10⁻⁴ on e₃
    included), though its ``apply`` is ``G_d``; no caller asked for it (tester B, s32). ``F Fᵀ = G_d`` now."""
    x = torch.zeros(2, 3, dtype=F64)
    for d, diag in ((None, [1.0, 0.0, 0.0]), (2, [1.0, 0.2, 0.0])):
        bundle = TangentBundle(Plane(), d)
        f = bundle.factor(x)
        want = torch.diag(torch.tensor(diag, dtype=F64)).expand(2, 3, 3)
        torch.testing.assert_close(f @ f.transpose(-1, -2), want)
        torch.testing.assert_close(bundle.apply(x, torch.eye(3, dtype=F64)[:2]), want[0, :2])


def test_a_bare_field_can_be_given_its_tangent_dim_and_the_gap_rule_warns_where_it_drops_directions():
    """Tester D, C: on a field whose second direction is real (0.4 λ₁, above `dimension.DROPPED_LIMIT`) the gap
    rule's d = 1 reported the path from 0 to e₂ as length 0, converged, without a word. `geodesic` and
    `polyline_lengths` now warn that the gap rule drops that direction, the length-0 path between distinct points is
    unconverged, and ``tangent_dim`` can be given for a bare field: length 1/√0.4."""
    x0, x1 = torch.zeros(1, 3, dtype=F64), torch.tensor([[0.0, 1.0, 0.0]], dtype=F64)
    with pytest.warns(UserWarning) as caught:
        res = geodesic(Plane(0.4), x0, x1, n_points=9)
    messages = " | ".join(str(w.message) for w in caught)
    assert "geodesic: the reported lengths and energies keep the gap rule's directions" in messages
    assert "at 8 of 8 points (up to 0.4 λ₁)" in messages
    assert "1 of 1 converged path(s) between distinct points have metric length 0" in messages
    assert float(res.length[0]) == 0.0 and not bool(res.converged[0])
    with pytest.warns(UserWarning, match=r"the reported metric lengths .* keep the gap rule's directions"):
        assert float(polyline_lengths(res.path, Plane(0.4))[1]) == 0.0
    given = geodesic(Plane(0.4), x0, x1, n_points=9, tangent_dim=2)  # no warning (warnings are errors here)
    torch.testing.assert_close(given.length, torch.tensor([0.4**-0.5], dtype=F64), rtol=1e-6, atol=0)
    torch.testing.assert_close(polyline_lengths(given.path, Plane(0.4), tangent_dim=2)[1], given.length)
    assert bool(given.converged[0])
    M = LearnedDataManifold(Plane(0.4), tangent_dim=2)
    torch.testing.assert_close(geodesic(M, x0, x1, n_points=9, tangent_dim=2).length, given.length)
    with pytest.raises(ValueError, match="tangent_dim=1 conflicts with the manifold's own tangent_dim=2"):
        geodesic(M, x0, x1, n_points=9, tangent_dim=1)
    with pytest.raises(ValueError, match=r"tangent_dim must be >= 1 .* got 0"):
        geodesic(Plane(), x0, x1, tangent_dim=0)
    with pytest.raises(TypeError, match="tangent_dim must be an int or None, got float"):
        geodesic(Plane(), x0, x1, tangent_dim=2.0)


class OneColumn(CoMetricField):
    """A rank-1 factor ``e₁`` in R²."""

    low_rank = True
    dim = 2

    def factor(self, x: Tensor) -> Tensor:
        return torch.tensor([[1.0], [0.0]], dtype=x.dtype).expand(x.shape[0], 2, 1).clone()


def test_a_tangent_dim_above_the_factors_rank_is_named_not_read_as_nan():
    """Tester C: a manifold with ``tangent_dim=2`` on a rank-1 field gave ``metric_length`` NaN from
    `polyline_lengths` (every ``ValueError`` became NaN) and "d must lie in 1..r" from `geodesic`."""
    M = LearnedDataManifold(OneColumn(), tangent_dim=2)
    x0, x1 = torch.zeros(1, 2, dtype=F64), torch.ones(1, 2, dtype=F64)
    message = r"tangent_dim = 2 exceeds the rank r = 1 of the field's factor \(OneColumn\)"
    with pytest.raises(ValueError, match=message):
        polyline_lengths(torch.stack([x0, x1], 1), M)
    with pytest.raises(ValueError, match=message):
        polyline_lengths(torch.stack([x0, x1], 1), OneColumn(), tangent_dim=2)
    with pytest.raises(ValueError, match=message):
        geodesic(M, x0, x1, n_points=5)
    with pytest.raises(ValueError, match=message):
        geodesic(OneColumn(), x0, x1, n_points=5, tangent_dim=2)


def test_numpy_integer_tangent_dims_are_counts():
    """README and `types.Count`: NumPy integers are counts. ``tangent_dim=np.int64(2)`` was a TypeError ("must be an
    int") in geodesic and the flows, though the manifold and `curvature` took it; bools stay refused."""
    import numpy as np

    from learned_manifold.regularised import resolve_tangent_dim

    got = resolve_tangent_dim(Plane(), np.int64(2))
    assert got == 2 and type(got) is int
    x0, x1 = torch.zeros(1, 3, dtype=F64), torch.tensor([[1.0, 1.0, 0.0]], dtype=F64)
    torch.testing.assert_close(geodesic(Plane(0.4), x0, x1, n_points=9, tangent_dim=np.int64(2)).length,
                               geodesic(Plane(0.4), x0, x1, n_points=9, tangent_dim=2).length)
    for bad in (True, np.bool_(True), 2.0):
        with pytest.raises(TypeError, match="tangent_dim must be an int or None"):
            resolve_tangent_dim(Plane(), bad)


def test_a_tangent_dim_above_the_rank_is_refused_for_a_field_with_delta():
    """Tester D: with δ > 0, ``tangent_dim = 7`` on a rank-3 field in R³ was accepted and ignored (the rank was
    checked at δ = 0 only), though geodesic documents a ValueError for a tangent_dim outside 1..r. Here r = D = 3,
    so the bound D speaks first (tester E, s33: ``LearnedDataManifold``'s message)."""
    field = Plane(0.4)
    field.delta = 0.1
    x0, x1 = torch.zeros(1, 3, dtype=F64), torch.ones(1, 3, dtype=F64)
    message = r"tangent_dim must lie in 1\.\.3, got 7"
    with pytest.raises(ValueError, match=message):
        geodesic(field, x0, x1, n_points=5, tangent_dim=7)
    with pytest.raises(ValueError, match=message):
        interpolate(field, x0, x1, n_points=5, tangent_dim=7)
    geodesic(field, x0, x1, n_points=5, tangent_dim=3)  # within 1..r: accepted


def test_polyline_lengths_raises_its_shape_errors_and_gives_a_one_point_path_length_zero():
    """Tester D: every ValueError of `path_energy` read as "metric undefined": a one-point path had metric length
    NaN (its Euclidean length 0) and a (B, D) array instead of (B, T, D) returned NaN instead of raising."""
    one = torch.zeros(3, 1, 3, dtype=F64)
    euclid, metric = polyline_lengths(one, Plane(), tangent_dim=2)
    assert euclid.tolist() == [0.0] * 3 and metric.tolist() == [0.0] * 3
    with pytest.raises(ValueError, match=r"path must have shape \(B, T, D\) with T >= 1, got \(4, 3\)"):
        polyline_lengths(torch.zeros(4, 3, dtype=F64), Plane(), tangent_dim=2)


def test_delta_takes_any_real_number_and_refuses_a_non_number_with_a_value_error():
    """``np.float32`` (a numbers.Real) was "not a real number" to geodesic(delta=); a non-number stays ValueError."""
    import numpy as np

    from learned_manifold.regularised import check_delta

    value = check_delta(np.float32(0.25))
    assert value == 0.25 and type(value) is float
    for bad in ("0.1", True, float("nan"), -1.0):
        with pytest.raises(ValueError, match="delta must be a finite number >= 0"):
            check_delta(bad)
