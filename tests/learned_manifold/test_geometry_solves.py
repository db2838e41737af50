"""Solves with a low-rank co-metric (SPEC §5): `lowrank_apply` and `lowrank_solve` (the pseudo-inverse for
δ = 0, the regularised inverse ``(AAᵀ + δI)^{-1}`` for δ > 0) against dense closed forms, in every precision and
with broken rows. Eigenpairs and dimensions: test_geometry.py."""

import pytest
import torch

from learned_manifold import geometry as geo
from tests.learned_manifold.test_geometry import float64, random_factor  # noqa: F401  (float64: an autouse fixture)


@pytest.mark.parametrize("r", [3, 12])
def test_lowrank_apply_and_solve_against_dense(r):
    """Also for a factor wider than tall (r = 12 > D = 7), which is solved on the D × D side."""
    A, w = random_factor(r=r), torch.randn(5, 7, dtype=torch.float64)
    G = A @ A.transpose(-1, -2)
    for delta in (0.3, 1e-3):
        dense = G + delta * torch.eye(7)
        torch.testing.assert_close(geo.lowrank_apply(A, w, delta), (dense @ w.unsqueeze(-1)).squeeze(-1))
        torch.testing.assert_close(geo.lowrank_solve(A, w, delta), torch.linalg.solve(dense, w))
        torch.testing.assert_close(
            geo.lowrank_inner(A, w, w, delta), (w * torch.linalg.solve(dense, w)).sum(-1)
        )
    # δ = 0: the pseudo-inverse on the range of A
    pinv = torch.linalg.pinv(G, hermitian=True)
    torch.testing.assert_close(geo.lowrank_solve(A, w, 0.0), (pinv @ w.unsqueeze(-1)).squeeze(-1))
    with pytest.raises(ValueError, match="delta"):
        geo.lowrank_solve(A, w, -1.0)


def test_lowrank_solve_with_a_nan_row_and_in_half_precision():
    """δ > 0: a NaN factor row gives a NaN row only; float16 inputs are solved in float32 and returned in float16."""
    from learned_manifold.geometry import lowrank_solve

    g = torch.Generator().manual_seed(1)
    A, v = torch.randn(3, 5, 2, generator=g), torch.randn(3, 5, generator=g)
    bad = A.clone()
    bad[0, 0, 0] = float("inf")
    out = lowrank_solve(bad, v, 0.1)
    assert torch.isnan(out[0]).all()
    torch.testing.assert_close(out[1:], lowrank_solve(A[1:], v[1:], 0.1))
    half = lowrank_solve(A.half(), v.half(), 0.1)
    assert half.dtype == torch.float16
    torch.testing.assert_close(half.to(A.dtype), lowrank_solve(A, v, 0.1), rtol=0.02, atol=0.05)


def test_a_rank_deficient_float32_factor_solves_with_a_tiny_delta():
    """A float32 factor of rank 2 with r = 8 and δ = 1e-8: the Gram's float32 rounding (~1e-7 of its eigenvalues)
    outweighs δ, so ``AᵀA + δI`` is not positive definite in float32 (a bare ``LinAlgError`` before); the r × r
    algebra falls back to float64 and the answer matches the float64 solve (the normal part, v/δ, dominates)."""
    g = torch.Generator().manual_seed(0)
    Q = torch.linalg.qr(torch.randn(10, 2, generator=g, dtype=torch.float64)).Q
    A = (Q @ torch.randn(2, 8, generator=g, dtype=torch.float64)).expand(3, 10, 8).contiguous()
    v = torch.randn(3, 10, generator=g, dtype=torch.float64)
    for delta in (1e-4, 1e-8):
        exact = geo.lowrank_solve(A, v, delta)
        got = geo.lowrank_solve(A.float(), v.float(), delta)
        assert got.dtype == torch.float32
        assert float((got.double() - exact).norm() / exact.norm()) < 1e-5
    wide = torch.cat([A, A], -1)[:, :4]  # (3, 4, 16): r > D, the D × D route, rank 2 in R⁴
    exact = geo.lowrank_solve(wide, v[:, :4], 1e-8)
    got = geo.lowrank_solve(wide.float(), v[:, :4].float(), 1e-8)
    assert float((got.double() - exact).norm() / exact.norm()) < 1e-5


