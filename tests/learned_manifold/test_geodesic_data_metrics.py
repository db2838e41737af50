"""Geodesics of data-driven metrics on a densely sampled S² (learned or k-NN, mean-centred), the landing's
rounding floor, lengths in the field's own metric, and uncentred fields."""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor, nn

from learned_manifold.evaluation import path_quality
from learned_manifold.geodesics import geodesic, path_energy
from learned_manifold.geometry import lowrank_apply, lowrank_solve
from learned_manifold.metrics import KNNCDC, LearnedCDC
from learned_manifold.metrics.base import CoMetricField
from learned_manifold.regularised import UncentredFieldWarning
from tests.learned_manifold.test_geodesics import SphereProjector, sphere_pairs

F64 = torch.float64


# --- geodesics of data-driven metrics on a densely sampled S² (issue: learned or k-NN, mean-centred) -------------


def _sphere_pairs():
    a = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    b = torch.tensor([[-0.5, math.sqrt(3) / 2, 0.0], [0.0, 0.0, 1.0]])
    return a, b


def _check_on_sphere(result, a, b, sphere, *, length_tol, distance_tol):
    q = path_quality(result.path, manifold=sphere, target=b)
    assert ((q.length_ratio - 1).abs() < length_tol).all(), q.length_ratio
    assert (q.max_distance < distance_tol).all(), q.max_distance
    assert result.converged.all()


def test_knn_cdc_geodesic_follows_the_great_circle(sphere):
    data = sphere.sample(20000, generator=torch.Generator().manual_seed(0))
    a, b = _sphere_pairs()
    result = geodesic(KNNCDC(data, k=64, sigma=0.05, delta=1e-2), a, b, n_points=16)
    _check_on_sphere(result, a, b, sphere, length_tol=0.02, distance_tol=0.02)


def test_learned_cdc_geodesic_follows_the_great_circle(sphere_model, sphere):
    """The small test model leaks some normal variance (a third eigenvalue of 0.05–0.1), which lets geodesics cut
    slightly inside; at σ = 0.12 the geodesic is within 3% of the great-circle length."""
    a, b = _sphere_pairs()
    result = geodesic(LearnedCDC(sphere_model, 0.12, delta=1e-2), a, b, n_points=16)
    _check_on_sphere(result, a, b, sphere, length_tol=0.03, distance_tol=0.05)


def test_lengths_are_in_the_fields_own_metric_and_the_solvers_delta_is_reported():
    """A low-rank field with δ = 0 is solved with δ = 10⁻³ λ₁ added (`regularising_delta`), but its energy and
    length are the field's own, as the flows' metric lengths are (they differed by up to 5× on digits)."""
    from tests.conftest import FixedSubspaceField

    field = FixedSubspaceField(torch.eye(3, dtype=torch.float64)[:, :2].contiguous())
    x0 = torch.tensor([[1.0, 0.0, 0.0]], dtype=torch.float64)
    x1 = torch.tensor([[0.0, 1.0, 0.0]], dtype=torch.float64)
    res = geodesic(field, x0, x1, n_points=8)
    torch.testing.assert_close(res.delta, torch.tensor([1e-3], dtype=torch.float64))  # λ₁ = 1, one per pair
    energy, length = path_energy(field, res.path)
    torch.testing.assert_close(res.length, length, rtol=1e-12, atol=0)
    torch.testing.assert_close(res.energy, energy, rtol=1e-12, atol=0)
    torch.testing.assert_close(res.length, torch.tensor([2**0.5], dtype=torch.float64), rtol=1e-9, atol=0)


def test_pairs_closer_than_the_landings_rounding_get_the_chord(sphere_model, sphere):
    """The landed interior of a pair 1e-6 apart is the float32 network's rounding (4.9 times the distance)."""
    from learned_manifold import LearnedDataManifold

    x0 = sphere.sample(1, generator=torch.Generator().manual_seed(5)).double()
    tangent = torch.linalg.cross(x0, torch.tensor([[0.0, 0.0, 1.0]], dtype=torch.float64))
    for gap in (1e-6, 1e-5):
        x1 = x0 + gap * tangent / tangent.norm()
        res = geodesic(LearnedDataManifold(sphere_model), x0, x1, n_points=16)
        assert res.converged.item()
        assert res.euclidean_length.item() == pytest.approx(gap, rel=1e-6)


