"""Geometry of a low-rank co-metric (SPEC §5): eigenpairs, dimensions and projections against a dense closed form or
autograd. Solves (`lowrank_apply`, `lowrank_solve`): test_geometry_solves.py; gradients where eigenvalues tie or
straddle the rounding cut: test_geometry_gradients.py."""

import warnings

import pytest
import torch

from learned_manifold import geometry as geo


@pytest.fixture(autouse=True)
def float64():
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(previous)


def random_factor(b=5, d=7, r=3, seed=0):
    return torch.randn(b, d, r, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def test_eigenpairs_match_dense_eigh():
    A = random_factor()
    pairs = geo.eigenpairs(A)
    dense = torch.linalg.eigvalsh(A @ A.transpose(-1, -2)).flip(-1)[:, :3]
    torch.testing.assert_close(pairs.values, dense)
    U = pairs.vectors
    torch.testing.assert_close(U.transpose(-1, -2) @ U, torch.eye(3).expand(5, 3, 3))
    # G U = U Λ
    torch.testing.assert_close(A @ (A.transpose(-1, -2) @ U), U * pairs.values.unsqueeze(-2))


def test_eigenpairs_of_a_wide_factor_come_from_G_and_agree_with_the_gram_route():
    """r > D (e.g. k neighbours in R^D) is decomposed on the D × D side; values, projectors and G U = U Λ are
    those of the r × r Gram route (`_small_eigh` of AᵀA), and the padding columns are zero."""
    A = random_factor(b=6, d=4, r=9)
    pairs = geo.eigenpairs(A)
    assert pairs.values.shape == (6, 9) and pairs.vectors.shape == (6, 4, 9)
    gram_values, V = torch.linalg.eigh(A.transpose(-1, -2) @ A)
    torch.testing.assert_close(pairs.values, gram_values.flip(-1).clamp_min(0), atol=1e-10, rtol=1e-10)
    U = pairs.vectors[..., :4]
    torch.testing.assert_close(U.transpose(-1, -2) @ U, torch.eye(4, dtype=A.dtype).expand(6, 4, 4))
    torch.testing.assert_close(A @ (A.transpose(-1, -2) @ U), U * pairs.values[:, :4].unsqueeze(-2))
    assert (pairs.vectors[..., 4:] == 0).all()
    top2 = (A @ V.flip(-1)[..., :2]) * gram_values.flip(-1)[:, None, :2].rsqrt()  # the Gram route's vectors
    torch.testing.assert_close(geo.projector_error(pairs.vectors[..., :2], top2), torch.zeros(6, dtype=A.dtype),
                               atol=1e-7, rtol=0)
    bad = A.clone()
    bad[1, 0, 0] = float("nan")  # one bad row, one NaN row
    out = geo.eigenpairs(bad)
    assert out.values[1].isnan().all() and torch.isfinite(out.values[[0, 2, 3, 4, 5]]).all()


def test_eigenpairs_of_a_wide_rank_deficient_factor_have_finite_gradients():
    """With a gradient to A the wide factor takes the Gram route: on G itself the exactly repeated zero
    eigenvalues of a rank-deficient factor made eigh's backward pass NaN."""
    A = random_factor(b=4, d=5, r=8)
    A[:, 3:] = 0  # G = AAᵀ has two zero eigenvalues
    A.requires_grad_()
    U = geo.eigenpairs(A).vectors[..., :2]
    weights = torch.randn(4, 5, 5, dtype=A.dtype, generator=torch.Generator().manual_seed(1))
    ((U @ U.transpose(-1, -2)) * weights).sum().backward()
    assert torch.isfinite(A.grad).all()
    with torch.no_grad():  # without a gradient: the D × D side, the same top-2 projector
        fast = geo.eigenpairs(A).vectors[..., :2]
    torch.testing.assert_close(geo.projector_error(fast, U.detach()), torch.zeros(4, dtype=A.dtype), atol=1e-7, rtol=0)


def test_eigenpairs_rank_deficient_and_r_larger_than_D_give_zero_vectors():
    A = random_factor(b=3, d=4, r=2)
    A = torch.cat([A, A[..., :1] * 2.0, torch.zeros(3, 4, 1)], dim=-1)  # rank 2 out of r = 4
    pairs = geo.eigenpairs(A)
    assert torch.isfinite(pairs.vectors).all()
    assert (pairs.vectors[..., 2:] == 0).all()
    wide = random_factor(b=2, d=3, r=6)
    pairs = geo.eigenpairs(wide)
    assert (pairs.vectors[..., 3:] == 0).all() and torch.isfinite(pairs.vectors).all()


def test_intrinsic_dimension_gap_rule_is_scale_free():
    values = torch.tensor(
        [[1.0, 0.95, 0.9, 0.1, 0.05], [2.0, 0.1, 0.09, 0.0, 0.0], [1.0, 1.0, 1.0, 1.0, 1.0]]
    )
    assert geo.intrinsic_dimension(values).tolist() == [3, 1, 5]
    assert geo.intrinsic_dimension(values * 37.0).tolist() == [3, 1, 5]
    assert geo.intrinsic_dimension(values[:, [4, 2, 0, 1, 3]]).tolist() == [3, 1, 5]  # order-free
    assert geo.global_dimension(values) == 3


def test_projector_error_equals_dense_frobenius():
    U = torch.linalg.qr(torch.randn(4, 9, 3)).Q
    V = torch.linalg.qr(torch.randn(4, 9, 2)).Q
    dense = (U @ U.transpose(-1, -2) - V @ V.transpose(-1, -2)).norm(dim=(-2, -1))
    torch.testing.assert_close(geo.projector_error(U, V), dense)
    padded = torch.cat([V, torch.zeros(4, 9, 1)], -1)  # zero columns count as absent
    torch.testing.assert_close(geo.projector_error(U, padded), dense)
    assert geo.projector_error(U, U).abs().max() < 1e-6


def test_truncate_basis_keeps_first_columns_per_point():
    V = torch.ones(2, 5, 3)
    out = geo.truncate_basis(V, torch.tensor([1, 3]))
    assert out[0, :, 0].eq(1).all() and out[0, :, 1:].eq(0).all() and out[1].eq(1).all()


def test_intrinsic_gradient_is_G_times_gradient():
    A, g = random_factor(), torch.randn(5, 7)
    torch.testing.assert_close(
        geo.intrinsic_gradient(A, g), ((A @ A.transpose(-1, -2)) @ g.unsqueeze(-1)).squeeze(-1)
    )


def test_cdc_of_functions_is_J_G_Jt_by_autograd():
    A, x = random_factor(b=4, d=5, r=2), torch.randn(4, 5)
    W = torch.randn(3, 5)

    def f(z):
        return torch.tanh(z @ W.T)  # (B, 3)

    def g(z):
        return (z**2).sum(-1, keepdim=True)  # (B, 1)

    out = geo.cdc_of_functions(f, g, x, A)
    assert out.shape == (4, 3, 1)
    G = A @ A.transpose(-1, -2)
    for b in range(4):
        Jf = torch.autograd.functional.jacobian(lambda z: f(z[None])[0], x[b])
        Jg = torch.autograd.functional.jacobian(lambda z: g(z[None])[0], x[b])
        torch.testing.assert_close(out[b], Jf @ G[b] @ Jg.T)
    torch.testing.assert_close(geo.cdc_of_functions(f, None, x, A), geo.cdc_of_functions(f, f, x, A))


def test_range_project_onto_top_eigenvectors():
    Q = torch.linalg.qr(torch.randn(6, 3)).Q
    A = (Q * torch.tensor([1.0, 0.9, 0.01])).expand(2, 6, 3)  # two strong directions, one weak
    u = torch.randn(2, 6)
    top2 = Q[:, :2]
    expected = u @ top2 @ top2.T
    torch.testing.assert_close(geo.range_project(A, u), expected)  # gap rule picks d = 2
    torch.testing.assert_close(geo.range_project(A, u, 2), expected)
    torch.testing.assert_close(geo.range_project(A, u, 3), u @ Q @ Q.T)
    torch.testing.assert_close(geo.range_project(A, geo.range_project(A, u)), expected)  # idempotent


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_dtype_is_preserved(dtype):
    A = random_factor().to(dtype)
    assert geo.eigenpairs(A).vectors.dtype == dtype
    assert geo.lowrank_solve(A, torch.randn(5, 7, dtype=dtype), 0.1).dtype == dtype


def test_eigenpairs_of_a_vanishing_float32_factor_are_finite():
    """λ^{-1/2} of an eigenvalue below float32's range must not overflow: such directions count as zero."""
    A = torch.full((2, 5, 3), 1e-40, dtype=torch.float32)  # denormal entries, λ ≈ 1e-79
    A[1] = torch.randn(5, 3, dtype=torch.float32)
    pairs = geo.eigenpairs(A)
    assert torch.isfinite(pairs.vectors).all()
    assert (pairs.vectors[0] == 0).all()
    torch.testing.assert_close(pairs.vectors[1].T @ pairs.vectors[1], torch.eye(3, dtype=torch.float32),
                               atol=1e-5, rtol=0)


def test_eigenpairs_of_a_non_finite_row_are_nan_and_leave_other_rows_alone():
    """One NaN factor row gives NaN eigenpairs in that row only (eigh used to fail for the whole batch)."""
    from learned_manifold.geometry import eigenpairs

    A = torch.randn(4, 6, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    A[2, 1, 0] = float("nan")
    pairs = eigenpairs(A)
    clean = eigenpairs(A[[0, 1, 3]])
    assert torch.isnan(pairs.values[2]).all() and torch.isnan(pairs.vectors[2]).all()
    torch.testing.assert_close(pairs.values[[0, 1, 3]], clean.values)
    torch.testing.assert_close(pairs.vectors[[0, 1, 3]].abs(), clean.vectors.abs())


@pytest.mark.parametrize("power", [-1, 0, 1])
def test_spectral_apply_matches_the_dense_truncated_power(power):
    """Û_d Λ_d^p Û_dᵀ u against a dense eigendecomposition of G = AAᵀ (small D, float64)."""
    from learned_manifold.geometry import eigenpairs, spectral_apply

    g = torch.Generator().manual_seed(2)
    A, u = torch.randn(3, 6, 4, generator=g, dtype=torch.float64), torch.randn(3, 6, generator=g, dtype=torch.float64)
    values, vectors = torch.linalg.eigh(A @ A.transpose(-1, -2))
    lam, U = values.flip(-1)[:, :2], vectors.flip(-1)[:, :, :2]
    dense = U @ torch.diag_embed(lam.pow(power)) @ U.transpose(-1, -2)
    torch.testing.assert_close(spectral_apply(eigenpairs(A), u, 2, power=power), (dense @ u.unsqueeze(-1)).squeeze(-1))


def test_the_gap_rule_is_read_once_per_decomposition(monkeypatch):
    """The manifold applies one decomposition in proju, egrad2rgrad and inner at a point; the gap rule's
    dimensions were recomputed by each call (a third of a cached proju, tester E of the tenth round). Now once per
    `Eigenpairs`, with the same results as an explicit per-point ``d``."""
    from learned_manifold.geometry import eigenpairs, spectral_apply, truncate_basis

    g = torch.Generator().manual_seed(3)
    A = torch.randn(4, 6, 3, generator=g, dtype=torch.float64) * torch.tensor([1.0, 1.0, 0.01], dtype=torch.float64)
    u = torch.randn(4, 6, generator=g, dtype=torch.float64)
    pairs, calls = eigenpairs(A), []
    real = geo.intrinsic_dimension
    monkeypatch.setattr(geo, "intrinsic_dimension", lambda values: calls.append(1) or real(values))
    got = {p: spectral_apply(pairs, u, power=p) for p in (-1, 0, 1, 0)}
    dims = real(pairs.values)
    assert len(calls) == 1 and torch.equal(pairs.gap[0], dims)
    for power, out in got.items():
        torch.testing.assert_close(out, spectral_apply(eigenpairs(A), u, dims, power=power))
    assert torch.equal(pairs.gap[1], truncate_basis(pairs.vectors, dims))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU: the CUDA route for Grams above 32 x 32")
def test_gram_eigenpairs_above_cudas_batched_size_match_the_cpu():
    # PyTorch's batched CUDA eigh stops at 32 x 32; eigenpairs sends larger Grams to the CPU (SPEC §5)
    A = torch.randn(64, 48, 40, dtype=torch.float64)
    on_gpu, on_cpu = geo.eigenpairs(A.cuda()), geo.eigenpairs(A)
    assert on_gpu.vectors.device.type == "cuda"
    assert torch.allclose(on_gpu.values.cpu(), on_cpu.values)
    assert torch.allclose((on_gpu.vectors.cpu() @ on_gpu.vectors.cpu().mT), on_cpu.vectors @ on_cpu.vectors.mT)


@pytest.mark.parametrize("d", [0, -1, 4, True])
def test_a_dimension_outside_one_to_r_is_refused_not_sliced(d):
    """``d = -1`` projected onto all but one eigenvector (a Python slice), ``d = 0`` onto nothing."""
    A = torch.randn(2, 5, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    u = torch.randn(2, 5, dtype=torch.float64)
    with pytest.raises(ValueError, match="d must"):
        geo.range_project(A, u, d)
    with pytest.raises(ValueError, match="d must"):
        geo.spectral_apply(geo.eigenpairs(A), u, d)


def test_global_dimension_is_the_lower_median():
    """For an even count the lower of the two middle dimensions (an observed one): [1, 1, 2, 2] gives 1."""
    values = torch.tensor([[1.0, 1e-3, 1e-3], [1.0, 1e-3, 1e-3], [1.0, 1.0, 1e-3], [1.0, 1.0, 1e-3]])
    assert geo.intrinsic_dimension(values).tolist() == [1, 1, 2, 2]
    assert geo.global_dimension(values) == 1
    assert geo.global_dimension(values[1:]) == 2


@pytest.mark.parametrize("s", [0.9e-3, 1e-5])
def test_an_explicit_dimension_keeps_a_small_float64_eigenvalue(s):
    """G = diag(1, s², 0), d = 2, float64: λ₂/λ₁ = s² below the former fixed cut 1e-6 had zeroed e₂'s column, so
    proju(e₂) = 0 and inner(e₂, e₂) = 0 (truth 1/s²). The float64 Gram resolves it (`default_rel_eps`)."""
    A = torch.tensor([[1.0, 0.0], [0.0, s], [0.0, 0.0]], dtype=torch.float64).expand(1, 3, 2)
    e2 = torch.tensor([[0.0, 1.0, 0.0]], dtype=torch.float64)
    torch.testing.assert_close(geo.range_project(A, e2, 2), e2)
    inner = (e2 * geo.spectral_apply(geo.eigenpairs(A), e2, 2, power=-1)).sum(-1)
    torch.testing.assert_close(inner, torch.tensor([1 / s**2], dtype=torch.float64))
    assert geo.default_rel_eps(torch.float32) == 1e-6 and geo.default_rel_eps(torch.float64) < 1e-13


def test_a_dimension_beyond_the_rounding_cut_warns():
    """λ₂/λ₁ = 1e-18 is below the float64 Gram's rounding: its column is zero, and asking for d = 2 says so."""
    A = torch.tensor([[1.0, 0.0], [0.0, 1e-9], [0.0, 0.0]], dtype=torch.float64).expand(2, 3, 2)
    e2 = torch.tensor([[0.0, 1.0, 0.0]], dtype=torch.float64).expand(2, 3)
    with pytest.warns(UserWarning, match=r"d = 2 asks for more directions .* at 2 point\(s\) \(λ_d/λ₁ up to 1e-18\)"):
        assert (geo.range_project(A, e2, 2) == 0).all()
    with pytest.warns(UserWarning, match="d = 2 asks for more directions"):
        geo.spectral_apply(geo.eigenpairs(A), e2, 2, power=1)


def test_the_gap_rule_reads_zero_only_where_all_eigenvalues_are_zero():
    """Scale-free: tiny eigenvalues (a 0-dimensional set) still read 1..r; only G = 0 reads 0 (tester D, s34)."""
    values = torch.tensor([[1e-7, 1e-9, 0.0], [0.0, 0.0, 0.0], [1e-7, 0.9e-7, 0.0]])
    assert geo.intrinsic_dimension(values).tolist() == [1, 0, 2]


def test_the_dimension_cut_is_checked_once_per_decomposition():
    """`_warn_if_cut` reads the ``(B,)`` kept counts of `eigenpairs` once per decomposition and ``d``: it had scanned
    a ``(B, D)`` column and synced the device on every `spectral_apply` (+19% per call at D = 16384)."""
    A = torch.tensor([[1.0, 0.0], [0.0, 1e-9], [0.0, 0.0]], dtype=torch.float64).expand(2, 3, 2)
    pairs = geo.eigenpairs(A)
    assert pairs.kept.tolist() == [1, 1]
    u = torch.ones(2, 3, dtype=torch.float64)
    with pytest.warns(UserWarning, match="d = 2 asks for more directions"):
        geo.spectral_apply(pairs, u, 2, power=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        geo.spectral_apply(pairs, u, 2, power=1)  # the same decomposition: not checked (nor warned) again
        geo.spectral_apply(pairs, u, 1, power=0)
    assert pairs.checked_dims == {1, 2}


def test_a_decomposition_and_an_explicit_dimension_it_keeps_cost_one_host_sync(monkeypatch):
    """C (s32): `_warn_if_cut` synced on every decomposition (every optimiser step with an int ``tangent_dim``), on
    top of `eigenpairs`' finite-row check. Both now read one ``tolist``: no sync of its own where ``d`` is at most
    the fewest kept columns, and a decomposition that cuts ``d`` still warns, every time."""
    syncs = []
    for name in ("__bool__", "item", "tolist"):
        original = getattr(torch.Tensor, name)
        monkeypatch.setattr(torch.Tensor, name, lambda t, *a, _f=original, _n=name: syncs.append(_n) or _f(t, *a))
    A, u = random_factor(b=4, d=5, r=3), torch.ones(4, 5)
    pairs = geo.eigenpairs(A)
    out = geo.spectral_apply(pairs, u, 2)
    assert len(syncs) == 1 and pairs.least_kept == 3
    monkeypatch.undo()
    U = torch.linalg.eigh(A @ A.mT).eigenvectors[..., -2:]  # the closed form: the top-2 projector
    torch.testing.assert_close(out, (U @ U.mT @ u.unsqueeze(-1)).squeeze(-1))
    cut = torch.tensor([[1.0, 0.0], [0.0, 1e-9], [0.0, 0.0]], dtype=torch.float64).expand(2, 3, 2)
    for _ in range(3):  # each new decomposition of a cut factor warns
        with pytest.warns(UserWarning, match="d = 2 asks for more directions"):
            geo.spectral_apply(geo.eigenpairs(cut), u[:2, :3], 2)
