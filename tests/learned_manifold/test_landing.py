"""Landing on data that fill ``R^D`` (intrinsic dimension ``D``, no normal space): points on the data are returned
unchanged. Before, such a point was sent on a descent from ``σ_max`` (meant for the centre of a sphere) and the
descended point was accepted: trained models pulled N(0, I) data 4–8 times towards their mean."""

import math
import re
import warnings

import pytest
import torch
from torch import Tensor

from learned_manifold import LearnedDataManifold
from learned_manifold.geometry import eigenpairs
from learned_manifold.landing import off_data_threshold, warn_off_data
from learned_manifold.metrics import KNNCDC
from learned_manifold.metrics.base import CoMetricField

SIGMA, SIGMA_MAX = 0.1, 3.0


class Blob(CoMetricField):
    """Data N(0, I) in R²: the exact denoiser ``x̂(x, σ) = x / (1 + σ²)`` (a shrink towards the mean) and a full-rank
    factor ``A = diag(sqrt(1 + 0.1 x₀²), sqrt(0.9))`` (``(B, 2, 2)``): the gap rule reads dimension 2 everywhere."""

    dim, low_rank = 2, True

    def factor(self, x: Tensor, *, sigma: float | Tensor | None = None) -> Tensor:
        diag = torch.stack([(1 + 0.1 * x[:, 0] ** 2).sqrt(), torch.full_like(x[:, 0], 0.9**0.5)], -1)
        return torch.diag_embed(diag)

    def project(self, x: Tensor, *, sigma: float | Tensor | None = None) -> Tensor:
        s = torch.as_tensor(SIGMA if sigma is None else sigma, dtype=x.dtype)
        return x / (1 + s**2).reshape(-1, 1) if s.ndim else x / (1 + s**2)

    def landing_bandwidths(self) -> tuple[float, float]:
        return SIGMA, SIGMA_MAX

    @property
    def can_project(self) -> bool:
        return True


def test_points_of_data_filling_the_space_are_returned_unchanged():
    """The descent from σ_max would shrink |x| by about sqrt((1 + σ²)/(1 + σ_max²)) = 0.32; the points see no normal
    space at σ afterwards, so they have nothing to land along and come back unchanged, with the manifold's cache
    holding the factor and eigenpairs at the returned points."""
    x = torch.tensor([[2.0, -1.0], [0.5, 1.5], [-1.2, 0.3]], dtype=torch.float64)
    field = Blob()
    M = LearnedDataManifold(field, landing=True)
    assert bool((M.intrinsic_dimension(x) == 2).all())
    landed = M.projx(x)
    torch.testing.assert_close(landed, x, rtol=0, atol=0)
    cache = M._cache
    torch.testing.assert_close(cache["point"], x, rtol=0, atol=0)
    torch.testing.assert_close(cache["A"], field.factor(x))
    torch.testing.assert_close(cache["pairs"].values, eigenpairs(field.factor(x)).values)
    torch.testing.assert_close(M.projx(landed), x, rtol=0, atol=0)  # idempotent


def test_without_bandwidths_points_of_data_filling_the_space_are_returned_unchanged():
    """A k-NN field has no bandwidths to descend: its full denoiser steps (local means) moved such points until
    the gap rule happened to read a normal space, or ran out of steps (3 of these 5 were refused)."""
    data = torch.randn(2000, 2, generator=torch.Generator().manual_seed(0))
    M = LearnedDataManifold(KNNCDC(data, k=32, sigma=0.3), landing=True)
    x = data[:5]
    assert bool((M.intrinsic_dimension(x) == 2).all())
    torch.testing.assert_close(M.projx(x), x, rtol=0, atol=0)



class BlobWithLandmarks(Blob):
    """`Blob` with landmarks on a grid of spacing 0.5: `beyond_data` is the distance to the nearest one where it
    exceeds ``FAR`` (a model's landmarks give such readings between them, in the tails of the data)."""

    SPACING, FAR = 0.5, 0.05

    def beyond_data(self, x: Tensor) -> Tensor:
        g = torch.arange(-3, 3.01, self.SPACING, dtype=x.dtype)
        nearest = torch.cdist(x, torch.cartesian_prod(g, g)).min(-1).values
        return torch.where(nearest > self.FAR, nearest, torch.zeros_like(nearest))


