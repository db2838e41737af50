"""geoopt's own manifold, RSGD and Adam tests, ported to `LearnedDataManifold` in every mode (issue 13).

Origin: ported from geoopt (github.com/geoopt/geoopt, Apache-2.0, see its LICENSE file) tests/test_manifold_basic.py,
tests/test_rsgd.py and tests/test_adam.py @ 07598cdbf8751770c4dcd78d509cd678a67ce85b (master HEAD, 2026-04-22;
the stored copies the read_file tool served first were older versions, at 089e1c02…, 08129249… and 03cfd829…,
so the newest snapshot was read instead). The checks are geoopt's, in geoopt's order and under geoopt's names;
the code is written anew. geoopt's manifold-specific fixtures (``unary_case``: point ``x``, its ambient pre-image
``ex``, a tangent vector ``v`` and its pre-image ``ev``, with closed-form references) become one case per mode:

- ``s2-delta0``, ``s2-delta``: the learned S² (fixture ``sphere_model``) with δ = 0 and δ = 0.05; no landing,
  so ``projx`` is the identity and ``x = ex`` (geoopt's Euclidean case). References: the true sphere's tangent
  projection ``(I − x xᵀ) ev`` for δ = 0 (to the learned tangent accuracy), ``ev`` itself for δ > 0.
- ``s2-landing``, ``s2-landing-delta``: the same with landing; ``x`` is a landed point and ``ex = 1.05 x`` is
  moved along the true normal, so the normal-only landing must bring it back to ``x``.
- ``subspace-delta0``, ``subspace-delta``: the closed-form ``FixedSubspaceField`` (span(Q) in R⁵): exact
  references (``QQᵀ ev`` and ``ev``), geoopt's tolerances.

geoopt's fixtures are kept: float64 as the default dtype, every case also wrapped in ``geoopt.Scaled(·, 2)``, and
five seeds for the tests that draw random numbers (the cases themselves are drawn under a fixed seed, as in
geoopt, so the other tests would repeat identical work).

Mapping (geoopt test -> port here, modes run):
- test_manifold_basic.py::test_projection_identity, test_projection_via_assert, test_vector_projection_via_assert,
  test_broadcast_projx, test_broadcast_proju, test_broadcast_retr, test_broadcast_transp, test_reversibility
  -> same names, all six modes, Scaled and not.
- test_rsgd.py::test_rsgd_stiefel -> ``test_rsgd_stiefel`` (penalised), all modes but s2-delta0 and
  s2-landing-delta; ::test_rsgd_spd -> ``test_rsgd_spd`` (unpenalised), all modes but s2-delta0.
- test_rsgd.py::test_init_manifold -> ``test_init_manifold``, all six modes (no optimisation: only the
  stabilising ``projx``); geoopt's Stiefel parameter becomes a batch of 10 points of the mode's manifold.
- test_adam.py::test_adam_lorentz -> ``test_adam_lorentz`` (unpenalised, as geoopt's), all modes but s2-delta0;
  ::test_adam_stiefel -> ``test_adam_stiefel`` (penalised), all modes but s2-delta0 and s2-landing-delta. Both
  at geoopt's step sizes, ``stabilize=4500`` and 10000 steps at most.

Not applicable, with the reason:
- ``test_manifold_basic.py::test_logmap``: needs ``expmap``/``logmap``; a learned manifold has no closed-form
  exponential map (``expmap`` raises NotImplementedError; geodesics are an optimisation,
  ``learned_manifold.geodesic``). geoopt skips it on NotImplementedError too.
- ``test_manifold_basic.py::test_dist``: needs ``expmap`` and a closed-form ``dist`` (raises, as above).
- The case generators of other manifolds (``*_case``, ``proju_original``): their closed forms are other
  manifolds' math.
- ``test_rsgd.py::test_rsgd_complex_manifold``: complex Siegel manifolds with a ``dist``-based loss.
- ``test_adam.py::test_adam_poincare`` and ``::test_adam_StereographicProductManifold``: the loss is
  ``dist(x, ideal)²`` and the start comes from ``expmap0``/``random``, none of which a learned manifold has; the
  property they check (Adam converges to a known optimum) is covered by the two Adam ports below.
- All four optimiser ports (RSGD and Adam) in mode ``s2-delta0``: without landing,
  the δ = 0 learned tangent bundle does not confine iterates to S² (discrete steps along tangent planes drift
  outwards by O(lr²|g|²) per step and no step moves along the normal), so the drifted iterate sits where the
  true-sphere penalty, leaking through the learned tangent error, balances the data term: measured 0.12 from
  X*, a stationary point, not X*. Unpenalised (``test_rsgd_spd``) the same drift leaves it 3.4e-3 from X*.
  That mode's reachable optimum is not X*, so it is not run in the optimiser ports. Adam drifts the same way
  (measured at geoopt's steps: 4.1e-3 from X* unpenalised and 0.026 penalised at lr = 1e-2; with amsgrad at
  lr = 1, whose steps are O(1) along the tangent planes, 0.67 and 2.7).
- Not yet ported, for run time only (NOT a mathematical exclusion): the penalised ports in mode
  ``s2-landing-delta``. ``test_rsgd_stiefel`` there: the penalty's stiffness with δ > 0 needs geoopt's step
  sizes, ~700 landing steps, ~4 s per case; at 5x the step it measured 5e-5 to 7e-5 from X* after 3000 steps.
  ``test_adam_stiefel`` there: at lr = 1e-2 it reaches X* (8.5e-6) in 2839 landing steps, 13.5 s; amsgrad at
  lr = 1 is 1.5e-4 from X* after geoopt's 10000 steps (65 s; not checked, but presumably its running maximum
  of the second moment keeps the normal penalty's early gradients, so the tangential steps stay small); 3x-20x
  larger steps end further away (1.3e-5 to 0.2 after 2000 steps).
- Sparse gradients: geoopt tests them in tests/test_sparse_rsgd.py and test_sparse_adam.py, outside the three
  files ported here.
"""

