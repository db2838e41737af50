"""`KNNCDC` whose data are edited in place to hold NaN or inf after it was built: every query refuses them with the
field's own message (the index is rebuilt from the edited data, which it never copied), and undoing the edit
restores the same answers."""

from __future__ import annotations

import math

import pytest
import torch

from learned_manifold.metrics.knn import KNNCDC

MESSAGE = r"^KNNCDC data changed to contain NaN or infinite values$"


@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_data_edited_in_place_to_non_finite_values_are_refused_by_every_query(bad) -> None:
    g = torch.Generator().manual_seed(0)
    data = torch.randn(60, 3, generator=g, dtype=torch.float64)
    field = KNNCDC(data, k=8, sigma=0.5)
    q = torch.randn(4, 3, generator=g, dtype=torch.float64)
    before, scale = field.factor(q), field.length_scale()
    data[7, 1] = bad  # the caller's tensor: the field holds it, not a copy
    for query in (lambda: field.factor(q), lambda: field.neighbours(q), field.length_scale,
                  lambda: field.neighbour_graph(3), lambda: field.apply(q, q)):
        with pytest.raises(ValueError, match=MESSAGE):
            query()
    data[7, 1] = 0.25  # a finite edit: the index is rebuilt from it
    assert torch.isfinite(field.factor(q)).all() and field.length_scale() != scale
    data.copy_(torch.randn(60, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64))
    torch.testing.assert_close(field.factor(q), before)