class _SmallSphere(CoMetricField):
    """``G = I − nnᵀ`` (+ δ) about a centre ``c``; exact float64 landing onto the sphere of radius ``rho`` there."""

    low_rank = True

    def __init__(self, c: Tensor, rho: float, delta: float = 1e-3):
        super().__init__()
        self.c, self.rho, self.delta, self.dim = c, rho, delta, c.shape[0]

    def factor(self, x):
        n = nn.functional.normalize(x - self.c, dim=-1)
        return torch.eye(self.dim, dtype=x.dtype) - n.unsqueeze(-1) * n.unsqueeze(-2)

    def apply(self, x, w):
        return lowrank_apply(self.factor(x), w, self.delta)

    def metric(self, x, v):
        return lowrank_solve(self.factor(x), v, self.delta)

    def project(self, x):
        return self.c + self.rho * nn.functional.normalize(x - self.c, dim=-1)

    @property
    def can_project(self):
        return True


@pytest.mark.parametrize("offset", [0.0, 1000.0])
def test_the_landing_rounding_floor_is_the_fields_own_not_float32s(offset):
    """A float64 field far from the origin: a pair 0.018 apart is far above its rounding; the floor of
    1e3·eps(float32)·‖x‖ = 0.12 had returned the chord through the sphere, "converged"."""
    rho, c = 0.01, torch.tensor([offset, 0.0, 0.0], dtype=torch.float64)
    x0 = (c + rho * torch.tensor([0.0, 1.0, 0.0], dtype=torch.float64)).unsqueeze(0)
    x1 = (c + rho * torch.tensor([0.0, -0.6, 0.8], dtype=torch.float64)).unsqueeze(0)
    res = geodesic(_SmallSphere(c, rho), x0, x1, n_points=16, landing=True, init="linear")
    assert res.converged.item()
    assert res.euclidean_length.item() == pytest.approx(rho * math.acos(-0.6), rel=0.01)  # the arc, not the chord
    assert ((res.path - c).norm(dim=-1) - rho).abs().max() < 1e-9


def test_delta_is_added_to_a_low_rank_fields_own_and_refused_without_a_factor():
    from learned_manifold.metrics import SteinScoreMetric

    c = torch.zeros(3, dtype=torch.float64)
    x0 = torch.tensor([[0.0, 1.0, 0.0]], dtype=torch.float64)
    x1 = torch.tensor([[0.0, -0.6, 0.8]], dtype=torch.float64)
    res = geodesic(_SmallSphere(c, 1.0, delta=0.5), x0, x1, n_points=8, delta=0.25, steps=1)
    assert res.delta == 0.25
    with pytest.raises(ValueError, match="delta regularises low-rank fields"):
        geodesic(SteinScoreMetric(lambda y, s: y, 0.1), x0, x1, n_points=8, delta=0.1)


class UncentredSphereProjector(SphereProjector):
    """`SphereProjector` marked uncentred (as `KNNCDC(centred=False)` or a model trained ``--uncentred``)."""

    centred = False


def test_an_uncentred_field_gives_one_warning_and_its_geodesic():
    """SPEC §2: paths need a mean-centred field; an uncentred one is used (geometries are compared) with one
    `UncentredFieldWarning` per call that names it and points at the caller."""
    x0, x1 = sphere_pairs([1.0])
    with pytest.warns(UncentredFieldWarning) as record:
        res = geodesic(UncentredSphereProjector(), x0, x1, n_points=8)
    assert len(record) == 1 and record[0].filename == __file__
    assert str(record[0].message).startswith("geodesic: the field UncentredSphereProjector is not mean-centred")
    torch.testing.assert_close(res.path, geodesic(SphereProjector(), x0, x1, n_points=8).path)