from __future__ import annotations

import collections

import geoopt
import pytest
import torch

from learned_manifold import LearnedDataManifold
from tests.conftest import FixedSubspaceField

MODES = ["s2-delta0", "s2-delta", "s2-landing", "s2-landing-delta", "subspace-delta0", "subspace-delta"]
LEARNED_TANGENT_ATOL = 0.03  # |proju(x, ev) − (I − xxᵀ) ev| for the fixture's tangent error ≈ 0.02 and |ev| ≲ 2
OFFSET = 0.05  # how far ex lies off the data along the true normal (landing modes)
LANDING_TILT = 0.04  # the learned normal's largest tilt at the test points (mean tangent error ≈ 0.02; the
# fixture trained with the fused AdamW reaches 0.031 at one of test_init_manifold's 10 points)
LANDING_SIGMA = 0.125  # the landing modes' σ: OFFSET within σ/2, where landing moves only along the normal (at a
# fixture's default σ of 0.031, drawn as often as 0.125 by the default-σ rule's near-ties, 0.05 is "far": the descent
# also moves along the data, up to 0.0056 here)

UnaryCase = collections.namedtuple("UnaryCase", "shape,x,ex,v,ev,manifold,atol_x,atol_v")


@pytest.fixture(autouse=True)
def use_float64():
    """geoopt's ``use_floatX`` fixture: every case runs in float64."""
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)


@pytest.fixture(params=[1, 2, 3, 4, 5])
def seed(request):
    """geoopt's ``seed`` fixture, for the tests that draw random numbers."""
    torch.manual_seed(request.param)


def _subspace_basis() -> torch.Tensor:
    return torch.linalg.qr(torch.randn(5, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)).Q


def _manifold(mode: str, sphere_model) -> LearnedDataManifold:
    delta = 0.0 if mode.endswith("delta0") or mode == "s2-landing" else 0.05
    if mode.startswith("s2"):
        landing = "landing" in mode
        return LearnedDataManifold(sphere_model, delta=delta, landing=landing, sigma=LANDING_SIGMA if landing else None)
    return LearnedDataManifold(FixedSubspaceField(_subspace_basis(), delta))


