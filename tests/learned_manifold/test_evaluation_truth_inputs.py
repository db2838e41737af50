"""The checks of `dimension_accuracy`'s ``true_dim`` and `lerp`'s ``n_points`` against their docstrings (tester D,
s35): a truth that is not an integer dimension is refused before any work, as the docstring promises, and `lerp`
raises the error types its docstring names."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch

from learned_manifold.evaluation import dimension_accuracy, field_eigenpairs, lerp, spectral_report
from tests.learned_manifold.test_evaluation import FactorField, sphere_tangents

B = 6


def exact_field() -> tuple[torch.Tensor, torch.Tensor, FactorField]:
    """Points of S³ ⊂ R⁴ and a field whose factor is their true tangent basis: every point reads dimension 3."""
    x, basis = sphere_tangents(B, 4, torch.Generator().manual_seed(5))
    return x, basis, FactorField(basis)


class Untouched(FactorField):
    """A field that fails the test if its factor is asked for: the check must come before any work."""

    def factor(self, x: torch.Tensor) -> torch.Tensor:
        raise AssertionError("the field was queried before true_dim was checked")


@pytest.mark.parametrize("truth", [3, np.int64(3), torch.tensor(3), torch.full((B,), 3), torch.full((B,), 3,
                                                                                                     dtype=torch.int32)])
def test_integer_truths_are_scored(truth):
    x, basis, field = exact_field()
    assert dimension_accuracy(field, x, truth) == 1.0
    assert spectral_report(field_eigenpairs(field, x), true_basis=basis, true_dim=truth)["dimension_accuracy"] == 1.0


@pytest.mark.parametrize("truth, problem", [
    (2.7, "one integer"), (3.0, "one integer"), (True, "one integer"), (torch.tensor(2.5), "one integer"),
    (torch.full((B,), 1.9), "integer dimensions"), (torch.full((B,), 3.0), "integer dimensions"),
    (torch.ones(B, dtype=torch.bool), "integer dimensions"), (-1, ">= 0"), (torch.full((B,), -1), ">= 0"),
    (torch.full((B, 1), 3), "one per point"),
])
def test_a_truth_that_is_not_an_integer_dimension_is_refused_before_any_work(truth, problem):
    """2.7, tensor(2.5) and float tensors had scored 0.00 and True as 1, silently; integral floats are refused as
    every count of the library refuses them (`lerp`'s ``4.0``)."""
    x, basis, field = exact_field()
    with pytest.raises(ValueError, match=rf"^true_dim must .*{re.escape(problem)}"):
        dimension_accuracy(Untouched(basis), x, truth)
    with pytest.raises(ValueError, match=rf"^true_dim must .*{re.escape(problem)}"):
        spectral_report(field_eigenpairs(field, x), true_basis=basis, true_dim=truth)


def documented(function, error: type[Exception]) -> str:
    """The text of ``error``'s entry in the ``Raises:`` section of ``function``'s docstring ('' if absent)."""
    raises = function.__doc__.split("Raises:")[1]
    found = re.search(rf"\b{error.__name__}: (.*?)(?=\n\s*\w+Error:|\Z)", raises, re.S)
    return "" if found is None else " ".join(found.group(1).split())


@pytest.mark.parametrize("n_points, error, why", [(True, TypeError, "not an integer"), (4.0, TypeError, "not an "
                                                  "integer"), (1, ValueError, "below 2")])
def test_lerp_raises_the_error_its_docstring_names_for_a_bad_count(n_points, error, why):
    """The docstring had promised a ValueError for a bool or float count; `lerp` raises a TypeError, as every count
    check of the library (`checks.check_int`, `metrics.base.check_count`)."""
    with pytest.raises(error, match="^n_points"):
        lerp(torch.zeros(3), torch.ones(3), n_points)
    entry = documented(lerp, error)
    assert "n_points" in entry and why in entry