@pytest.mark.parametrize("delta", [float("nan"), float("inf"), -1.0])
def test_a_non_finite_delta_is_refused(delta):
    """``δ = NaN`` had given the δ = 0 pseudo-inverse (``NaN > 0`` is false) and ``δ = inf`` NaN."""
    A, v = random_factor(b=1, d=4, r=2), torch.randn(1, 4)
    with pytest.raises(ValueError, match="delta must be a finite number >= 0"):
        geo.lowrank_solve(A, v, delta)
    with pytest.raises(ValueError, match="delta must be a finite number >= 0"):
        geo.lowrank_inner(A, v, v, delta)
    with pytest.raises(ValueError, match="delta must be a finite number >= 0"):
        geo.lowrank_apply(A, v, delta)  # (it gave NaN / inf rows)


@pytest.mark.parametrize("seed", [3, 4])
def test_a_solve_whose_cholesky_fails_in_float64_matches_the_closed_form(seed):
    """A float64 factor of rank 2 with r = 4 and tiny δ: ``AᵀA + δI`` is not positive definite even in float64
    for some δ ≤ 1e-16 λ₁ (Cholesky's ``info > 0``), and its half-computed factor had been used (37% off, or NaN).
    The eigen route gives the closed form ``U (S² + δ)^{-1} Uᵀ v + (I − UUᵀ) v / δ``; so does the wide (r > D)
    route where its Cholesky fails."""
    g = torch.Generator().manual_seed(seed)
    U = torch.linalg.qr(torch.randn(6, 2, generator=g)).Q
    W = torch.linalg.qr(torch.randn(4, 2, generator=g)).Q
    S = torch.tensor([2.0, 0.7])
    A = ((U * S) @ W.T).expand(2, 6, 4)  # λ₁ = 4
    v = torch.randn(2, 6, generator=g)
    failed = failed_wide = 0
    for delta in (4e-16, 4e-17, 4e-18, 4e-19):
        failed += int((torch.linalg.cholesky_ex(geo.gram(A) + delta * torch.eye(4)).info > 0).sum())
        coords = v @ U
        exact = (coords / (S**2 + delta)) @ U.T + (v - coords @ U.T) / delta
        got = geo.lowrank_solve(A, v, delta)
        assert float((got - exact).norm() / exact.norm()) < 1e-12
        wide = A[:, :3, :]  # (2, 3, 4): r > D, rank 2 in R³, the D × D route
        Uw, Sw, _ = torch.linalg.svd(wide[0], full_matrices=False)
        Uw, Sw = Uw[:, :2], Sw[:2]
        cw = v[:, :3] @ Uw
        exact = (cw / (Sw**2 + delta)) @ Uw.T + (v[:, :3] - cw @ Uw.T) / delta
        got = geo.lowrank_solve(wide, v[:, :3], delta)
        if bool((torch.linalg.cholesky_ex(wide @ wide.mT + delta * torch.eye(3)).info > 0).any()):
            failed_wide += 1  # (where it succeeds, δ ~ ε λ₁ is within its rounding: no closed form to match)
            assert float((got - exact).norm() / exact.norm()) < 1e-12
    assert failed and failed_wide  # the case: Cholesky failed in float64 for some δ, on both routes
    assert torch.isfinite(geo.lowrank_solve(A.float(), v.float(), 1e-18)).all()  # float32: no bare LinAlgError