def _unary_case(mode: str, sphere_model) -> UnaryCase:
    """geoopt's ``*_case`` generators, one per mode (drawn under ``manual_seed(42)`` as there)."""
    g = torch.Generator().manual_seed(42)
    M = _manifold(mode, sphere_model)
    if mode.startswith("s2"):
        ex, ev = torch.randn(3, generator=g, dtype=torch.float64), torch.randn(3, generator=g, dtype=torch.float64)
        x = ex / ex.norm()
        atol_x = 1e-6
        if M.landing:
            x = M.projx(x)
            ex = (1 + OFFSET) * x  # off the data along the true normal: landing must come back to x
            atol_x = OFFSET * LANDING_TILT  # the learned normal's tilt, times the offset
        else:
            ex = x.clone()  # projx is the identity: every point is on the manifold (geoopt's Euclidean case)
        n = x / x.norm()
        if M.delta > 0:
            v, atol_v = ev.clone(), 1e-6
        else:
            v, atol_v = ev - (n @ ev) * n, LEARNED_TANGENT_ATOL
        return UnaryCase((3,), x, ex, v, ev, M, atol_x, atol_v)
    Q = _subspace_basis()
    x = torch.randn(2, generator=g, dtype=torch.float64) @ Q.T
    ev = torch.randn(5, generator=g, dtype=torch.float64)
    v = ev.clone() if M.delta > 0 else Q @ (Q.T @ ev)
    return UnaryCase((5,), x, x.clone(), v, ev, M, 1e-6, 1e-6)


@pytest.fixture(params=MODES)
def mode_all(request):
    """Every mode, for the ports that do not optimise (so the δ = 0 drift of ``s2-delta0`` does not matter)."""
    return request.param


@pytest.fixture(params=[True, False], ids=["Scaled", "NotScaled"])
def scaled(request):
    return request.param


@pytest.fixture(params=MODES)
def unary_case(request, sphere_model, scaled):
    """geoopt's ``unary_case`` (``unary_case_base`` × ``scaled``), one per mode of the learned manifold."""
    case = _unary_case(request.param, sphere_model)
    return case._replace(manifold=geoopt.Scaled(case.manifold, 2)) if scaled else case


def _base(manifold) -> LearnedDataManifold:
    return geoopt.utils.canonical_manifold(manifold)


# -- tests/test_manifold_basic.py -------------------------------------------------------------------------------
def test_projection_identity(unary_case):
    """``projx`` leaves a point of the manifold where it is."""
    px = unary_case.manifold.projx(unary_case.x)
    torch.testing.assert_close(px, unary_case.x, atol=1e-6, rtol=0)


def test_projection_via_assert(unary_case):
    """``projx`` of the ambient pre-image passes the point check and equals the known projection ``x``."""
    px = unary_case.manifold.projx(unary_case.ex)
    unary_case.manifold.assert_check_point_on_manifold(px)
    torch.testing.assert_close(px, unary_case.x, atol=unary_case.atol_x, rtol=0)


def test_vector_projection_via_assert(unary_case):
    """``proju`` gives a tangent vector equal to the reference projection ``v`` of ``ev``."""
    pv = unary_case.manifold.proju(unary_case.x, unary_case.ev)
    unary_case.manifold.assert_check_vector_on_tangent(unary_case.x, pv)
    torch.testing.assert_close(pv, unary_case.v, atol=unary_case.atol_v, rtol=0)


def test_broadcast_projx(unary_case):
    """Batched ``projx`` lands every row on the manifold and equals the row-by-row result."""
    M = unary_case.manifold
    X = torch.stack([unary_case.ex] * 4)
    pX = M.projx(X)
    M.assert_check_point_on_manifold(pX)
    for px in pX:
        M.assert_check_point_on_manifold(px)
    for x, px in zip(X, pX, strict=True):
        torch.testing.assert_close(px, M.projx(x), atol=1e-7, rtol=0)


def test_broadcast_proju(unary_case):
    """Batched ``proju`` is tangent at every row and equals the row-by-row result."""
    M = unary_case.manifold
    pX = torch.stack([unary_case.x] * 4)
    U = torch.stack([unary_case.v] * 4)
    pU = M.proju(pX, U)
    M.assert_check_vector_on_tangent(pX, pU)
    for px, pu in zip(pX, pU, strict=True):
        M.assert_check_vector_on_tangent(px, pu, atol=1e-5)
    for px, u, pu in zip(pX, U, pU, strict=True):
        torch.testing.assert_close(pu, M.proju(px, u), atol=1e-5, rtol=0)


def test_broadcast_retr(unary_case):
    """Batched ``retr`` lands every row on the manifold and equals the row-by-row result."""
    M = unary_case.manifold
    pX = torch.stack([unary_case.x] * 4)
    pU = M.proju(pX, torch.stack([unary_case.v] * 4))
    Y = M.retr(pX, pU)
    M.assert_check_point_on_manifold(Y)
    for y in Y:
        M.assert_check_point_on_manifold(y)
    for px, pu, y in zip(pX, pU, Y, strict=True):
        torch.testing.assert_close(y, M.retr(px, pu), atol=1e-5, rtol=0)


