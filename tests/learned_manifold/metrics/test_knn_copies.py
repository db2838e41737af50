"""A k-NN field with no covariance left (tester D s34 3): ``k = 1`` is refused (one neighbour has no covariance:
``G ≡ 0``), and where a centred field's ``k`` neighbours are all copies of one data row (data saved with rows
repeated at least ``k`` times) ``G = 0`` is warned about, naming the rows, and reads dimension 0 (it read 1, and
an optimiser there never moved, silently)."""

import math
import warnings

import pytest
import torch

from learned_manifold import LearnedDataManifold
from learned_manifold.metrics import KNNCDC


def circle(n: int) -> torch.Tensor:
    t = torch.arange(n, dtype=torch.float64) * (2 * math.pi / n)
    return torch.stack([t.cos(), t.sin()], 1)


def test_one_neighbour_is_refused_naming_k_where_it_leaves_no_field():
    with pytest.raises(ValueError, match=r"k must be at least 2 for the centred field.*got 1: one neighbour has no"):
        KNNCDC(circle(50), k=1, sigma=0.1)
    with pytest.raises(ValueError, match=r"k must be at least 2"):
        KNNCDC(circle(1), k=1, sigma=0.1)
    assert KNNCDC(circle(50), k=2, sigma=0.1).k == 2
    # the uncentred field's one column points at the nearest data point: a field, not 0 (reviewer s34)
    uncentred = KNNCDC(circle(50), k=1, sigma=0.1, centred=False)
    q = torch.tensor([[1.2, 0.0], [0.0, 0.7]], dtype=torch.float64)
    assert bool((uncentred.factor(q).flatten(1).norm(dim=1) > 0.5).all())


def test_neighbours_that_are_all_copies_warn_naming_the_rows_and_read_dimension_zero():
    data = circle(20).repeat(40, 1)  # every row 40 times
    M = LearnedDataManifold(KNNCDC(data, k=32, sigma=0.1))
    with pytest.warns(RuntimeWarning, match=r"KNNCDC: G = 0 at 3 of 3 point\(s\): all their k = 32 nearest "
                                            r"neighbours are copies of one data row \(rows 0, 1, 2, each repeated"
                                            r".*data\.unique\(dim=0\)"):
        dims = M.intrinsic_dimension(data[:3])
    assert dims.tolist() == [0, 0, 0]
    with pytest.warns(RuntimeWarning, match="G = 0"):
        values, _ = M.tangent_space(data[:3])
    assert bool((values == 0).all())


def test_copies_fewer_than_k_and_distinct_rows_stay_silent():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for data in (circle(200), circle(20).repeat(3, 1)):  # no copies; each row 3 times with k = 8
            M = LearnedDataManifold(KNNCDC(data, k=8, sigma=0.5))
            assert bool((M.intrinsic_dimension(data[:5]) >= 1).all())
