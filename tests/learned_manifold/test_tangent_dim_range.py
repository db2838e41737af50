"""``tangent_dim`` above ``D`` is refused by `geodesic`, `interpolate` and `gradient_flow` with the message
`LearnedDataManifold` gives, before any work (tester E, item 2: a sphere in R³ with ``tangent_dim=5`` ran to
``converged=True`` with warnings from inside the library, as it was checked only against the factor's rank 32)."""

import warnings

import pytest
import torch

from learned_manifold import LearnedDataManifold, geodesic, gradient_flow, interpolate
from learned_manifold.metrics import KNNCDC

DATA = torch.nn.functional.normalize(torch.randn(500, 3, generator=torch.Generator().manual_seed(0)), dim=-1)
FIELD = KNNCDC(DATA, k=32, sigma=0.2)  # rank 32 > D = 3

CALLS = {
    "geodesic": lambda d: geodesic(FIELD, DATA[:2], DATA[2:4], n_points=8, tangent_dim=d),
    "interpolate": lambda d: interpolate(FIELD, DATA[:2], DATA[2:4], tangent_dim=d),
    "gradient_flow": lambda d: gradient_flow(FIELD, lambda x: x[:, 2], DATA[:2], tangent_dim=d),
}


@pytest.mark.parametrize("name", CALLS)
@pytest.mark.parametrize("d", [4, 5, 32])
def test_a_tangent_dim_above_d_is_refused_as_the_manifold_refuses_it(name, d):
    with pytest.raises(ValueError) as manifold_error:
        LearnedDataManifold(FIELD, tangent_dim=d)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # before any work: no warning from inside the solvers first
        with pytest.raises(ValueError) as error:
            CALLS[name](d)
    assert str(error.value) == str(manifold_error.value) == f"tangent_dim must lie in 1..3, got {d}"


@pytest.mark.parametrize("name", CALLS)
def test_a_tangent_dim_of_d_itself_is_accepted(name):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        CALLS[name](3)