def test_broadcast_transp(unary_case, seed):
    """``transp_follow_retr`` gives a vector tangent at the retracted point, batched = row by row."""
    M = unary_case.manifold
    pX = torch.stack([unary_case.x] * 4)
    pU = M.proju(pX, torch.stack([unary_case.v] * 4))
    pV = M.proju(pX, torch.randn(4, *unary_case.shape))
    Y = M.retr(pX, pU)
    Q = M.transp_follow_retr(pX, pU, pV)
    M.assert_check_vector_on_tangent(Y, Q)
    for y, q in zip(Y, Q, strict=True):
        M.assert_check_vector_on_tangent(y, q)
    for px, pu, pv, q in zip(pX, pU, pV, Q, strict=True):
        torch.testing.assert_close(q, M.transp_follow_retr(px, pu, pv), atol=1e-5, rtol=0)


def _round_trip_error(M, pX: torch.Tensor, U: torch.Tensor) -> float:
    Z, Q = M.retr_transp(pX, U, U)
    X1, U1 = M.retr_transp(Z, -Q, Q)
    return max((X1 - pX).abs().max().item(), (U1 - U).abs().max().item())


def test_reversibility(unary_case, seed):
    """``retr_transp`` there and back returns ``(x, u)`` exactly where the mode is flat; elsewhere it does not.

    geoopt runs this check only for manifolds flagged ``reversible`` (and skips the rest). The flag is False for
    every mode, which is what geoopt's optimisers may rely on; the port checks both readings of it: in the flat
    modes (δ > 0 without landing: ``retr = x + u``, ``transp`` = identity; the fixed subspace with δ = 0) the round
    trip is exact, and in the curved ones (learned S² with δ = 0, landing) it is not (so the flag is needed there)
    but its error vanishes with ``u``: a sixteenth of ``u`` gives at most a tenth of the error (measured: 1/100 to
    1/160). Between ``u/2`` and ``u/4`` the error need not fall (landing on a learned field: 0.0162 then 0.0175 on an
    Intel Xeon's fixture model, where it had halved on an AMD EPYC's), so the check uses the smaller step.
    """
    M = unary_case.manifold
    assert M.reversible is False
    pX = torch.stack([unary_case.x] * 4)
    U = M.proju(pX, torch.randn(4, *unary_case.shape) / 3)
    base = _base(M)
    flat = not base.landing and (base.delta > 0 or isinstance(base.field, FixedSubspaceField))
    err = _round_trip_error(M, pX, U)
    if flat:
        assert err < 1e-12
    else:
        assert err > 1e-6
        assert _round_trip_error(M, pX, U / 16) < 0.1 * err


# -- tests/test_rsgd.py and tests/test_adam.py ----------------------------------------------------------------
RSGD_PARAMS = [dict(lr=1e-2), dict(lr=1e-3, momentum=0.9), dict(momentum=0.9, nesterov=True, lr=1e-3),
               dict(momentum=0.9, dampening=0.1, lr=1e-3)]
ADAM_PARAMS = [dict(lr=1e-2), dict(lr=1, amsgrad=True)]
# Step-size scales (the problem is the same; only the schedule is faster). Landing modes pay one landing (~3
# denoiser + factor passes, ~5 ms) per step, so they take 5x geoopt's steps. Unpenalised, the learned S² with
# δ > 0 moves along the normal at rate 2·lr·(δ + λ_normal) ≈ 0.16·lr: 20x geoopt's steps (stable: no penalty).
LR_SCALE = {("s2-landing", True): 5.0, ("s2-landing", False): 5.0, ("s2-landing-delta", False): 5.0,
            ("s2-delta", False): 20.0}
Problem = collections.namedtuple("Problem", "manifold,start,target,penalty,atol")


def _sphere_points(n: int, g: torch.Generator) -> torch.Tensor:
    return torch.nn.functional.normalize(torch.randn(n, 3, generator=g, dtype=torch.float64), dim=-1)