def test_points_within_sigma_of_the_landmarks_with_no_normal_space_are_accepted_at_once():
    """A given point 0.08 from the nearest landmark (beyond σ/2 = 0.05, within σ = 0.1) and barely moved by the
    denoiser was taken for far: one full denoiser step, then the descent from σ_max that shrinks it (the verifier's
    12 of 500 tail points of N(0, 1) data in R¹). Within σ of the landmarks it is returned unchanged."""
    field = BlobWithLandmarks()
    M = LearnedDataManifold(field, landing=True)
    x = torch.tensor([[1.08, 0.0], [-2.0, 0.58], [1.0, 1.0]], dtype=torch.float64)
    beyond = field.beyond_data(x)
    assert bool(((beyond[:2] > 0.5 * SIGMA) & (beyond[:2] <= SIGMA)).all()) and float(beyond[2]) == 0
    torch.testing.assert_close(M.projx(x), x, rtol=0, atol=0)


class ExactSphere(CoMetricField):
    """Data uniform on the unit sphere S² in R³, no landmarks: the exact posterior mean ``x̂ = L(κ) n`` (``κ = |x|/σ²``,
    ``L = coth − 1/κ``, von Mises–Fisher) and the exact ``∂x̂/∂x`` as the factor (an outside tester's field)."""

    dim, low_rank = 3, True

    @staticmethod
    def _bands(x: Tensor, sigma: float | Tensor | None) -> Tensor:
        s = torch.as_tensor(SIGMA if sigma is None else sigma, dtype=x.dtype)
        return s.reshape(-1, 1) if s.ndim else s

    @staticmethod
    def _langevin(k: Tensor) -> tuple[Tensor, Tensor]:
        """``L(κ)`` and ``L'(κ)`` (series below 1e-3, ``1/κ²`` above 300)."""
        small, ks = k < 1e-3, k.clamp_min(1e-3)
        value = torch.where(small, k / 3 - k**3 / 45, 1 / torch.tanh(ks) - 1 / ks)
        slope = torch.where(ks > 300, ks**-2, ks**-2 - torch.sinh(ks.clamp_max(300)) ** -2)
        return value, torch.where(small, 1 / 3 - k**2 / 15, slope)

    def project(self, x: Tensor, *, sigma: float | Tensor | None = None) -> Tensor:
        s, r = self._bands(x, sigma), x.norm(dim=-1, keepdim=True)
        return self._langevin(r / s**2)[0] * x / r

    def factor(self, x: Tensor, *, sigma: float | Tensor | None = None) -> Tensor:
        s, r = self._bands(x, sigma), x.norm(dim=-1, keepdim=True)
        value, slope = self._langevin(r / s**2)
        nn = (x / r).unsqueeze(-1) * (x / r).unsqueeze(-2)
        eye = torch.eye(3, dtype=x.dtype)
        return (value / r).sqrt().unsqueeze(-1) * (eye - nn) + (slope / s**2).sqrt().unsqueeze(-1) * nn

    def landing_bandwidths(self) -> tuple[float, float]:
        return SIGMA, SIGMA_MAX

    @property
    def can_project(self) -> bool:
        return True


def test_a_point_near_a_spheres_centre_lands_on_the_sphere():
    """A point 0.001 from the centre sees no normal space; its descent from σ_max in halving σ steps under-integrated
    the (unstable) flow, ended at radius 0.002 still without one, and the point was returned unchanged and accepted.
    In σ steps of ratio 0.9 it reaches radius 0.2 and lands on the sphere (landing's fixed points: radius 0.9899)."""
    n = torch.nn.functional.normalize(torch.tensor([[0.3, -0.5, 0.8], [-0.6, 0.2, 0.1]], dtype=torch.float64), dim=-1)
    for radius in (1e-2, 1e-3, 1e-4):
        M = LearnedDataManifold(ExactSphere(), landing=True)
        landed = M.projx(radius * n)
        torch.testing.assert_close(landed.norm(dim=-1), torch.full((2,), 0.9899, dtype=torch.float64), atol=1e-4,
                                   rtol=0)
        assert M.check_point_on_manifold(landed)


