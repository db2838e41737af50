"""Landing from far off the data with the default recipe: a model that picks a small σ (its denoiser barely moves
a point inside a sphere at that σ) still lands such points, and a point it cannot bring to the data is an error,
never a silent result. Before, `projx` returned points at radius 0.15–0.22 for starts at radius 0.43 inside S²."""

import pytest
import torch

from learned_manifold import LearnedDataManifold
from learned_manifold.metrics import LearnedCDC
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
    with pytest.raises(ValueError, match="did not reach it"):
        M.projx(0.1 * directions(20, 5))


def test_without_data_in_the_field_landing_does_not_check_against_it(default_recipe_sphere):
    field = LearnedCDC(default_recipe_sphere)
    field.data_graph = None  # e.g. a model trained with --landmarks 0
    assert field.beyond_data(torch.zeros(2, 3)) is None