def _problem(mode: str, sphere_model, *, penalised: bool) -> Problem:
    """geoopt's optimiser problem: a start ``X`` and a target ``X*`` on the manifold, and the penalty of
    test_rsgd_stiefel ("manifold constraint that makes optimization hard if violated"), zero on the manifold.

    The known optimum of ``‖X − X*‖² (+ penalty)`` is ``X*``, reached to geoopt's 1e-5, except with landing at
    δ = 0: no step moves along the normal, so ``X*`` is reached only to within the landing's tolerance band
    (``landing_tol · σ``), and the true-sphere penalty leaks through the learned normal's tilt (~0.02; the
    penalty's slope is 800·band, so the tangential leak is ~16·band): atol = 1e-5 + (20 if penalised else 1)·band.
    """
    M = _manifold(mode, sphere_model)
    g = torch.Generator().manual_seed(42)
    if mode.startswith("subspace"):
        Q = _subspace_basis()
        start, target = (torch.randn(3, 2, generator=g, dtype=torch.float64) @ Q.T for _ in range(2))
        return Problem(M, start, target, lambda X: 100 * (X - X @ Q @ Q.T).pow(2).sum(), 1e-5)
    start = _sphere_points(3, g)
    target = torch.nn.functional.normalize(start + 0.8 * _sphere_points(3, g), dim=-1)  # same hemisphere
    start, target = M.projx(start), M.projx(target)
    atol = 1e-5
    if M.landing and M.delta == 0:
        atol += (20 if penalised else 1) * M.landing_tol * M.field.sigma
    radius2 = target.pow(2).sum(-1)
    return Problem(M, start, target, lambda X: 100 * (X.pow(2).sum(-1) - radius2).pow(2).sum(), atol)


def _converge(optim: torch.optim.Optimizer, X: torch.Tensor, closure, target: torch.Tensor, steps: int) -> None:
    """geoopt's loop (stop once within 1e-5), also stopping once the iterate no longer moves (a fixed point)."""
    for _ in range(steps):
        if (X - target).norm() < 1e-5:
            break
        before = X.detach().clone()
        optim.step(closure)
        if (X.detach() - before).abs().max() < 1e-13:
            break


def _run(problem: Problem, make_optim, *, penalised: bool, steps: int) -> None:
    """geoopt's optimiser test body: converge, then check contiguity, the optimum, the point check, and one more
    step after a state-dict round trip. ``make_optim(X)`` builds the optimiser for the parameter ``X``."""
    X = geoopt.ManifoldParameter(problem.start.clone(), manifold=problem.manifold)
    optim = make_optim(X)

    def closure():
        optim.zero_grad()
        loss = (X - problem.target).pow(2).sum() + (problem.penalty(X) if penalised else 0)
        loss.backward()
        return loss.item()

    assert (X - problem.target).norm() > 1e-5
    _converge(optim, X, closure, problem.target, steps)
    assert X.is_contiguous()
    torch.testing.assert_close(X.data, problem.target, atol=problem.atol, rtol=0)
    problem.manifold.assert_check_point_on_manifold(X.data)
    optim.load_state_dict(optim.state_dict())
    optim.step(closure)


def _run_rsgd(mode: str, sphere_model, params: dict, *, penalised: bool) -> None:
    scale = LR_SCALE.get((mode, penalised), 1.0)
    _run(_problem(mode, sphere_model, penalised=penalised),
         lambda X: geoopt.optim.RiemannianSGD([X], **{**params, "lr": params["lr"] * scale}),
         penalised=penalised, steps=3000)


@pytest.mark.parametrize("params", RSGD_PARAMS)
@pytest.mark.parametrize("mode", [m for m in MODES if m not in ("s2-delta0", "s2-landing-delta")])
def test_rsgd_stiefel(mode, sphere_model, params):
    """RSGD (plain, momentum, Nesterov, dampening) reaches the target ``X*`` of a loss that also penalises leaving
    the manifold, keeps ``X`` contiguous and on the manifold, and steps again after a state-dict round trip."""
    _run_rsgd(mode, sphere_model, params, penalised=True)


@pytest.mark.parametrize("params", RSGD_PARAMS)
@pytest.mark.parametrize("mode", [m for m in MODES if m != "s2-delta0"])
def test_rsgd_spd(mode, sphere_model, params):
    """As geoopt's SPD case: no penalty, start and target drawn from the manifold (here: from the data)."""
    _run_rsgd(mode, sphere_model, params, penalised=False)


