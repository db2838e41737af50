"""The cuts of `learned_manifold.geometry` where an eigenvalue counts as zero (SPEC §5), at their documented values:
an eigenvalue just above ``rel_eps · λ₁`` is kept and inverted, and an exactly zero one contributes nothing to
``G_d^+`` however large the asked dimension ``d``."""

import pytest
import torch

from learned_manifold.geometry import eigenpairs, lowrank_solve, spectral_apply

F64 = torch.float64


def test_an_eigenvalue_just_above_rel_eps_times_the_largest_is_kept_and_inverted():
    """``lowrank_solve`` with ``δ = 0`` is the pseudo-inverse ``U Λ^{-1} Uᵀ v`` over the eigenvalues above
    ``rel_eps · λ₁`` (default 1e-6; its docstring, SPEC §5). With ``λ = (1, 0.3, 3e-6)`` the third, 3× above the
    cut, must be inverted (``1/λ₃ ≈ 3.3e5`` along its eigenvector) and counted by ``eigenpairs(rel_eps=1e-6).kept``;
    a cut placed anywhere above ``3e-6 λ₁`` (e.g. ``10 · rel_eps``) drops it and returns a norm near 1."""
    Q = torch.linalg.qr(torch.randn(6, 6, generator=torch.Generator().manual_seed(0), dtype=F64)).Q
    lam = torch.tensor([1.0, 0.3, 3e-6], dtype=F64)
    A = (Q[:, :3] * lam.sqrt()).unsqueeze(0)  # (1, 6, 3): G = Q₃ diag(λ) Q₃ᵀ
    v = (Q[:, 0] + Q[:, 2]).unsqueeze(0)
    want = (v[0] @ Q[:, :3] / lam @ Q[:, :3].T).unsqueeze(0)  # U Λ^{-1} Uᵀ v = q₁ + q₃ / 3e-6
    torch.testing.assert_close(lowrank_solve(A, v), want, rtol=1e-6, atol=0)
    assert int(eigenpairs(A, rel_eps=1e-6).kept) == 3
    torch.testing.assert_close(eigenpairs(A, rel_eps=1e-6).values, lam.unsqueeze(0), rtol=1e-9, atol=1e-15)


def test_the_restricted_inverse_above_the_rank_skips_the_zero_eigenvalues():
    """``spectral_apply(power=-1)`` is ``G_d^+ u``: eigen-directions with a zero eigenvalue contribute nothing
    (its docstring, SPEC §5). A rank-2 factor ``diag(2, 1, 0)`` in ``R⁴`` has ``λ = (4, 1, 0)``; with ``d = 3``
    (above the rank; it warns that the point has fewer directions) ``G_3^+ (1, 1, 1, 1) = (1/4, 1, 0, 0)``, finite.
    Inverting the zero eigenvalue as well gives ``(1/0) · 0 = NaN`` in every coordinate. The manifold's ``inner``
    with ``tangent_dim`` above the rank takes this path (`test_manifold_inner_sign.py`)."""
    A = torch.zeros(1, 4, 3, dtype=F64)
    A[0, 0, 0], A[0, 1, 1] = 2.0, 1.0
    pairs = eigenpairs(A)
    assert pairs.values.tolist() == [[4.0, 1.0, 0.0]]
    with pytest.warns(UserWarning, match="d = 3 asks for more directions than have eigenvalues above"):
        out = spectral_apply(pairs, torch.ones(1, 4, dtype=F64), 3, power=-1)
    torch.testing.assert_close(out, torch.tensor([[0.25, 1.0, 0.0, 0.0]], dtype=F64), rtol=1e-12, atol=1e-15)
