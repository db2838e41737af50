"""The public geometry functions under ``torch.autocast`` and with a factor of no columns (testers B and C)."""

from __future__ import annotations

import pytest
import torch

from learned_manifold import geometry as geo

A = torch.randn(8, 10, 4, generator=torch.Generator().manual_seed(0))
W = torch.randn(8, 10, generator=torch.Generator().manual_seed(1))
CALLS = {
    "gram": lambda: geo.gram(A),
    "eigenpairs": lambda: geo.eigenpairs(A).vectors,
    "tangent_basis": lambda: geo.tangent_basis(A, 2),
    "projector_error": lambda: geo.projector_error(geo.tangent_basis(A, 2), geo.tangent_basis(A, 3)),
    "intrinsic_gradient": lambda: geo.intrinsic_gradient(A, W),
    "cdc_of_functions": lambda: geo.cdc_of_functions(lambda x: x @ A[0], None, W, A),
    "lowrank_apply": lambda: geo.lowrank_apply(A, W, 0.01),
    "lowrank_solve": lambda: geo.lowrank_solve(A, W, 0.01),
    "lowrank_inner": lambda: geo.lowrank_inner(A, W, W, 0.01),
    "range_project": lambda: geo.range_project(A, W, 2),
    "spectral_apply": lambda: geo.spectral_apply(geo.eigenpairs(A), W, 2, power=-1),
}


@pytest.mark.parametrize("name", list(CALLS))
def test_geometry_under_autocast_is_the_float32_geometry(name):
    """Under bf16 autocast ``lowrank_solve`` had a relative error of 2–4e-3 and ``gram`` came back in bf16 (tester B):
    every public function now switches autocast off inside (`precision.full_precision`), bit-identical results."""
    ref = CALLS[name]()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = CALLS[name]()
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, ref, rtol=0, atol=0)


@pytest.mark.parametrize("call", [lambda Z: geo.eigenpairs(Z), lambda Z: geo.range_project(Z, W[:4, :3]),
                                  lambda Z: geo.spectral_apply(geo.Eigenpairs(Z[:, 0], Z), W[:4, :3], power=-1)])
def test_a_factor_with_no_columns_is_refused_in_words(call):
    """``A`` of shape ``(B, D, 0)`` (G = 0) had failed in ``reshape`` or ``argmax`` (tester C)."""
    with pytest.raises(ValueError, match=r"has r = 0 columns \(shape \(B, D, 0\)\): G = AAᵀ = 0 has no eigen-"):
        call(torch.zeros(4, 3, 0))
