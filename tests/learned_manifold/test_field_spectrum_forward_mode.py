"""Forward-mode derivatives (``torch.func.jvp``, ``jacfwd``, ``forward_ad``) through the dense route of
`field_eigenpairs` (SPEC §5) where eigenvalues tie exactly: exact, as the reverse-mode gradients are (`spectral_grad`).
A field without a low-rank factor had gone through plain ``eigh``, whose forward derivative divides by
``λ_j − λ_i``: NaN tangents of `tangent_error` on ``I − n̂n̂ᵀ + 0.1 I`` (tester D, s37)."""

from __future__ import annotations

import torch
from torch import Tensor
from torch.autograd import forward_ad

from learned_manifold.evaluation import field_eigenpairs, tangent_error
from learned_manifold.geometry import spectral_apply
from learned_manifold.metrics.base import CoMetricField
from tests.learned_manifold.test_evaluation_dense_gradients import TiedBlock

F64 = torch.float64


class DenseSphereProjector(CoMetricField):
    """``G(x) = I − n̂n̂ᵀ + c I``, ``n̂ = x/|x|`` in ``R³``, without a low-rank factor: eigenvalues ``1 + c`` (exactly
    tied, the tangent plane of the sphere through ``x``) and ``c``."""

    def __init__(self, c: float) -> None:
        super().__init__()
        self.c = c

    def apply(self, x: Tensor, w: Tensor) -> Tensor:
        n = x / x.norm(dim=-1, keepdim=True)
        return w - (n * w).sum(-1, keepdim=True) * n + self.c * w

    def metric(self, x: Tensor, v: Tensor) -> Tensor:  # pragma: no cover - not used here
        raise NotImplementedError


def _points() -> tuple[Tensor, Tensor, Tensor]:
    """Points ``x`` ``(4, 3)``, tangents ``v`` of them and a vector ``u`` ``(4, 3)``, float64."""
    g = torch.Generator().manual_seed(3)
    return (torch.randn(4, 3, generator=g, dtype=F64), torch.randn(4, 3, generator=g, dtype=F64),
            torch.randn(4, 3, generator=g, dtype=F64))


def _central_difference(f, x: Tensor, v: Tensor, h: float = 1e-6) -> Tensor:
    return (f(x + h * v) - f(x - h * v)) / (2 * h)


def _tangent_projection(field: CoMetricField, u: Tensor):
    """``x ↦ U₂U₂ᵀ u`` ``(B, 3)``: the projection onto the top two eigenvectors, which do not split the tie."""

    def f(x: Tensor) -> Tensor:
        top = field_eigenpairs(field, x).vectors[..., :2]
        return (top @ (top.transpose(-1, -2) @ u.unsqueeze(-1))).squeeze(-1)

    return f


def test_forward_mode_derivatives_of_a_dense_fields_tangent_projector_are_exact_where_eigenvalues_tie():
    """``jvp`` and ``jacfwd`` of the projector onto the tied top eigenvectors (and of `tangent_error` against a fixed
    basis), with and without ``no_grad``: finite, equal to central differences and to each other; values unchanged."""
    x, v, u = _points()
    basis = torch.linalg.qr(torch.randn(4, 3, 2, generator=torch.Generator().manual_seed(4), dtype=F64)).Q
    for c in (0.0, 0.1):
        field = DenseSphereProjector(c)
        for f in (_tangent_projection(field, u), lambda y, field=field: tangent_error(field, y, basis)):
            for grad_mode in (torch.enable_grad, torch.no_grad):
                with grad_mode():
                    value, tangent = torch.func.jvp(f, (x,), (v,))
                    jacobian = torch.func.jacfwd(f)(x)  # (*out, 4, 3)
            assert torch.isfinite(tangent).all()
            expected = _central_difference(f, x, v)
            torch.testing.assert_close(tangent, expected, rtol=0, atol=1e-7 * (1 + expected.abs().max().item()))
            through_jacobian = (jacobian.reshape(tangent.numel(), -1) @ v.flatten()).reshape(tangent.shape)
            torch.testing.assert_close(through_jacobian, tangent, rtol=0, atol=1e-10)
            assert torch.equal(value, f(x))


def test_forward_mode_derivative_of_a_restricted_power_at_a_tie_lies_within_the_tied_block():
    """``c · G₂^p u`` at ``s = 0`` (`TiedBlock`: the top two eigenvalues tie at 1 and split as ``1 ± s``): its
    derivative in ``s`` is ``±(c₁u₂ + c₂u₁)`` for ``p = ±1``, carried by `Eigenpairs.within` under ``jvp`` too."""
    x = torch.tensor([[0.3, 0.0, -0.2], [1.0, 0.0, 0.5]], dtype=F64)
    v = torch.tensor([[0.4, 1.0, 0.3], [-0.7, 1.0, 0.2]], dtype=F64)
    u, c = torch.tensor([0.7, -1.1, 0.4], dtype=F64), torch.tensor([0.5, 2.0, -0.3], dtype=F64)
    for power in (1, -1):
        def f(y: Tensor, power: int = power) -> Tensor:
            return spectral_apply(field_eigenpairs(TiedBlock(), y), u.expand_as(y), 2, power=power) @ c

        tangent = torch.func.jvp(f, (x,), (v,))[1]
        torch.testing.assert_close(tangent, torch.full((2,), power * float(c[0] * u[1] + c[1] * u[0]), dtype=F64))
        torch.testing.assert_close(tangent, _central_difference(f, x, v), rtol=0, atol=1e-8)


def test_a_dual_point_takes_the_tie_safe_route_and_a_plain_one_keeps_eigh():
    """A ``forward_ad`` dual point gets `Eigenpairs.within` and exact tangents; a plain point, also inside an open dual
    level and under ``no_grad``, keeps the plain ``eigh`` (no ``within``: no cost on the plain path), same values."""
    x, v, u = _points()
    field = DenseSphereProjector(0.0)
    with forward_ad.dual_level():
        pairs = field_eigenpairs(field, forward_ad.make_dual(x, v))
        top = pairs.vectors[..., :2]
        tangent = forward_ad.unpack_dual((top @ (top.transpose(-1, -2) @ u.unsqueeze(-1))).squeeze(-1)).tangent
        with torch.no_grad():
            plain = field_eigenpairs(field, x)
    assert pairs.within is not None and plain.within is None
    torch.testing.assert_close(forward_ad.unpack_dual(pairs.values).primal, plain.values, rtol=0, atol=1e-15)
    expected = _central_difference(_tangent_projection(field, u), x, v)
    torch.testing.assert_close(tangent, expected, rtol=0, atol=1e-7)


def test_float32_forward_derivatives_at_a_tie_match_float64():
    """In float32 rounding splits the tie by ~1e-8; those pairs count as tied, so the float32 tangent is the float64
    one to float32's accuracy."""
    x, v, u = _points()
    tangents = [torch.func.jvp(_tangent_projection(DenseSphereProjector(0.0), u.to(dtype)), (x.to(dtype),),
                               (v.to(dtype),))[1].double() for dtype in (torch.float32, F64)]
    torch.testing.assert_close(tangents[0], tangents[1], rtol=0, atol=1e-4 * tangents[1].abs().max().item())
