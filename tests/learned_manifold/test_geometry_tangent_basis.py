"""`geometry.tangent_basis(A, d)`: ``d`` an integer in ``1..r`` named in its errors, and the same warning as
`range_project` where ``d`` asks for more directions than ``A`` has eigenvalues above the rounding cut (tester E,
item 11: a zero column came back silently as part of an "orthonormal basis")."""

import warnings

import numpy as np
import pytest
import torch

from learned_manifold import geometry as geo


def rank_one_factor():
    """``(1, 4, 2)``: one direction e₀ of size 1 and one of size 1e-9, below float32's rounding cut."""
    A = torch.zeros(1, 4, 2)
    A[:, 0, 0], A[:, 1, 1] = 1.0, 1e-9
    return A


@pytest.mark.parametrize("d", ["2", 2.0, True, None])
def test_a_d_that_is_not_an_integer_is_a_type_error_naming_d(d):
    with pytest.raises(TypeError, match=r"^d must be an int"):
        geo.tangent_basis(rank_one_factor(), d)


@pytest.mark.parametrize("d", [0, 3, -1])
def test_a_d_outside_one_to_r_is_refused(d):
    with pytest.raises(ValueError, match=r"d=.* must lie in 1..r=2"):
        geo.tangent_basis(rank_one_factor(), d)


def test_the_basis_is_the_top_eigenvectors_for_numpy_and_python_integers():
    A = torch.randn(5, 4, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    for d in (2, np.int64(2)):
        U = geo.tangent_basis(A, d)
        assert U.shape == (5, 4, 2)
        torch.testing.assert_close(U.transpose(-1, -2) @ U, torch.eye(2, dtype=torch.float64).expand(5, 2, 2))
        top = torch.linalg.eigh(A @ A.transpose(-1, -2)).eigenvectors[..., [-1, -2]]  # the two largest
        assert geo.projector_error(U, top).max() < 1e-6  # (a square root of a difference: ~sqrt(eps))


def test_a_d_above_the_directions_with_eigenvalues_warns_as_range_project_does():
    A = rank_one_factor()
    with warnings.catch_warnings(record=True) as basis_warnings:
        warnings.simplefilter("always")
        U = geo.tangent_basis(A, 2)
    with warnings.catch_warnings(record=True) as project_warnings:
        warnings.simplefilter("always")
        geo.range_project(A, torch.randn(1, 4), 2)
    assert U.norm(dim=1).tolist() == [[1.0, 0.0]]  # the zero column is still returned, but now said
    assert [str(w.message) for w in basis_warnings] == [str(w.message) for w in project_warnings]
    assert len(basis_warnings) == 1 and "zero columns" in str(basis_warnings[0].message)
    assert basis_warnings[0].filename == __file__  # the caller's line


def test_a_d_within_the_eigenvalues_does_not_warn():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        geo.tangent_basis(rank_one_factor(), 1)
