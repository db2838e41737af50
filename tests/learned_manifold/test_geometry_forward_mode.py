"""Forward-mode derivatives (``torch.func.jvp``, ``jacfwd``, ``forward_ad``) of the low-rank geometry (SPEC §5) where
eigenvalues tie: exact, as the reverse-mode gradients are (`spectral_grad`). ``eigh``'s own forward derivative
divides by ``λ_j − λ_i``: on the sphere's projector field (eigenvalues exactly 1, 1, 0) it gave NaN tangents, or
O(1) wrong ones where rounding split the tie by ~1e-16. A factor carrying a tangent now takes the tie-safe path
(`geometry.eigenpairs`), under ``no_grad`` too (landing's), with the same values."""

import pytest
import torch
from torch.autograd import forward_ad

from learned_manifold import geometry as geo
from tests.learned_manifold.test_geometry import float64, random_factor  # noqa: F401
from tests.learned_manifold.test_geometry_gradients import FACTORS, MAPS, sphere_projector_factor

# (float64: test_geometry's autouse fixture)

FORWARD_FACTORS = {**FACTORS, "wide (r > D)": lambda: random_factor(b=3, d=3, r=5)}


def _inputs(factor: str) -> tuple[torch.Tensor, ...]:
    """A factor ``(B, D, r)``, vectors ``u`` ``(B, D)``, and random tangents of both."""
    A = FORWARD_FACTORS[factor]()
    g = torch.Generator().manual_seed(5)
    u = torch.randn(A.shape[0], A.shape[1], generator=g)
    return A, u, torch.randn(A.shape, generator=g), torch.randn(u.shape, generator=g)


def _central_difference(f, A, u, dA, du, h=1e-6):
    return (f(A + h * dA, u + h * du) - f(A - h * dA, u - h * du)) / (2 * h)


@pytest.mark.parametrize("factor", FORWARD_FACTORS)
@pytest.mark.parametrize("name", MAPS)
def test_forward_mode_derivatives_are_exact_where_eigenvalues_tie(factor, name):
    """``torch.func.jvp`` with respect to ``A`` and ``u``, under ``no_grad`` as landing runs it: finite, equal to
    central differences (float64) and to ``jacfwd``; its value bit for bit the plain call's."""
    A, u, dA, du = _inputs(factor)
    f = MAPS[name]
    with torch.no_grad():
        value, tangent = torch.func.jvp(f, (A, u), (dA, du))
        jac_A, jac_u = torch.func.jacfwd(f, argnums=(0, 1))(A, u)  # (*out, B, D, r), (*out, B, D)
    assert torch.isfinite(tangent).all()
    expected = _central_difference(f, A, u, dA, du)
    torch.testing.assert_close(tangent, expected, rtol=0, atol=1e-6 * (1 + expected.abs().max().item()))
    through_jac = (jac_A.reshape(tangent.numel(), -1) @ dA.flatten() + jac_u.reshape(tangent.numel(), -1)
                   @ du.flatten()).reshape(tangent.shape)
    torch.testing.assert_close(through_jac, tangent, rtol=0, atol=1e-10 * (1 + tangent.abs().max().item()))
    if not factor.startswith("wide"):  # (the Gram route, as with a gradient; a plain wide factor takes G's own)
        assert torch.equal(value, f(A, u))


def test_a_dual_tensor_takes_the_tie_safe_path_and_the_hot_path_stays_plain():
    """A ``forward_ad`` dual factor gets `Eigenpairs.within` (the tie-safe derivative) and the projector's exact
    derivative; a plain factor, also inside an open dual level, keeps the plain decomposition (no ``within``)."""
    A, u, dA, _ = _inputs("sphere projector")
    with forward_ad.dual_level():
        dual = forward_ad.make_dual(A, dA)
        pairs = geo.eigenpairs(dual)
        assert pairs.within is not None and geo.eigenpairs(A).within is None
        tangent = forward_ad.unpack_dual(geo.range_project(dual, u, 2)).tangent
    expected = _central_difference(lambda B, v: geo.range_project(B, v, 2), A, u, dA, torch.zeros_like(u))
    torch.testing.assert_close(tangent, expected, rtol=0, atol=1e-6)


def test_float32_forward_derivatives_where_eigenvalues_tie_match_float64():
    """A float32 projector's Gram splits the tie by ~1e-8: those pairs count as tied (`spectral_grad.tie_eps`), so
    the float32 tangent is the float64 one to float32's accuracy, not O(1) off."""
    tangents = []
    for dtype in (torch.float32, torch.float64):
        A = sphere_projector_factor().float().to(dtype)
        g = torch.Generator().manual_seed(5)
        u = torch.randn(A.shape[0], 3, generator=g).to(dtype)
        dA = torch.randn(A.shape, generator=g).to(dtype)
        tangent = torch.func.jvp(lambda B, v: geo.range_project(B, v, 2), (A, u), (dA, torch.zeros_like(u)))[1]
        tangents.append(tangent.double())
    torch.testing.assert_close(tangents[0], tangents[1], rtol=0, atol=1e-5 * tangents[1].abs().max().item())
