"""`KNNCDC.project` sums its weighted mean about the search origin (`KNNCDC.search_origin`): far from 0 its
rounding is that of the data's spread, not of their distance from 0 (review s36, item 6b)."""

import math

import torch

from learned_manifold.metrics.knn import KNNCDC

F64 = torch.float64


def _circle(n: int, offset: float) -> torch.Tensor:
    """``(n, 2)``: a unit circle's points, moved by ``offset`` along both axes (float64)."""
    th = torch.linspace(0, 2 * math.pi, n + 1, dtype=F64)[:-1]
    return torch.stack([th.cos(), th.sin()], -1) + offset


def test_a_float32_project_far_from_the_origin_rounds_only_its_result():
    """A float32 unit circle at 5,000, k = 64: summing 64 weighted points of size 5,000 rounded the mean by up to
    1.9e-3 (4 ulps there); about the data's mean only the result's own rounding is left, half an ulp (2.4e-4)."""
    data = _circle(3000, 5000.0).float()
    a = torch.linspace(0.1, 6.2, 500, dtype=F64)
    x = (1.01 * torch.stack([a.cos(), a.sin()], -1) + 5000.0).float()
    exact = KNNCDC(data.double(), k=64, sigma=0.05).project(x.double())  # the same points, summed in float64
    field = KNNCDC(data, k=64, sigma=0.05)
    assert torch.allclose(field.search_origin().double(), data.double().mean(0), atol=1e-3)
    err = (field.project(x).double() - exact).abs().max()
    ulp = torch.finfo(torch.float32).eps * 4096  # the spacing of float32 numbers in [4096, 8192)
    assert float(err) <= 0.6 * ulp, float(err)


def test_the_search_origin_is_zero_for_data_about_the_origin_and_follows_the_data():
    """Data centred near 0 are summed as before (origin 0); moved data move the origin with them."""
    data = _circle(200, 0.0).float()
    field = KNNCDC(data, k=16, sigma=0.1)
    assert bool((field.search_origin() == 0).all())
    field.data = data + 100.0
    assert torch.allclose(field.search_origin(), torch.full((2,), 100.0), atol=1e-4)