def singular_value_factor(values, d=8, seed=1):
    """``(1, d, r)`` float64 factor with the given singular values (random orthonormal frames on both sides)."""
    g = torch.Generator().manual_seed(seed)
    Q = torch.linalg.qr(torch.randn(d, len(values), generator=g))[0]
    V = torch.linalg.qr(torch.randn(len(values), len(values), generator=g))[0]
    return (Q @ torch.diag(torch.tensor(values)) @ V.T).unsqueeze(0)


def test_a_solve_with_precomputed_pairs_matches_the_solve_without_them():
    """float64, λ₃/λ₁ = 1e-8: `lowrank_solve` cut at its rel_eps 1e-6 (norm 2.68) while ``pairs=eigenpairs(A)``,
    cut at the float64 Gram's rounding, kept λ₃ (9.1e7). Both are now the pseudo-inverse over λ > 1e-6 λ₁, as for
    float32 (dense ``G_2⁺ v`` on the top two eigenvectors)."""
    A = singular_value_factor([1.0, 0.5, 1e-4], seed=0)
    v = torch.randn(1, 8, generator=torch.Generator().manual_seed(3))
    plain, given = geo.lowrank_solve(A, v), geo.lowrank_solve(A, v, pairs=geo.eigenpairs(A))
    torch.testing.assert_close(plain, given, rtol=1e-12, atol=0)
    U = torch.linalg.eigh(A @ A.transpose(-1, -2)).eigenvectors.flip(-1)[..., :2]
    dense = (U @ torch.diag(torch.tensor([1.0, 4.0])) @ U.transpose(-1, -2) @ v.unsqueeze(-1)).squeeze(-1)
    torch.testing.assert_close(plain, dense, rtol=1e-9, atol=0)
    torch.testing.assert_close(geo.lowrank_solve(A.float(), v.float()).double(), plain, rtol=1e-4, atol=0)
    kept = geo.lowrank_solve(A, v, rel_eps=1e-12)  # a smaller cut inverts λ₃ too, with or without the pairs
    torch.testing.assert_close(kept, geo.lowrank_solve(A, v, rel_eps=1e-12, pairs=geo.eigenpairs(A)), rtol=1e-9,
                               atol=0)
    assert kept.norm() > 1e7


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_a_regularised_solve_reads_the_cholesky_failures_once(monkeypatch, dtype):
    """δ > 0 and nothing failed: `_regularised_cholesky` asks the device whether any row failed once (one host sync),
    not twice as it had, and the solve makes no other (its finite-row check had made one more); the answer is still
    ``(AAᵀ + δI)^{-1} v`` (dense closed form), NaN in a NaN row only."""
    A, v = random_factor().to(dtype), torch.randn(5, 7, generator=torch.Generator().manual_seed(1), dtype=dtype)
    exact = torch.linalg.solve(A.double() @ A.double().mT + 1e-2 * torch.eye(7), v.double().unsqueeze(-1))
    syncs = []
    original = torch.Tensor.__bool__

    def counted(t):
        syncs.append(t)
        return original(t)

    monkeypatch.setattr(torch.Tensor, "__bool__", counted)
    chol, failed = geo._regularised_cholesky(A, 1e-2)
    assert failed is None and len(syncs) == 1
    out = geo.lowrank_solve(A, v, 1e-2)
    # the whole solve: that one, and on the CPU its finite-row check (free there; the mask it avoids copies A: on
    # CUDA the mask is applied without asking the device)
    assert len(syncs) == 3
    monkeypatch.undo()
    torch.testing.assert_close(out.double(), exact.squeeze(-1), rtol=1e-4 if dtype == torch.float32 else 1e-10,
                               atol=0)
    A[1, 2, 0] = float("nan")  # a NaN row: NaN there, the other rows as before
    bad = geo.lowrank_solve(A, v, 1e-2)
    assert bad[1].isnan().all() and torch.equal(bad[[0, 2, 3, 4]], out[[0, 2, 3, 4]])
