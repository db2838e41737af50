"""The dimension rule's dropped directions (SPEC §5): `dropped_share` and `warn_if_dropping`."""

import warnings

import pytest
import torch

from learned_manifold.dimension import DROPPED_LIMIT, dropped_share, intrinsic_dimension, warn_if_dropping


def test_dropped_share_is_the_next_eigenvalue_over_the_largest():
    values = torch.tensor([[0.25, 1.0, 0.0], [2.0, 0.1, 1.9], [3.0, 3.0, 3.0], [0.0, 0.0, 0.0]])
    d = intrinsic_dimension(values)
    assert d.tolist() == [1, 2, 3, 1]
    torch.testing.assert_close(dropped_share(values, d), torch.tensor([0.25, 0.05, 0.0, 0.0]))
    torch.testing.assert_close(dropped_share(values, 1), torch.tensor([0.25, 0.95, 1.0, 0.0]))


def test_a_full_rank_metric_read_as_one_dimensional_is_warned_about():
    # a full-rank metric G = diag(1, 0.3) (polar coordinates at r ≈ 1.8): the gap rule keeps one direction
    values = torch.tensor([[1.0, 0.3]])
    with pytest.warns(UserWarning, match=r"drop an eigenvalue above 0\.25 λ₁ at 1 of 1 points \(up to 0\.3 λ₁\)"):
        assert warn_if_dropping(values, intrinsic_dimension(values), "test: the lengths")


def test_a_cdc_spectrum_is_not_warned_about():
    # a CDC's tangent eigenvalues near 1, normal ones below the trainer's outside limit
    values = torch.tensor([[1.0, 0.98, DROPPED_LIMIT * 0.9], [0.97, 1.0, 0.001]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert not warn_if_dropping(values, intrinsic_dimension(values), "test: the lengths")
        assert not warn_if_dropping(values[:0], 1, "test: nothing")


def test_no_eigenvalues_have_no_dimension():
    with pytest.raises(ValueError, match=r"values has r = 0 eigenvalues \(shape \(3, 0\)\)"):
        intrinsic_dimension(torch.zeros(3, 0))
