"""Curvature's contract (SPEC §12): detached results, float32 under autocast, a non-finite factor named as such, the
gap rule's dropped directions and unequal tangent eigenvalues warned about (testers B, C, D)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from learned_manifold import curvature
from learned_manifold.curvature import factor_jvp
from learned_manifold.metrics import CoMetricField
from tests.learned_manifold.test_curvature import Factor, sphere_projectors


class ParameterFlat(CoMetricField):
    """A learnable constant factor ``W`` ``(D, r)``: flat (II = 0), but a view of a Parameter."""

    low_rank = True
    dim = 3

    def __init__(self):
        super().__init__()
        self.W = nn.Parameter(torch.eye(3)[:, :2].clone())

    def factor(self, x):
        return self.W.expand(x.shape[0], 3, 2)


def test_results_hold_no_graph_of_the_fields_parameters():
    """A factor made from a Parameter gave ``second_form``, ``mean`` and ``scalar`` with ``grad_fn``s (tester C):
    SPEC §12 says the results are detached."""
    c = curvature(ParameterFlat(), torch.tensor([[0.1, 0.2, 0.3], [1.0, 0.0, 0.5]]), 2)
    for name in ("basis", "second_form", "mean", "scalar", "asymmetry", "gap"):
        assert not getattr(c, name).requires_grad, name
    assert c.scalar.abs().max() == 0


def test_curvature_and_factor_jvp_under_autocast_are_the_float32_ones():
    """Under bf16 autocast the unit sphere read R up to 1.7% off with a bf16 basis (tester B): autocast is switched
    off inside (`precision.full_precision`), so the results are bit-identical to those outside it."""
    x = torch.nn.functional.normalize(torch.randn(6, 3, generator=torch.Generator().manual_seed(0)), dim=-1)
    field = Factor(sphere_projectors, 3)
    ref = curvature(field, x)
    ref_jvp = factor_jvp(field, x, x.unsqueeze(-1))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = curvature(field, x)
        out_jvp = factor_jvp(field, x, x.unsqueeze(-1))
    assert out.basis.dtype == torch.float32 and out.scalar.dtype == torch.float32
    torch.testing.assert_close(out.scalar, ref.scalar, rtol=0, atol=0)
    torch.testing.assert_close(out.basis, ref.basis, rtol=0, atol=0)
    torch.testing.assert_close(out_jvp, ref_jvp, rtol=0, atol=0)


def test_a_non_finite_factor_is_named_as_such_not_as_an_eigengap():
    """At the centre of the spheres the factor is NaN: the warning had blamed the eigengap and advised another
    tangent_dim (tester D, a cone's tip); the other points keep their curvature."""
    x = torch.tensor([[0.0, 0.0, 0.0], [0.0, 0.6, 0.8]], dtype=torch.float64)
    for dim in (None, 2):
        with pytest.warns(RuntimeWarning, match=r"^Factor.factor is not finite \(NaN or inf\) at 1 of 2 point\(s\) "
                          r"\(the first: 0\): their curvature is NaN; no tangent_dim helps") as caught:
            c = curvature(Factor(sphere_projectors, 3), x, dim)
        assert not any("eigengap" in str(w.message) for w in caught)
        assert caught[0].filename == __file__
        assert c.dim == 2 and torch.isnan(c.scalar[0]) and abs(float(c.scalar[1]) - 2.0) < 1e-10


def s1_times_s2(x):
    """S¹(3) × S²(1) ⊂ R⁵ (coordinates 0–1 and 2–4), tangent eigenvalue 1 on the circle and 0.3 on the sphere:
    a factor ``(B, 5, 4)`` (tester D)."""
    t = torch.stack([-x[:, 1], x[:, 0]], -1) / x[:, :2].norm(dim=-1, keepdim=True)
    n = x[:, 2:] / x[:, 2:].norm(dim=-1, keepdim=True)
    sphere = (torch.eye(3, dtype=x.dtype) - n.unsqueeze(-1) * n.unsqueeze(-2)) * 0.3 ** 0.5
    top = torch.cat([t.unsqueeze(-1), x.new_zeros(x.shape[0], 2, 3)], dim=-1)
    bottom = torch.cat([x.new_zeros(x.shape[0], 3, 1), sphere], dim=-1)
    return torch.cat([top, bottom], dim=1)


def test_the_gap_rule_dropping_a_real_direction_and_unequal_eigenvalues_are_warned_about():
    """S¹×S² with tangent eigenvalues 1 and 0.3: the gap rule reads d = 1 and R = 0 silently (truth of the embedded
    product: 2). Now a warning names tangent_dim; with tangent_dim = 3, R = 2, and a warning says the eigenvalues
    (ignored by curvature, SPEC §12) are far from equal, so the metric G⁺'s own curvature differs."""
    g = torch.Generator().manual_seed(0)
    angle = torch.rand(5, generator=g, dtype=torch.float64) * 6.28
    s2 = torch.nn.functional.normalize(torch.randn(5, 3, generator=g, dtype=torch.float64), dim=-1)
    x = torch.cat([3 * torch.stack([angle.cos(), angle.sin()], -1), s2], dim=-1)
    field = Factor(s1_times_s2, 5)
    with pytest.warns(UserWarning, match=r"^curvature: II, H and R keep the gap rule's directions .* at 5 of 5 "
                      r"points \(up to 0.3 λ₁\)") as caught:
        c = curvature(field, x)
    assert c.dim == 1 and caught[0].filename == __file__
    with pytest.warns(RuntimeWarning, match=r"^the kept eigenvalues are far from equal: λ_3 / λ₁ is 0.3 at the "
                      r"median point"):
        c = curvature(field, x, 3)
    torch.testing.assert_close(c.scalar, torch.full_like(c.scalar, 2.0))
