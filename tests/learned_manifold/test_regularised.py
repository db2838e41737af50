"""The metric paths are reported in (`regularised.reporting_metric`, SPEC §5, §6): a `LearnedDataManifold`'s
``tangent_dim`` fixes the dimension of the learned tangent bundle the lengths are measured on."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor

from learned_manifold import LearnedDataManifold, geodesic, interpolate
from learned_manifold.flows import polyline_lengths
from learned_manifold.geometry import lowrank_apply, lowrank_solve
from learned_manifold.metrics.base import CoMetricField
from learned_manifold.regularised import Regularised, TangentBundle, reporting_metric, tangent_dim_of

F64 = torch.float64


class Plane(CoMetricField):
    """A constant factor in R³ with eigenvalues 1 (e₁), 0.2 (e₂) and 10⁻⁴ (e₃), ``δ = 0``: the gap rule reads
    d = 1, a user who knows the data are 2-D sets ``tangent_dim=2`` (tester F's case)."""

    low_rank = True
    dim = 3

    def factor(self, x: Tensor) -> Tensor:
        a = torch.diag(torch.tensor([1.0, 0.2**0.5, 0.01], dtype=x.dtype))
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
