"""geoopt's manifold and optimiser contract, checked on `LearnedDataManifold` in every mode.

Origin: the checks of geoopt's own ``tests/test_manifold_basic.py``, ``tests/test_rsgd.py`` and
``tests/test_adam.py`` (geoopt, MIT licence; pip packages do not ship tests, so they are re-created here from
the documented contract in /work/shared/notes/geoopt.md §5): projx idempotent and landing on the manifold, proju
idempotent and tangent, ``retr(x, 0) = x``, inner symmetric and positive, transp into the tangent space at ``y``,
egrad2rgrad tangent, the checks accepting valid and refusing invalid input, batched = per item, the ``inner``
shape rules, and RSGD/RAdam (momentum, Nesterov, amsgrad, stabilize) converging to a known constrained optimum,
leaving parameters unchanged under a zero gradient and surviving a state-dict round trip.

Modes: the learned S² (fixture ``sphere_model``) with δ = 0, δ > 0, landing with δ = 0 and landing with δ > 0,
and the closed-form ``FixedSubspaceField`` (span(Q) in R⁵) with δ = 0 and δ > 0.

Not applicable, with the reason:
- ``random`` / ``origin``: a learned manifold has no intrinsic sampler (``random`` raises NotImplementedError).
- ``expmap`` / ``logmap`` / ``dist``: no closed form; ``expmap`` raises and points to ``geodesic`` (tested in
  test_manifold.py); geoopt skips ``logmap``/``dist`` on NotImplementedError, and so do we, by not calling them.
- ``test_reversibility``: gated by ``reversible``, which is False (projection transport is not an isometry).
- Convergence on the learned S² without landing: the manifold is then the learned tangent bundle (δ = 0) or
  R³ with a metric (δ > 0), which does not confine iterates to the sphere, so a linear objective has no
  minimiser there; those modes converge on the closed-form subspace, whose optimum is known exactly.
"""

import copy

import geoopt
import pytest
import torch

from learned_manifold import LearnedDataManifold, RiemannianAdam, RiemannianSGD
from tests.conftest import FixedSubspaceField

Q = torch.linalg.qr(torch.randn(5, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)).Q
C = torch.tensor([0.0, 0.0, 1.0])
MODES = ["s2-delta0", "s2-delta", "s2-landing", "s2-landing-delta", "subspace-delta0", "subspace-delta"]


def _sphere(n, seed):
    return torch.nn.functional.normalize(torch.randn(n, 3, generator=torch.Generator().manual_seed(seed)), dim=-1)


@pytest.fixture(params=MODES)
def case(request, sphere_model):
    """(name, manifold, points on it, ambient points, ambient vectors, tolerance)."""
    name = request.param
    g = torch.Generator().manual_seed(11)
    if name.startswith("s2"):
        M = LearnedDataManifold(sphere_model, delta=0.05 if name.endswith("delta") else 0.0,
                                landing="landing" in name)
        x = _sphere(5, 1)
        x = M.projx(x) if M.landing else x
        return name, M, x, 1.1 * _sphere(5, 2), torch.randn(5, 3, generator=g), 1e-4
    M = LearnedDataManifold(FixedSubspaceField(Q, 0.0 if name.endswith("delta0") else 0.05))
    x = torch.randn(5, 2, generator=g, dtype=torch.float64) @ Q.T
    return name, M, x, torch.randn(5, 5, generator=g, dtype=torch.float64), \
        torch.randn(5, 5, generator=g, dtype=torch.float64), 1e-8


# -- test_manifold_basic ----------------------------------------------------------------------------------------
def test_projection_identity(case):
    """projx(x) = x for a point on the manifold, and projx is idempotent on any ambient point."""
    _, M, x, ex, _, _ = case
    assert torch.equal(M.projx(x), x)
    px = M.projx(ex)
    assert torch.equal(M.projx(px), px)


def test_projection_via_assert(case):
    _, M, _, ex, _, _ = case
    M.assert_check_point_on_manifold(M.projx(ex))


