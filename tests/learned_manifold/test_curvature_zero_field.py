"""`curvature` (SPEC §12) at points where the field is zero (``G = 0``: a dead factor head, a field off its
support): no tangent directions there, whatever ``tangent_dim``. Their rows are NaN and the warning says so; the
gap and mixed-dimension warnings had spoken of an eigengap ``0 / 0`` and advised another ``tangent_dim``, which
cannot help (tester D, p05), and those points had pulled the batch's default ``d`` down."""

from __future__ import annotations

import warnings

import pytest
import torch

from learned_manifold import curvature
from tests.learned_manifold.test_curvature import Factor


def _sphere_or_zero(x: torch.Tensor) -> torch.Tensor:
    """``I − x̂ x̂ᵀ`` in R³ (the spheres about 0) where ``x₀ > 0``, the zero factor elsewhere: ``(B, 3, 3)``."""
    n = x / x.norm(dim=-1, keepdim=True)
    P = torch.eye(3, dtype=x.dtype) - n.unsqueeze(-1) * n.unsqueeze(-2)
    return P * (x[:, :1] > 0).to(x.dtype).unsqueeze(-1)


def _messages(fn) -> tuple[object, list[str]]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = fn()
    return out, [str(w.message) for w in caught]


@pytest.mark.parametrize("tangent_dim", [None, 1, 2, 3])
def test_a_zero_field_is_named_as_such_and_no_tangent_dim_is_advised(tangent_dim):
    zero = Factor(lambda x: torch.zeros(x.shape[0], 3, 2, dtype=x.dtype) * x.sum(), 3)
    x = torch.randn(4, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    if tangent_dim == 3:  # above the factor's rank 2: refused, as for any field
        with pytest.raises(ValueError, match="tangent_dim must be an integer in 1..2"):
            curvature(zero, x, tangent_dim)
        return
    c, messages = _messages(lambda: curvature(zero, x, tangent_dim))
    assert torch.isnan(c.scalar).all() and torch.isnan(c.mean).all()
    assert len(messages) == 1, messages
    assert "G = 0 (the factor is zero) at 4 of 4 point(s)" in messages[0]
    assert "no tangent directions" in messages[0] and "whatever tangent_dim" in messages[0]
    assert "eigengap" not in messages[0] and "choose another tangent_dim" not in messages[0]


def test_zero_points_in_a_batch_neither_set_its_dimension_nor_spoil_the_others():
    """Three zero points beside two sphere points: ``d`` is the sphere's 2 (it was 1, the zero points' lower median
    ``max(1, 0)``), the sphere points read ``R = 2/ρ²``, ``H = −x/ρ²``, the zero points NaN, one warning."""
    x = torch.tensor([[-1.0, 0.2, 0.3], [0.6, 0.8, 0.0], [-0.5, 1.0, 0.0], [0.0, 0.0, 2.0], [-2.0, 0.1, 0.1]],
                     dtype=torch.float64)
    x[3, 0] = 1e-3  # on the sphere side (x₀ > 0), radius ≈ 2
    c, messages = _messages(lambda: curvature(Factor(_sphere_or_zero, 3), x))
    assert c.dim == 2
    sphere = x[:, 0] > 0
    rho2 = x[sphere].pow(2).sum(-1)
    assert torch.allclose(c.scalar[sphere], 2 / rho2, rtol=1e-8)
    assert torch.allclose(c.mean[sphere], -x[sphere] / rho2.unsqueeze(-1), atol=1e-8)
    assert torch.isnan(c.scalar[~sphere]).all()
    assert len(messages) == 1, messages
    assert "G = 0 (the factor is zero) at 3 of 5 point(s) (the first: 0)" in messages[0]


def test_tangent_dim_equal_to_the_ambient_dimension_names_the_zero_points_not_a_lower_dimension():
    x = torch.tensor([[-1.0, 0.2, 0.3], [0.6, 0.8, 0.0]], dtype=torch.float64)
    eye_or_zero = Factor(lambda p: torch.eye(3, dtype=p.dtype) * (p[:, :1] > 0).to(p.dtype).unsqueeze(-1), 3)
    c, messages = _messages(lambda: curvature(eye_or_zero, x, 3))
    assert torch.isnan(c.scalar[0]) and c.scalar[1] == 0
    assert len(messages) == 1 and "G = 0 (the factor is zero) at 1 of 2 point(s)" in messages[0], messages
