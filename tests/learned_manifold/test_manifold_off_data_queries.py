"""The point-wise queries `LearnedDataManifold.tangent_space`, `LearnedDataManifold.intrinsic_dimension` and
`curvature` warn where their points lie beyond the data the field holds (`landing.ends_off_data`, as `geodesic`,
the flows and the optimisers do): points in other units (tester D s34 1: a model of a circle of radius 100 round
(500, 500) queried with standardised points ~600 away) got one silent tangent for every point. On the data they
stay silent, and `proju` (the optimisers' hot path) does not search for the nearest data point."""

import math
import warnings

import pytest
import torch

from learned_manifold import LearnedDataManifold, curvature
from learned_manifold.metrics import KNNCDC

QUERIES = {
    "tangent_space": lambda M, x: M.tangent_space(x),
    "intrinsic_dimension": lambda M, x: M.intrinsic_dimension(x),
    "curvature": lambda M, x: curvature(M.field, x, 1),
}


@pytest.fixture(scope="module")
def circle():
    t = torch.arange(400, dtype=torch.float64) * (2 * math.pi / 400)
    data = 100 * torch.stack([t.cos(), t.sin()], 1) + 500  # radius 100 round (500, 500), raw units
    return LearnedDataManifold(KNNCDC(data, k=64, sigma=5.0)), data


def _beyond_warnings(query, M, x) -> list[str]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        query(M, x)
    return [str(w.message) for w in caught if "beyond the data" in str(w.message)]


@pytest.mark.parametrize("name", QUERIES)
def test_points_in_other_units_warn_once_naming_the_query(circle, name):
    M, data = circle
    standardised = (data[::50] - 500) / 100  # the same points, standardised: ~600 from every data point
    said = _beyond_warnings(QUERIES[name], M, standardised)
    assert len(said) == 1 and said[0].startswith(name if name == "curvature" else f"LearnedDataManifold.{name}")
    assert "x (8 of 8)" in said[0] and "other units" in said[0]


@pytest.mark.parametrize("name", QUERIES)
def test_points_on_the_data_stay_silent(circle, name):
    M, data = circle
    t = torch.linspace(0.1, 6.0, 7, dtype=torch.float64)
    between = 100 * torch.stack([t.cos(), t.sin()], 1) + 500  # on the circle, between data points
    assert _beyond_warnings(QUERIES[name], M, between) == []


def test_proju_does_not_search_for_the_nearest_data_point(circle, monkeypatch):
    M, data = circle
    calls = []
    monkeypatch.setattr(KNNCDC, "beyond_data", lambda self, x: calls.append(x) or torch.zeros(x.shape[0]))
    far = (data[:4] - 500) / 100
    M.proju(far, torch.ones_like(far))
    M.egrad2rgrad(far, torch.ones_like(far))
    assert calls == []
    M.tangent_space(far)
    assert len(calls) == 1  # once per query call
