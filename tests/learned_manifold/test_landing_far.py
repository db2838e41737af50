"""Landing from far off the data with the default recipe: a model that picks a small σ (its denoiser barely moves
a point inside a sphere at that σ) still lands such points, and a point it cannot bring to the data is an error,
never a silent result. Before, `projx` returned points at radius 0.15–0.22 for starts at radius 0.43 inside S²."""

import math

import pytest
import torch

from learned_manifold import LearnedDataManifold, geodesic
from learned_manifold.metrics import KNNCDC, LearnedCDC
from learned_manifold_training.data import Sphere
from learned_manifold_training.trainer import TrainConfig, train


@pytest.fixture(scope="module")
def default_recipe_sphere():
    """S² in R³, 4,000 points, 1,000 steps of the default recipe with a small network (about 20 s on a CPU); its
    landmarks (every training point here) stay in the model."""
    data = Sphere(2, 3).sample(4000, generator=torch.Generator().manual_seed(0))
    cfg = TrainConfig(steps=1000, batch_size=256, rank=3, hidden=64, depth=2, emb_dim=64, sigma_min=0.01,
                      sigma_max=2.0, val_points=400, precision="fp32")
    return train(data, cfg, manifold=Sphere(2, 3), progress=False, device="cpu").model


def directions(n: int, seed: int) -> torch.Tensor:
    return torch.nn.functional.normalize(torch.randn(n, 3, generator=torch.Generator().manual_seed(seed)), dim=-1)


def test_points_inside_the_sphere_land_on_it(default_recipe_sphere):
    M = LearnedDataManifold(default_recipe_sphere, landing=True)
    assert M.field.sigma < 0.1  # the small σ at which one denoiser step hardly moves these points
    x = 0.43 * directions(50, 4)
    assert float((M.field.project(x) - x).norm(dim=-1).max()) < 0.5 * 0.57  # far less than their distance 0.57
    landed = M.projx(x)
    assert float((landed.norm(dim=-1) - 1).abs().max()) < 2 * M.field.sigma**2 + 0.03


def test_a_point_landing_cannot_bring_to_the_data_is_an_error(default_recipe_sphere):
    """Near the centre of the sphere every direction is as near: the descent does not reach the sphere, and
    landing says so rather than returning a point 0.8 away from it."""
    M = LearnedDataManifold(default_recipe_sphere, landing=True)
    with pytest.raises(ValueError, match="did not land on the data: after landing they are up to"):
        M.projx(0.1 * directions(20, 5))


def test_landing_at_a_large_bandwidth_is_idempotent_or_refused_at_once(default_recipe_sphere):
    """At σ = 0.3 the denoiser's fixed points lie ~dσ²/(2R) inside the sphere, more than the landmarks' few
    spacings but within σ: landing accepts its own output (``projx(projx(x)) = projx(x)``; it had been judged "far
    from the data" and refused, so an optimiser failed at its second step). At σ = 0.5 the fixed points collapse
    towards the centre (0.8 off the sphere): refused on the first call, not returned and refused on the second."""
    M = LearnedDataManifold(LearnedCDC(default_recipe_sphere, sigma=0.3), landing=True)
    landed = M.projx(directions(20, 6))
    assert float((1 - landed.norm(dim=-1)).abs().max()) < 2 * 0.3**2  # inside, by about σ²
    torch.testing.assert_close(M.projx(landed), landed, rtol=0, atol=1e-5)
    assert M.check_point_on_manifold(landed)
    M = LearnedDataManifold(LearnedCDC(default_recipe_sphere, sigma=0.5), landing=True)
    with pytest.raises(ValueError, match=r"did not land on the data: .* than 0.5 \(the larger of sigma = 0.5 and "
                                         r"[0-9.]+, [0-9.]+ times the "):
        M.projx(directions(20, 6))


def test_without_data_in_the_field_landing_does_not_check_against_it(default_recipe_sphere):
    field = LearnedCDC(default_recipe_sphere)
    field.data_graph = None  # e.g. a model trained with --landmarks 0
    assert field.beyond_data(torch.zeros(2, 3)) is None


@pytest.mark.parametrize("shift", [1e3, 5e3])
def test_data_far_from_the_origin_land_in_float64_as_in_float32(shift):
    """Float64 points on a float32 field far from the origin: the field's answers carry float32 rounding, so the
    landing's tolerance is float32's (`rounding_eps`), not float64's (27–37 of 64 points were refused)."""
    g = torch.Generator().manual_seed(0)
    u = torch.nn.functional.normalize(torch.randn(4000, 3, generator=g), dim=-1)
    M = LearnedDataManifold(KNNCDC(u + shift, k=64, sigma=0.1), landing=True)
    x = torch.nn.functional.normalize(torch.randn(64, 3, generator=g), dim=-1) * 1.05 + shift
    single, double = M.projx(x), M.projx(x.double())
    assert float(((double - shift).norm(dim=-1) - 1).abs().max()) < 0.02
    torch.testing.assert_close(double.float(), single, rtol=0, atol=1e-3)


def test_a_geodesic_far_from_the_origin_is_the_arc_not_the_chord():
    """A unit sphere at 5,000 in float32: the landing's rounding is judged by the data's own scale
    (`landing_rounding`), so a pair 1 rad apart gets its geodesic (length ≈ 1), not the straight chord (0.959)
    that pairs closer than 1,000 ulps of ‖x‖ (1.03 here) had got."""
    g = torch.Generator().manual_seed(0)
    u = torch.nn.functional.normalize(torch.randn(4000, 3, generator=g), dim=-1)
    a, b = torch.tensor([[1.0, 0.0, 0.0]]), torch.tensor([[math.cos(1.0), math.sin(1.0), 0.0]])
    lengths = []
    for shift in (0.0, 5e3):
        res = geodesic(KNNCDC(u + shift, k=64, sigma=0.1), a + shift, b + shift, landing=True)
        mid = res.path[0, res.path.shape[1] // 2] - shift
        assert bool(res.converged[0]) and abs(float(mid.norm()) - 1) < 0.01  # on the sphere, not inside it
        lengths.append(float(res.euclidean_length[0]))
    assert lengths[1] == pytest.approx(lengths[0], abs=0.01) and lengths[1] > 0.99