def test_init_manifold(sphere_model, mode_all):
    """RSGD with ``stabilize=1`` projects a manifold parameter with ``projx`` even when no gradient reached it
    (``zero_grad`` sets the gradients to None), leaves a Euclidean parameter alone, and keeps ``X`` contiguous.

    geoopt projects ``p0`` when it is created and then sees the stabilising projection change it only through
    float32 rounding (its ``not np.allclose``, at ~5e-7). Here ``p0`` starts off the data instead, so the
    projection is visible where it is not the identity (landing: ``p0`` moves back onto the data, to within the
    learned normal's tilt times the offset, as in ``test_projection_via_assert``), and is exactly the identity
    where every point is on the manifold (no landing). A second stabilisation leaves a projected ``p0`` unchanged
    bit for bit (the landing accepts a landed point with the same test on re-entry).
    """
    torch.manual_seed(42)
    M = _manifold(mode_all, sphere_model)
    g = torch.Generator().manual_seed(42)
    if mode_all.startswith("s2"):
        x = M.projx(_sphere_points(10, g))
        x0 = (1 + OFFSET) * x  # off the data along the true normal
    else:
        x = x0 = torch.randn(10, 5, generator=g, dtype=torch.float64)  # no landing: every point is on it
    p0 = geoopt.ManifoldParameter(x0.clone(), manifold=M)
    p1 = geoopt.ManifoldParameter(torch.randn(10, 3, generator=g, dtype=torch.float64),
                                  manifold=geoopt.Euclidean())
    p0.grad = torch.zeros_like(p0)
    p1.grad = torch.zeros_like(p1)
    p0old, p1old = p0.detach().clone(), p1.detach().clone()
    opt = geoopt.optim.RiemannianSGD([p0, p1], lr=1, stabilize=1)
    opt.zero_grad()
    opt.step()
    assert p0.is_contiguous()
    torch.testing.assert_close(p1.data, p1old, atol=0, rtol=0)
    torch.testing.assert_close(p0.data, M.projx(p0old), atol=1e-12, rtol=0)
    M.assert_check_point_on_manifold(p0.data)
    if M.landing:
        assert (p0.data - p0old).norm(dim=-1).min() > 0.5 * OFFSET
        torch.testing.assert_close(p0.data, x, atol=OFFSET * LANDING_TILT, rtol=0)
    else:
        torch.testing.assert_close(p0.data, p0old, atol=0, rtol=0)
    projected = p0.detach().clone()
    opt.step()
    torch.testing.assert_close(p0.data, projected, atol=0, rtol=0)


# RiemannianAdam runs at geoopt's step sizes in every mode: its step is normalised by the gradient's running norm,
# so the slow normal rate that RSGD pays for with δ > 0 does not slow it (measured: 180 to 850 steps, or 220 to 570
# with landing). Larger steps only hurt with landing (3x-5x geoopt's: amsgrad at lr = 1 stalls 0.03 to 0.2 away).
@pytest.mark.parametrize("params", ADAM_PARAMS)
@pytest.mark.parametrize("mode", [m for m in MODES if m != "s2-delta0"])
def test_adam_lorentz(mode, sphere_model, params):
    """RiemannianAdam (plain, amsgrad) keeps the ``stabilize`` option, reaches the target ``X*`` of the
    unpenalised distance loss (geoopt's Lorentz case: start and target drawn from the manifold, here from the
    data), keeps ``X`` contiguous and on the manifold, and steps again after a state-dict round trip."""
    def make_optim(X):
        optim = geoopt.optim.RiemannianAdam([X], stabilize=4500, **params)
        assert optim.param_groups[0]["stabilize"] == 4500
        return optim

    _run(_problem(mode, sphere_model, penalised=False), make_optim, penalised=False, steps=10000)


@pytest.mark.parametrize("params", ADAM_PARAMS)
@pytest.mark.parametrize("mode", [m for m in MODES if m not in ("s2-delta0", "s2-landing-delta")])
def test_adam_stiefel(mode, sphere_model, params):
    """As ``test_adam_lorentz``, with the loss that also penalises leaving the manifold (geoopt's Stiefel case)
    and ``stabilize`` given in a parameter group."""
    def make_optim(X):
        optim = geoopt.optim.RiemannianAdam([dict(params=[X], stabilize=4500)], **params)
        assert optim.param_groups[0]["stabilize"] == 4500
        return optim

    _run(_problem(mode, sphere_model, penalised=True), make_optim, penalised=True, steps=10000)