def test_vector_projection_is_tangent_and_idempotent(case):
    _, M, x, _, ev, tol = case
    v = M.proju(x, ev)
    M.assert_check_vector_on_tangent(x, v, atol=tol, rtol=tol)
    torch.testing.assert_close(M.proju(x, v), v, atol=tol, rtol=tol)


def test_retr_of_zero_is_the_point(case):
    _, M, x, _, _, _ = case
    assert torch.equal(M.retr(x, torch.zeros_like(x)), x)


def test_retr_lands_on_the_manifold(case):
    _, M, x, _, ev, _ = case
    M.assert_check_point_on_manifold(M.retr(x, 0.05 * ev))


def test_inner_is_symmetric_and_positive(case):
    _, M, x, _, ev, tol = case
    u, v = M.proju(x, ev), M.proju(x, ev.flip(0))
    torch.testing.assert_close(M.inner(x, u, v), M.inner(x, v, u), atol=tol, rtol=tol)
    assert (M.inner(x, u) > 0).all()
    torch.testing.assert_close(M.norm(x, u) ** 2, M.inner(x, u), atol=tol, rtol=tol)


def test_transp_lands_in_the_tangent_space_at_y(case):
    _, M, x, _, ev, tol = case
    y = M.retr(x, 0.1 * M.proju(x, ev))
    v = M.transp(x, y, M.proju(x, ev.flip(0)))
    M.assert_check_vector_on_tangent(y, v, atol=tol, rtol=tol)
    y2, v2 = M.retr_transp(x, 0.1 * M.proju(x, ev), M.proju(x, ev.flip(0)))
    torch.testing.assert_close(y2, y)
    torch.testing.assert_close(v2, v)


def test_egrad2rgrad_is_tangent(case):
    _, M, x, _, ev, tol = case
    M.assert_check_vector_on_tangent(x, M.egrad2rgrad(x, ev), atol=tol, rtol=tol)


def test_checks_refuse_invalid_input(case):
    """NaN and wrong shapes are never points; a normal vector is not tangent for δ = 0; with landing, a point off
    the data is not a point."""
    name, M, x, _, _, _ = case
    assert not M.check_point_on_manifold(torch.full_like(x, float("nan")))
    assert not M.check_point_on_manifold(torch.zeros(2, x.shape[-1] + 1, dtype=x.dtype))
    assert not M.check_vector_on_tangent(x, torch.full_like(x, float("nan")))
    if M.delta == 0:
        off = torch.eye(5, dtype=x.dtype) - Q @ Q.T  # projector onto the subspace's normal space
        normal = x if name.startswith("s2") else torch.ones_like(x) @ off
        ok, reason = M.check_vector_on_tangent(x, normal, explain=True)
        assert not ok and "tangent" in reason
    if M.landing:
        assert not M.check_point_on_manifold(1.1 * x)


def test_broadcast_equals_per_item(case):
    _, M, x, _, ev, tol = case
    batched = (M.projx(x), M.proju(x, ev), M.egrad2rgrad(x, ev), M.retr(x, 0.05 * ev), M.inner(x, ev))
    for i in range(x.shape[0]):
        single = (M.projx(x[i]), M.proju(x[i], ev[i]), M.egrad2rgrad(x[i], ev[i]), M.retr(x[i], 0.05 * ev[i]),
                  M.inner(x[i], ev[i]))
        for b, s in zip(batched, single, strict=True):
            torch.testing.assert_close(b[i], s, atol=10 * tol, rtol=1e-4)


def test_ndim_expected_behaviour(case):
    """inner reduces the data axes: dim = u.dim() - ndim, or u.dim() with keepdim (geoopt's test_euclidean)."""
    _, M, x, _, ev, _ = case
    assert M.inner(x, ev).dim() == ev.dim() - M.ndim
    assert M.inner(x, ev, keepdim=True).dim() == ev.dim()
    assert M.component_inner(x, ev).shape == (x.shape[0], 1)