def test_normal_landing_keeps_only_the_normal_part_of_the_denoiser_step():
    """One step ``x + (I − P)(x̂ − x + offset)`` on the plane z = 0 whose denoiser also slides points along it by
    (0.1, 0, 0): the slide is dropped, the normal part kept; an offset ``y − x̂(y)`` keeps ``y`` fixed; a NaN row
    passes through unchanged."""
    from learned_manifold.landing import normal_landing
    from tests.conftest import FixedSubspaceField

    class Sliding(FixedSubspaceField):
        can_project = True

        def project(self, x):
            return x * x.new_tensor([1.0, 1.0, 0.0]) + x.new_tensor([0.1, 0.0, 0.0])

    field = Sliding(torch.eye(3, dtype=torch.float64)[:, :2].contiguous())
    x = torch.tensor([[1.0, 2.0, 0.5], [0.0, 0.0, 0.0], [float("nan"), 0.0, 0.0]], dtype=torch.float64)
    out = normal_landing(field, x)
    torch.testing.assert_close(out[:2], torch.tensor([[1.0, 2.0, 0.0], [0.0, 0.0, 0.0]], dtype=torch.float64),
                               rtol=0, atol=0)
    assert out[2, 0].isnan() and torch.equal(out[2, 1:], x[2, 1:])
    y = x[:1]
    torch.testing.assert_close(normal_landing(field, y, y - field.project(y)), y, rtol=0, atol=0)


def _offset_plane_field(offset: float, sigma: float):
    """A float32 field whose data are the plane ``x₂ = offset`` through ``(offset, offset, offset)``: a tiny
    `MetricModel` holds that centre as its ``mean`` (what a trained model standardises about), the denoiser is the
    exact projection onto the plane computed about the centre, and the factor spans the plane, ``(B, 3, 2)``."""
    from learned_manifold import MetricModel, ModelConfig
    from learned_manifold.metrics import LearnedCDC

    class OffsetPlane(LearnedCDC):
        def project(self, x: Tensor, *, sigma: float | Tensor | None = None) -> Tensor:
            mean = self.model.mean.to(x.dtype)
            return (x - mean) * x.new_tensor([1.0, 1.0, 0.0]) + mean

        def factor(self, x: Tensor, *, sigma: float | Tensor | None = None) -> Tensor:
            return torch.eye(3, 2, dtype=x.dtype).expand(x.shape[0], 3, 2)

        def landing_bandwidths(self) -> None:
            return None

    config = ModelConfig(data_shape=(3,), rank=2, sigma_min=sigma / 2, sigma_max=1.0,
                         arch_kwargs={"hidden": 8, "depth": 1, "emb_dim": 8})
    return OffsetPlane(MetricModel(config, mean=torch.full((3,), offset)), sigma=sigma)


def test_points_off_data_far_from_the_origin_land_in_float32():
    """Data 1,000 from the origin in float32, σ = 0.015: a point σ/3 off the data lands to within the rounding of its
    own coordinates. The rounding floor had been ``64 ε |x|_∞`` = 7.6e-3 (σ/2), so such points counted as landed
    before their first step and came back unchanged; it is now ``64 ε |x − μ|_∞ + 2 √D ε |x|_∞`` (4.1e-4 here)."""
    from learned_manifold.landing import residual_rounding

    offset, sigma = 1000.0, 0.015
    field = _offset_plane_field(offset, sigma)
    M = LearnedDataManifold(field, landing=True)
    x = torch.tensor([[1000.3, 999.6, 1000.0], [999.2, 1000.7, 1000.0]]) + torch.tensor([0.0, 0.0, sigma / 3])
    floor = residual_rounding(field, x, torch.finfo(torch.float32).eps)
    assert bool((floor < 0.05 * sigma).all())
    landed = M.projx(x)
    assert float((landed[:, 2] - offset).abs().max()) <= M.landing_tol * sigma + float(floor.max())
    torch.testing.assert_close(landed[:, :2], x[:, :2], rtol=0, atol=0)  # normal-only: nothing moves along
    assert not M.check_point_on_manifold(x, atol=1e-4, rtol=0)


