"""Inside ``torch.func`` transforms: the path functions refuse at their entry with one clear message (they failed
with four different torch-internal errors), and the landing projection refuses reverse-mode transforms, whose
gradient through its ``no_grad`` iteration came out as silent zeros (tester report B, #4 and #5); and the probes the
library shares (`differentiating`, `forward_mode`, `vmapped`, `unwrapped`)."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor
from torch.autograd import forward_ad

from learned_manifold import LearnedDataManifold, curvature, geodesic, gradient_flow, interpolate, manifold_cache
from learned_manifold.func_transforms import (
    differentiating,
    forward_mode,
    reverse_wrapped,
    transform_active,
    unwrapped,
    vmapped,
)
from learned_manifold.metrics.base import CoMetricField

F64 = torch.float64


class UnitSphere(CoMetricField):
    """S² in R³: the tangent projector ``I − n nᵀ`` as factor (``(B, 3, 3)``), the exact denoiser ``x / |x|``."""

    dim, low_rank = 3, True

    def factor(self, x: Tensor, *, sigma: float | Tensor | None = None) -> Tensor:
        n = x / x.norm(dim=-1, keepdim=True)
        return torch.eye(3, dtype=x.dtype) - n.unsqueeze(-1) * n.unsqueeze(-2)

    def project(self, x: Tensor, *, sigma: float | Tensor | None = None) -> Tensor:
        return x / x.norm(dim=-1, keepdim=True)

    @property
    def can_project(self) -> bool:
        return True


def _points() -> Tensor:
    """Two points 5% off the unit sphere, ``(2, 3)``."""
    return 1.05 * torch.nn.functional.normalize(torch.tensor([[0.3, -0.5, 0.8], [-0.6, 0.2, 0.4]], dtype=F64), dim=-1)


TRANSFORMS = {
    "grad": lambda f, x: torch.func.grad(f)(x),
    "jacrev": lambda f, x: torch.func.jacrev(f)(x),
    "jacfwd": lambda f, x: torch.func.jacfwd(f)(x),
    "vmap": lambda f, x: torch.func.vmap(f)(x.unsqueeze(0)),
}


@pytest.mark.parametrize("transform", TRANSFORMS)
@pytest.mark.parametrize("name", ["geodesic", "interpolate", "gradient_flow", "curvature"])
def test_path_functions_refuse_every_transform_naming_themselves(name, transform):
    """One ``RuntimeError`` naming the function and saying its results are not differentiable, whatever the
    transform, also where the differentiated input does not reach the function (a constant captured inside)."""
    field, x0 = UnitSphere(), _points()
    x1 = torch.nn.functional.normalize(x0.flip(-1), dim=-1)
    calls = {
        "geodesic": lambda x: geodesic(field, x, x1, n_points=5).length.sum(),
        "interpolate": lambda x: interpolate(field, x, x1, n_points=5).path.sum(),
        "gradient_flow": lambda x: gradient_flow(field, lambda y: y[:, 0], x, n_points=3).path.sum(),
        "curvature": lambda x: curvature(field, x).scalar.sum(),
    }
    with pytest.raises(RuntimeError, match=f"^{name} cannot run inside a torch.func transform.*not differentiable"):
        TRANSFORMS[transform](calls[name], x0)
    with pytest.raises(RuntimeError, match=f"^{name} cannot run inside a torch.func transform"):
        torch.func.grad(lambda c: calls[name](x0) * c)(torch.tensor(1.0, dtype=F64))


def test_path_functions_still_run_outside_transforms():
    field, x0 = UnitSphere(), _points()
    assert not transform_active()
    assert torch.isfinite(curvature(field, x0).scalar).all()


@pytest.mark.parametrize("method", ["projx", "retr"])
@pytest.mark.parametrize("transform", ["grad", "jacrev"])
def test_landing_refuses_reverse_mode_transforms_instead_of_zero_gradients(method, transform):
    """``torch.func.grad`` through the ``no_grad`` landing gave all zeros, while the landed point ``x / |x|`` moves
    with ``x`` (finite differences, ``jacfwd``); plain autograd refuses too (no ``grad_fn``)."""
    M = LearnedDataManifold(UnitSphere(), landing=True)
    c = torch.tensor([0.3, -0.5, 0.8], dtype=F64)
    step = {"projx": lambda y: M.projx(y), "retr": lambda y: M.retr(y, torch.zeros_like(y))}[method]
    with pytest.raises(RuntimeError, match="not differentiable by reverse-mode torch.func transforms"):
        TRANSFORMS[transform](lambda y: (step(y) @ c).sum(), _points())


class FramedSphere(UnitSphere):
    """`UnitSphere` with the rank-2 factor ``[t₁, t₂/2]`` (``t₁ ∝ e × n``, ``t₂ = n × t₁``): the same tangent planes,
    distinct eigenvalues 1 and 1/4 (tied ones have no forward-mode eigenvector derivative)."""

    def factor(self, x: Tensor, *, sigma: float | Tensor | None = None) -> Tensor:
        n = x / x.norm(dim=-1, keepdim=True)
        e = torch.ones_like(n) / 3**0.5
        t1 = torch.nn.functional.normalize(torch.linalg.cross(e, n), dim=-1)
        return torch.stack([t1, 0.5 * torch.linalg.cross(n, t1)], dim=-1)


def test_landing_under_forward_mode_and_where_no_gradient_reaches_it_is_not_refused():
    """Forward mode differentiates the landing iterations (here ``d(x/|x|) = (I − n nᵀ)/|x|``, exact after one
    step); a reverse-mode gradient with respect to something the landed points do not depend on is right as is."""
    M = LearnedDataManifold(FramedSphere(), landing=True, tangent_dim=2)
    x = _points()
    n, r = x / x.norm(dim=-1, keepdim=True), x.norm(dim=-1)
    jac = torch.func.jacfwd(lambda y: M.projx(y))(x)  # (2, 3, 2, 3)
    for i in range(2):
        expected = (torch.eye(3, dtype=F64) - torch.outer(n[i], n[i])) / r[i]
        torch.testing.assert_close(jac[i, :, i], expected, atol=1e-8, rtol=0)
    c = torch.tensor([0.3, -0.5, 0.8], dtype=F64)
    grad = torch.func.grad(lambda w: (M.projx(x) @ w).sum())(c)
    torch.testing.assert_close(grad, n.sum(0))


def test_reverse_wrapped_sees_grad_levels_only():
    """Depending on the input of ``grad``/``jacrev`` (also beneath ``vmap`` or inside ``jvp``): yes; wrapped by
    ``jvp``/``vmap`` alone, not at all, or computed inside ``grad`` from a constant only: no."""
    seen: list[bool] = []

    def probe(t: Tensor) -> Tensor:
        seen.append(reverse_wrapped(t))
        return t.sum()

    x = torch.ones(3, dtype=F64)
    torch.func.grad(probe)(x)
    torch.func.jvp(probe, (x,), (x,))
    torch.func.vmap(probe)(x.unsqueeze(0))
    torch.func.grad(lambda c: probe(x) * c)(torch.tensor(1.0, dtype=F64))
    torch.func.grad(lambda c: probe(x + 1) * c)(torch.tensor(1.0, dtype=F64))  # wrapped, but a constant
    torch.func.grad(lambda y: torch.func.jvp(probe, (y,), (y,))[1])(x)
    torch.func.vmap(torch.func.grad(probe))(x.unsqueeze(0))
    probe(x)
    assert seen == [True, False, False, False, False, True, True, False]


def test_differentiating_sees_derivative_transforms_and_dual_levels_but_not_vmap_alone():
    """``grad``, ``jacrev``, ``vjp``, ``jvp``, ``jacfwd`` (also beneath or around ``vmap``) and an open
    ``forward_ad`` dual level differentiate; ``vmap`` alone, nested or not, derives nothing (review finding 4: the
    score fields had left their fused fast path under ``vmap``); `forward_mode` (the factor cache) still sees every
    transform."""
    seen: dict[str, set[tuple[bool, bool]]] = {}

    def probe(label: str):
        def f(t: Tensor) -> Tensor:
            seen.setdefault(label, set()).add((differentiating(), forward_mode(t)))
            return t.sum()
        return f

    x = torch.ones(3, dtype=F64)
    probe("none")(x)
    torch.func.vmap(probe("vmap"))(x.unsqueeze(0))
    torch.func.vmap(torch.func.vmap(probe("vmap vmap")))(x[None, None])
    torch.func.grad(probe("grad"))(x)
    torch.func.jacrev(probe("jacrev"))(x)
    torch.func.vjp(probe("vjp"), x)
    torch.func.jvp(probe("jvp"), (x,), (x,))
    torch.func.jacfwd(probe("jacfwd"))(x)
    torch.func.vmap(torch.func.grad(probe("vmap grad")))(x.unsqueeze(0))
    torch.func.grad(lambda y: torch.func.vmap(probe("grad vmap"))(y.unsqueeze(0)).sum())(x)
    with forward_ad.dual_level():
        probe("dual level")(x)
    assert seen == {"none": {(False, False)}, "vmap": {(False, True)}, "vmap vmap": {(False, True)},
                    **{label: {(True, True)} for label in ("grad", "jacrev", "vjp", "jvp", "jacfwd", "vmap grad",
                                                           "grad vmap", "dual level")}}


def test_unwrapped_holds_every_vmapped_copy_and_the_cache_reads_the_same_probes():
    """Under ``vmap`` (beneath ``grad`` too) `unwrapped` is the plain tensor with every vmapped row, `vmapped` sees
    the batched points only; outside, a tensor is its own plain tensor. The factor cache's probes are these."""
    x, c = torch.arange(6.0, dtype=F64).reshape(2, 3), torch.ones(3, dtype=F64)
    seen = []

    def probe(row: Tensor) -> Tensor:
        plain = unwrapped(row)
        seen.append((plain.shape, torch.equal(plain, x), vmapped(row), vmapped(c), unwrapped(c) is c))
        return (row * c).sum()

    torch.func.vmap(probe)(x)
    torch.func.grad(lambda y: torch.func.vmap(probe)(y).sum())(x)
    assert seen == [(x.shape, True, True, False, True)] * 2
    assert unwrapped(x) is x and not vmapped(x)
    assert manifold_cache.forward_mode is forward_mode and manifold_cache.vmapped is vmapped