def test_not_applicable_primitives_raise(case):
    _, M, x, _, ev, _ = case
    with pytest.raises(NotImplementedError):
        M.random(3, 3)
    with pytest.raises(NotImplementedError):
        M.expmap(x, ev)
    assert M.reversible is False


# -- test_rsgd / test_adam -------------------------------------------------------------------------------------
OPTIMISERS = {
    "sgd": lambda p, M: RiemannianSGD([p], manifold=M, lr=0.2),
    "sgd-momentum": lambda p, M: RiemannianSGD([p], manifold=M, lr=0.1, momentum=0.8, dampening=0.1),
    "sgd-nesterov-stabilize": lambda p, M: RiemannianSGD([p], manifold=M, lr=0.1, momentum=0.8, nesterov=True,
                                                         stabilize=3),
    "adam": lambda p, M: RiemannianAdam([p], manifold=M, lr=0.05),
    "adam-amsgrad-stabilize": lambda p, M: RiemannianAdam([p], manifold=M, lr=0.05, amsgrad=True, stabilize=3),
    "geoopt-sgd-momentum": lambda p, M: geoopt.optim.RiemannianSGD(
        [geoopt.ManifoldParameter(p, manifold=M)], lr=0.1, momentum=0.8),
}


def _minimise(make, M, start, loss, steps):
    p = torch.nn.Parameter(start.clone())
    opt = make(p, M)
    param = opt.param_groups[0]["params"][0]
    for _ in range(steps):
        opt.zero_grad()
        loss(param).backward()
        opt.step()
    opt.load_state_dict(copy.deepcopy(opt.state_dict()))  # as geoopt's tests: round trip, then one more step
    opt.zero_grad()
    loss(param).backward()
    opt.step()
    assert param.is_contiguous()
    return param.detach()


@pytest.mark.parametrize("kind", list(OPTIMISERS))
@pytest.mark.parametrize("delta", [0.0, 0.5])
def test_convergence_to_the_constrained_optimum_on_a_subspace(kind, delta):
    """min ½‖x − t‖²: on span(Q) (δ = 0) the optimum is QQᵀt; on R⁵ with the metric (δ > 0) it is t.

    δ = 0.5 here: normal directions move at rate δ, so a small δ is merely slow (the optimum is the same)."""
    M = LearnedDataManifold(FixedSubspaceField(Q, delta))
    t = torch.randn(5, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    start = (torch.randn(3, 2, generator=torch.Generator().manual_seed(4), dtype=torch.float64) @ Q.T)
    x = _minimise(OPTIMISERS[kind], M, start, lambda p: 0.5 * (p - t).pow(2).sum(), steps=400)
    target = Q @ Q.T @ t if delta == 0 else t
    torch.testing.assert_close(x, target.expand_as(x), atol=2e-3, rtol=0)


@pytest.mark.parametrize("kind", list(OPTIMISERS))
@pytest.mark.parametrize("delta", [0.0, 0.05])
def test_convergence_to_the_top_of_the_learned_sphere_with_landing(sphere_model, kind, delta):
    """min −cᵀx on the learned S² with landing: the optimum is the pole c (up to the landing's inward shift)."""
    M = LearnedDataManifold(sphere_model, landing=True, delta=delta)
    start = M.projx(_sphere(3, 5) + torch.tensor([0.0, 0.0, 0.5]))
    x = _minimise(OPTIMISERS[kind], M, start, lambda p: -(p @ C).sum(), steps=120)
    assert (x @ C).min() > 0.97, x
    M.assert_check_point_on_manifold(x)


@pytest.mark.parametrize("kind", list(OPTIMISERS))
def test_zero_gradient_leaves_parameters_unchanged(case, kind):
    _, M, x, _, _, _ = case
    out = _minimise(OPTIMISERS[kind], M, x, lambda p: 0.0 * p.sum(), steps=4)
    assert torch.equal(out, x)
