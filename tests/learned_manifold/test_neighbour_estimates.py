"""`learned_manifold.neighbour_estimates`: its public names are those `learned_manifold.neighbour_check` uses, and
`Neighbours` leaves out the reference rows within its Theiler window of each query."""

import ast
import inspect

import pytest
import torch

import learned_manifold.neighbour_check as neighbour_check
import learned_manifold.neighbour_estimates as neighbour_estimates
from learned_manifold.neighbour_estimates import Neighbours


def test_every_name_the_neighbour_check_imports_is_public_and_documented():
    """A name imported from another module is that module's public API: in its ``__all__``, with a docstring and
    type hints on its arguments and result (reviewer s36: ``compare`` and ``linear_denoiser`` were imported but not
    listed)."""
    tree = ast.parse(inspect.getsource(neighbour_check))
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
                and node.module == "neighbour_estimates" for alias in node.names}
    assert imported and imported <= set(neighbour_estimates.__all__)
    for name in neighbour_estimates.__all__:
        value = getattr(neighbour_estimates, name)
        if callable(value) and not isinstance(value, type):
            assert value.__doc__ and "return" in inspect.get_annotations(value), name


@pytest.mark.parametrize("window", [1, 2, 3])
def test_the_theiler_window_leaves_out_rows_up_to_w_away_and_keeps_rows_w_plus_one_away(window):
    """Reference row ``j`` at ``(j, 0)``; the 1-nearest-neighbour denoiser of a query at row 10 placed on row
    ``10 ± w`` (``|i − j| ≤ w``: left out, module docstring) lands on row ``10 ± (w + 1)``, and one placed on row
    ``10 ± (w + 1)`` (just beyond the window: kept) stays there."""
    rows = torch.arange(31)
    reference = torch.stack([rows.double(), torch.zeros(31, dtype=torch.float64)], -1)
    neighbours = Neighbours(reference, rows, k=1, sigma=1.0, window=window)
    at = torch.tensor([10 - window, 10 + window, 9 - window, 11 + window], dtype=torch.float64)
    queries = torch.stack([at, torch.zeros_like(at)], -1)
    denoised = neighbours.project(queries, torch.full((4,), 10))
    expected = torch.tensor([9 - window, 11 + window, 9 - window, 11 + window], dtype=torch.float64)
    torch.testing.assert_close(denoised[:, 0], expected, rtol=0, atol=1e-12)
