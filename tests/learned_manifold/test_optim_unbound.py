"""`RiemannianSGD` / `RiemannianAdam` built with nothing bound to a manifold (no ``manifold=``, no
``geoopt.ManifoldParameter``) run as torch's own optimisers (geoopt's convention for plain tensors); that is almost
always a forgotten ``manifold=M`` (tester D s34 2: Adam's points left a learned circle for radius 1.5 to 3.3 with no
word), so construction warns once. Any parameter bound to a manifold, or a group's own ``manifold`` key, is a
deliberate choice and stays silent."""

import math
import warnings

import geoopt
import pytest
import torch

from learned_manifold import LearnedDataManifold, RiemannianAdam, RiemannianSGD
from learned_manifold.metrics import KNNCDC

OPTIMISERS = {"RiemannianSGD": RiemannianSGD, "RiemannianAdam": RiemannianAdam}


@pytest.fixture(scope="module")
def circle():
    t = torch.arange(200, dtype=torch.float64) * (2 * math.pi / 200)
    return LearnedDataManifold(KNNCDC(torch.stack([t.cos(), t.sin()], 1), k=16, sigma=0.1), tangent_dim=1)


@pytest.mark.parametrize("name", OPTIMISERS)
def test_nothing_bound_warns_that_it_runs_as_torch_optim(name):
    p = torch.nn.Parameter(torch.zeros(3, 2, dtype=torch.float64))
    plain = name.removeprefix("Riemannian")
    with pytest.warns(UserWarning, match=rf"{name}: no parameter is bound to a manifold.*torch\.optim\.{plain}.*"
                                         r"manifold=M.*geoopt\.ManifoldParameter"):
        OPTIMISERS[name]([p], lr=0.1)
    with pytest.warns(UserWarning, match="no parameter is bound"):  # a Euclidean ManifoldParameter binds nothing
        OPTIMISERS[name]([geoopt.ManifoldParameter(torch.zeros(3, 2))], lr=0.1)


@pytest.mark.parametrize("name", OPTIMISERS)
def test_any_binding_stays_silent(name, circle):
    def points():
        return torch.nn.Parameter(torch.zeros(3, 2, dtype=torch.float64))

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        OPTIMISERS[name]([points()], manifold=circle, lr=0.1)
        mixed = [points(), geoopt.ManifoldParameter(torch.zeros(3, 2, dtype=torch.float64), manifold=circle)]
        OPTIMISERS[name](mixed, lr=0.1)  # one parameter on the manifold, one Euclidean
        OPTIMISERS[name]([{"params": [points()], "manifold": circle}], lr=0.1)
        OPTIMISERS[name]([{"params": [points()], "manifold": None}], lr=0.1)  # Euclidean, said so explicitly
