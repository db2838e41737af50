"""The factor cache's key (`learned_manifold.manifold_field_key`): a field's scalar settings are read by value
whatever their type (NumPy scalars, fractions, decimals, enum members), so changing one reaches the next query."""

import enum
import math
from decimal import Decimal
from fractions import Fraction

import numpy as np
import pytest
import torch

from learned_manifold import LearnedDataManifold
from learned_manifold.metrics import CoMetricField


class Turn(enum.Enum):
    NONE = 0.0
    QUARTER = math.pi / 2


class Line(CoMetricField):
    """``G = a aᵀ``, ``a = (cos t, sin t)``: the line at angle ``t = float(angle)`` through the origin in R²."""

    low_rank, dim = True, 2

    def __init__(self, angle):
        super().__init__()
        self.angle = angle

    def factor(self, x):
        angle = self.angle.value if isinstance(self.angle, Turn) else self.angle
        t = torch.tensor(float(angle), dtype=x.dtype)
        return torch.stack([t.cos(), t.sin()]).reshape(1, 2, 1).expand(x.shape[0], 2, 1)


@pytest.mark.parametrize(("before", "after"), [  # (sigma = np.median(float32 data) is an np.float32)
    (np.float32(0.0), np.float32(math.pi / 2)), (np.float16(0.0), np.float16(math.pi / 2)),
    (np.int64(0), np.int64(2)), (Fraction(0), Fraction(3, 2)), (Decimal(0), Decimal("1.5")),
    (Turn.NONE, Turn.QUARTER),
], ids=["np.float32", "np.float16", "np.int64", "Fraction", "Decimal", "Enum"])
def test_a_changed_scalar_setting_of_any_number_type_reaches_the_next_query(before, after):
    """Before: only bool, int, float, complex, str, None, dtypes and devices were read, so a setting reassigned from
    one NumPy scalar (or fraction, decimal, enum member) to another kept the old line's factor under no_grad."""
    field = Line(before)
    M = LearnedDataManifold(field)
    x, u = torch.zeros(1, 2), torch.tensor([[1.0, 1.0]])
    with torch.no_grad():
        torch.testing.assert_close(M.proju(x, u), torch.tensor([[1.0, 0.0]]))
        field.angle = after
        expected = LearnedDataManifold(Line(after)).proju(x, u)
        assert not torch.allclose(expected, torch.tensor([[1.0, 0.0]]))
        torch.testing.assert_close(M.proju(x, u), expected, atol=0, rtol=0)
    assert ("angle", after) in M.field_settings()


def test_an_unchanged_numpy_setting_keeps_the_cache():
    """Reading settings by value costs no hits: the same NumPy value assigned anew still hits."""
    field = Line(np.float32(0.0))
    M = LearnedDataManifold(field)
    x, u = torch.zeros(1, 2), torch.tensor([[1.0, 1.0]])
    with torch.no_grad():
        M.proju(x, u)
        entry = M._factors().latest
        field.angle = np.float32(0.0)
        M.proju(x, u)
        assert M._factors().latest is entry and len(M._factors().entries) == 1