def test_the_point_check_judges_far_data_at_their_spread_not_their_offset():
    """``check_point_on_manifold``'s default ``rtol = 1e-5`` had scaled with ``|x|_∞``: 1e-2 at 1,000 from the
    origin, so a point σ/3 = 5e-3 off the plane passed. It now scales with ``|x − μ|_∞`` (μ the model's mean)."""
    offset, sigma = 1000.0, 0.015
    M = LearnedDataManifold(_offset_plane_field(offset, sigma), landing=True)
    on = torch.tensor([[1000.3, 999.6, 1000.0]])
    off = on + torch.tensor([0.0, 0.0, sigma / 3])
    assert M.check_point_on_manifold(on)
    ok, reason = M.check_point_on_manifold(off, explain=True)
    assert not ok and "not a fixed point of the landing projection" in reason


def test_data_too_far_for_float32_to_resolve_sigma_warn_once():
    """At 5,000 from the origin float32 coordinates are 4.9e-4 apart (8.5e-4 over three): above σ/10 for σ = 0.005,
    so landing says once per manifold that it cannot resolve σ there, naming float64 as the fix; at σ = 0.015 it
    resolves σ/18 and says nothing (warnings are errors in this suite)."""
    x = torch.tensor([[5000.3, 4999.6, 5000.002]])
    M = LearnedDataManifold(_offset_plane_field(5000.0, 0.005), landing=True)
    with pytest.warns(UserWarning, match=r"points lie up to 5e\+03 from the origin, where float32 coordinates are "
                      r"0.00049 apart \(0.00085 over D = 3\), more than 0.1 sigma \(sigma = 0.005\).*float64") as got:
        M.projx(x)
    assert got[0].filename == __file__
    M.projx(x)  # once per manifold
    LearnedDataManifold(_offset_plane_field(5000.0, 0.015), landing=True).projx(x)


def test_landing_caches_the_kept_counts_with_its_eigenpairs():
    """Landing stored its eigenpairs without `Eigenpairs.kept`, so the first ``proju`` at the landed points
    scanned the vectors for the dimension check; the counts now travel with them."""
    from learned_manifold.geometry import eigenpairs

    field = _offset_plane_field(0.0, 0.05)
    M = LearnedDataManifold(field, landing=True, tangent_dim=2)
    landed = M.projx(torch.tensor([[0.3, -0.6, 0.01], [0.2, 0.7, -0.02]]))
    pairs = M._cache["pairs"]
    assert pairs.kept is not None
    assert torch.equal(pairs.kept, eigenpairs(field.factor(landed)).kept)


def test_off_data_messages_state_the_threshold_actually_used():
    """`KNNCDC.beyond_data` counts a point off the data only beyond 4 spacings of its data points (8 points on a
    unit circle: 4 · 0.765 = 3.06), however small σ; the message said "farther than sigma = 0.1" (tester E: the
    digits' 66 pixels read as σ = 17.3). A point 2 off (past σ, within the threshold) is silent; one 5 off names
    the threshold, σ and the spacing."""
    t = torch.arange(8, dtype=torch.float64) * 2 * math.pi / 8
    field = KNNCDC(torch.stack([t.cos(), t.sin(), 0 * t], -1), k=4, sigma=0.1)
    assert off_data_threshold(field) == pytest.approx(4 * 2 * math.sin(math.pi / 8))
    assert off_data_threshold(Blob()) is None  # no data held
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        warn_off_data(field, torch.tensor([[1.0, 0.0, 2.0]], dtype=torch.float64), "caller")
    msg = ("caller: points beyond the data: landed end points (1 of 2), up to 5 from the nearest data point the field "
           "holds (its data or a model's landmarks), farther than 3.06 (the larger of sigma = 0.1 and 3.06, 4 times "
           "the 0.765 typical spacing of those points, beyond which a point is off them)")
    with pytest.warns(UserWarning, match=re.escape(msg)):
        warn_off_data(field, torch.tensor([[1.0, 0.0, 2.0], [1.0, 0.0, 5.0]], dtype=torch.float64), "caller")
