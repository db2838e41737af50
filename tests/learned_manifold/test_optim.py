"""Riemannian optimisers on `LearnedDataManifold`: the card's signature, geoopt's own, convergence, robustness."""

import geoopt
import numpy as np
import pytest
import torch

from learned_manifold import LearnedDataManifold, RiemannianAdam, RiemannianSGD
from tests.conftest import FixedSubspaceField

C = torch.tensor([0.0, 0.0, 1.0])


def start_points():
    x = torch.tensor([[1.0, 0.2, -0.3], [0.3, 1.0, -0.5], [-0.7, -0.6, 0.1], [0.2, -1.0, 0.4]])
    return torch.nn.functional.normalize(x, dim=-1)


def run(opt_factory, param, steps=150):
    """Minimise −cᵀx; return the worst distance to the unit sphere seen after any step."""
    opt = opt_factory(param)
    worst = 0.0
    for _ in range(steps):
        opt.zero_grad()
        (-(param @ C).sum()).backward()
        opt.step()
        worst = max(worst, (param.detach().norm(dim=-1) - 1).abs().max().item())
    return worst


@pytest.mark.parametrize(
    "make",
    [
        lambda M: lambda p: RiemannianSGD([p], manifold=M, lr=0.05, momentum=0.9),
        lambda M: lambda p: RiemannianSGD([p], manifold=M, lr=0.05, momentum=0.9, nesterov=True),
        lambda M: lambda p: RiemannianAdam([p], manifold=M, lr=0.05),
        lambda M: lambda p: RiemannianAdam([p], manifold=M, lr=0.05, amsgrad=True, stabilize=5),
    ],
    ids=["sgd-momentum", "sgd-nesterov", "adam", "adam-amsgrad-stabilize"],
)
def test_optimisers_reach_the_top_of_the_sphere_and_stay_on_it(sphere_model, make):
    M = LearnedDataManifold(sphere_model, landing=True)
    p = torch.nn.Parameter(start_points())
    worst = run(make(M), p)
    assert worst < 0.05, worst
    assert (p.detach() @ C).min() > 0.97


def test_geoopt_optimiser_with_manifold_parameter(sphere_model):
    M = LearnedDataManifold(sphere_model, landing=True)
    p = geoopt.ManifoldParameter(start_points(), manifold=M)
    worst = run(lambda q: geoopt.optim.RiemannianSGD([q], lr=0.05, momentum=0.9), p)
    assert worst < 0.05 and (p.detach() @ C).min() > 0.97


def test_plain_sgd_leaves_the_manifold():
    p = torch.nn.Parameter(start_points())
    worst = run(lambda q: torch.optim.SGD([q], lr=0.05, momentum=0.9), p)
    assert worst > 1.0


def test_exact_constrained_optimum_on_a_closed_form_subspace():
    """min ½‖x − t‖² over span(Q) from a point of span(Q): the optimum is Q Qᵀ t."""
    Q = torch.linalg.qr(torch.randn(5, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)).Q
    M = LearnedDataManifold(FixedSubspaceField(Q))
    t = torch.randn(5, dtype=torch.float64)
    p = torch.nn.Parameter(torch.zeros(1, 5, dtype=torch.float64))
    opt = RiemannianSGD([p], manifold=M, lr=0.2, momentum=0.5)
    for _ in range(200):
        opt.zero_grad()
        (0.5 * (p - t).pow(2).sum()).backward()
        opt.step()
    torch.testing.assert_close(p.detach()[0], Q @ Q.T @ t, atol=1e-8, rtol=0)


def test_state_dict_round_trip(sphere_model):
    M = LearnedDataManifold(sphere_model, landing=True)
    for make in (
        lambda p: RiemannianSGD([p], manifold=M, lr=0.05, momentum=0.9),
        lambda p: RiemannianAdam([p], manifold=M, lr=0.05),
    ):
        whole = torch.nn.Parameter(start_points())
        run(make, whole, steps=5)
        p = torch.nn.Parameter(start_points())
        opt = make(p)
        run(lambda q, o=opt: o, p, steps=3)
        state = opt.state_dict()
        opt2 = make(p)
        opt2.load_state_dict(state)
        run(lambda q, o=opt2: o, p, steps=2)
        assert p.is_contiguous()
        # the same iterates as without the interruption (Adam's step count came back a float32 tensor: 3e-6 off)
        assert torch.equal(p, whole)


def test_frozen_parameters_are_not_bound_and_added_groups_are_checked(sphere_model):
    """A module holding the point and the manifold (so .to() moves both) gives its frozen network weights to
    .parameters(): they were refused ("cannot bind a parameter of shape (128, 33)"). A group added later skipped the
    shape check, and its failure came in step(), after the other parameters had moved."""
    M = LearnedDataManifold(sphere_model)

    class Holder(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.point = torch.nn.Parameter(start_points())
            self.M = M

    holder = Holder()
    for make in (RiemannianSGD, RiemannianAdam):
        opt = make(holder.parameters(), manifold=M, lr=0.05)
        with pytest.raises(ValueError, match=r"cannot bind a parameter of shape \(5,\)"):
            opt.add_param_group({"params": [torch.nn.Parameter(torch.zeros(5))]})
        assert len(opt.param_groups) == 1
        extra = torch.nn.Linear(3, 3)  # frozen below: a generator of parameters, read once for the check
        extra.requires_grad_(False)
        opt.add_param_group({"params": extra.parameters()})
        assert len(opt.param_groups[1]["params"]) == 2
    opt = RiemannianSGD(holder.parameters(), manifold=M, lr=0.05, stabilize=1)
    before = holder.point.detach().clone()
    opt.zero_grad()
    (-(holder.point @ C).sum()).backward()
    opt.step()
    assert not torch.equal(holder.point, before) and holder.point.shape == before.shape


OFF = torch.tensor([[3.0, 0.0, 0.0], [0.0, -2.0, 2.0], [10.0, 10.0, -10.0]])  # each with one nearest point
CENTRE = torch.tensor([[0.05, 0.02, -0.01]])  # next to the sphere's centre: every direction is about as near


@pytest.mark.parametrize("delta,landing", [(0.0, False), (0.01, False), (0.0, True)])
@pytest.mark.filterwarnings("ignore:.*keep the gap rule's directions")  # off the data by design (0.36 λ₁ dropped)
def test_no_nan_from_off_manifold_starts(sphere_model, delta, landing):
    M = LearnedDataManifold(sphere_model, delta=delta, landing=landing)
    p = torch.nn.Parameter(torch.cat([OFF, CENTRE]) if not landing else OFF.clone())
    if landing:
        run(lambda q: RiemannianAdam([q], manifold=M, lr=0.05), p, steps=30)
    else:  # nothing brings them to the data: said once (test_optim_off_data)
        with pytest.warns(UserWarning, match=r"RiemannianAdam: points beyond the data: the optimised points"):
            run(lambda q: RiemannianAdam([q], manifold=M, lr=0.05), p, steps=30)
    assert torch.isfinite(p).all()
    if landing:  # landed on the data first, then stayed near it
        assert (p.detach().norm(dim=-1) - 1).abs().max() < 0.2


def test_a_start_at_the_spheres_centre_lands_or_is_refused_by_name(sphere_model):
    """Landing from next to the centre has no preferred direction: whether a model's field gets there depends on
    the model (the fixture trained on one CPU landed, on an AMX-bf16 CPU it did not). Either way, no NaN."""
    M = LearnedDataManifold(sphere_model, delta=0.0, landing=True)
    p = torch.nn.Parameter(CENTRE.clone())
    try:
        run(lambda q: RiemannianAdam([q], manifold=M, lr=0.05), p, steps=30)
    except ValueError as err:
        assert str(err).startswith("x: ") and "did not" in str(err)
    else:
        assert torch.isfinite(p).all() and (p.detach().norm(dim=-1) - 1).abs().max() < 0.2


def test_options_geoopt_would_ignore_are_refused(sphere_model):
    M = LearnedDataManifold(sphere_model)
    p = torch.nn.Parameter(start_points())
    for option in ("maximize", "foreach", "fused", "capturable", "differentiable", "decoupled_weight_decay"):
        with pytest.raises(ValueError, match=option):
            RiemannianAdam([p], manifold=M, **{option: True})
    with pytest.raises(TypeError, match="nonsense"):
        RiemannianAdam([p], manifold=M, nonsense=1)
    with pytest.raises(TypeError):
        RiemannianSGD([p], manifold=M, lr=0.1, maximize=True)


def test_each_refused_adam_option_gets_its_own_reason(sphere_model):
    """A refused ``torch.optim.Adam`` option is named with the reason that applies to it, not another option's hint:
    ``foreach=True`` is refused because geoopt steps one parameter at a time (no multi-tensor path), and the error
    says nothing of ``maximize``; ``maximize=True`` gets the hint to negate the objective."""
    M = LearnedDataManifold(sphere_model)
    p = torch.nn.Parameter(start_points())
    with pytest.raises(ValueError, match="foreach") as foreach:
        RiemannianAdam([p], manifold=M, foreach=True)
    message = str(foreach.value)
    assert "multi-tensor" in message and "one parameter at a time" in message
    assert "maximize" not in message and "negate" not in message
    with pytest.raises(ValueError, match="negate the objective") as maximize:
        RiemannianAdam([p], manifold=M, maximize=True)
    assert "foreach" not in str(maximize.value)
    with pytest.raises(ValueError, match="foreach, fused") as both:  # each named, with its own reason
        RiemannianAdam([p], manifold=M, foreach=True, fused=True)
    assert "no fused kernel" in str(both.value) and "multi-tensor" in str(both.value)
    RiemannianAdam([p], manifold=M, foreach=False)  # off: nothing to refuse


def test_binding_checks_shapes(sphere_model):
    M = LearnedDataManifold(sphere_model)
    with pytest.raises(ValueError, match="data shape"):
        RiemannianSGD([torch.nn.Parameter(torch.zeros(4, 5))], manifold=M, lr=0.1)
    with pytest.raises(TypeError, match="geoopt.Manifold"):
        RiemannianSGD([torch.nn.Parameter(torch.zeros(4, 3))], manifold="sphere", lr=0.1)


@pytest.mark.parametrize("kind", ["sgd-momentum", "adam"])
def test_stabilize_applies_to_plain_parameters(sphere_model, kind):
    """stabilize=k projects plain parameters every k steps (geoopt's own stabilize_group skips them): counted as
    the extra projx calls over the same optimiser without stabilize."""

    def projx_calls(stabilize):
        M = LearnedDataManifold(sphere_model, landing=True)
        calls = []
        original = M.projx
        M.projx = lambda x: calls.append(1) or original(x)
        p = torch.nn.Parameter(start_points())
        opt = (RiemannianSGD([p], manifold=M, lr=0.05, momentum=0.9, stabilize=stabilize) if kind == "sgd-momentum"
               else RiemannianAdam([p], manifold=M, lr=0.05, stabilize=stabilize))
        run(lambda q: opt, p, steps=6)
        return len(calls)

    assert projx_calls(2) - projx_calls(None) == 3


OPTIMISERS = {
    "sgd-momentum": lambda p, M: RiemannianSGD([p], manifold=M, lr=0.05, momentum=0.9),
    "adam": lambda p, M: RiemannianAdam([p], manifold=M, lr=0.05),
    "adam-amsgrad": lambda p, M: RiemannianAdam([p], manifold=M, lr=0.05, amsgrad=True),
}


@pytest.mark.parametrize("kind", list(OPTIMISERS))
@pytest.mark.parametrize("mode", [{"delta": 0.0}, {"delta": 0.05}, {"landing": True}], ids=["d0", "d", "landing"])
def test_a_nan_gradient_row_stays_in_its_row(sphere_model, kind, mode):
    """Rows are independent (as in geoopt.Sphere): a NaN in one row's gradient makes that row NaN and leaves the
    other rows, and their momentum/Adam state, on exactly the trajectory they follow without that row."""
    M = LearnedDataManifold(sphere_model, **mode)

    def trajectory(rows, nan_row=None):
        p = torch.nn.Parameter(start_points()[rows])
        opt = OPTIMISERS[kind](p, M)
        for step in range(5):
            opt.zero_grad()
            (-(p @ C).sum() + (p**2).sum()).backward()
            if nan_row is not None and step == 1:
                p.grad[nan_row] = float("nan")
            opt.step()
        return p.detach()

    with_nan = trajectory([0, 1, 2, 3], nan_row=1)
    alone = trajectory([0, 2, 3])
    assert torch.isnan(with_nan[1]).all()
    torch.testing.assert_close(with_nan[[0, 2, 3]], alone, rtol=0, atol=1e-6)


@pytest.mark.parametrize("delta", [0.0, 1e-3])
@pytest.mark.parametrize("momentum, dampening, nesterov", [(0.9, 0.0, False), (0.5, 0.3, False), (0.9, 0.0, True)])
def test_momentum_is_torch_sgd_on_the_riemannian_gradient(delta, momentum, dampening, nesterov):
    """On the plane z = 0 (``G + δI`` constant, ``retr = x + proju(u)``) heavy-ball RiemannianSGD is
    ``torch.optim.SGD`` fed the Riemannian gradient ``(G + δI) ∇f``: its first step is ``lr · (G + δI) ∇f``. geoopt
    seeded the buffer with the raw Euclidean gradient: with δ = 1e-3 and a target 5 above the plane the first step
    rose 0.45 instead of 5e-4, and with δ = 0 the first in-plane step was (1 + m − dampening) times too long."""
    Q = torch.eye(3, dtype=torch.float64)[:, :2]
    M = LearnedDataManifold(FixedSubspaceField(Q, delta))
    A = Q @ Q.T + delta * torch.eye(3, dtype=torch.float64) if delta > 0 else Q @ Q.T
    t = torch.tensor([[1.0, 2.0, 5.0]], dtype=torch.float64)
    opts = {"lr": 0.1, "momentum": momentum, "dampening": dampening, "nesterov": nesterov}
    p = torch.nn.Parameter(torch.zeros(1, 3, dtype=torch.float64))
    q = torch.nn.Parameter(torch.zeros(1, 3, dtype=torch.float64))
    q.register_hook(lambda g: g @ A)  # torch.optim.SGD sees the Riemannian gradient (A symmetric)
    ours, ref = RiemannianSGD([p], manifold=M, **opts), torch.optim.SGD([q], **opts)
    for k in range(5):
        for param, opt in ((p, ours), (q, ref)):
            opt.zero_grad()
            (0.5 * (param - t).pow(2).sum()).backward()
            opt.step()
        if k == 0:  # the closed form of the first step: lr (1 + m·nesterov) A t
            first = 0.1 * (1 + momentum * nesterov) * t @ A
            torch.testing.assert_close(p.detach(), first, rtol=0, atol=1e-15)
        torch.testing.assert_close(p.detach(), q.detach(), rtol=0, atol=1e-13)


def test_every_parameter_groups_options_are_checked_as_the_top_level_ones():
    """A group's ``lr=-5`` (it would climb the objective) had been accepted while the top-level ``lr=-5`` was
    refused; ``amsgrad='no'`` or NaN had been taken as True. Each is refused naming the option (and the group)."""
    M = LearnedDataManifold(FixedSubspaceField(torch.eye(3)[:, :2]))

    def p():
        return torch.nn.Parameter(torch.zeros(2, 3))

    for make in (lambda params: RiemannianSGD(params, manifold=M, lr=0.1),
                 lambda params: RiemannianAdam(params, manifold=M, lr=0.1)):
        with pytest.raises(ValueError, match=r"^parameter group 1: lr must be a finite number >= 0, got -5.0$"):
            make([{"params": [p()]}, {"params": [p()], "lr": -5.0}])
        opt = make([p()])
        with pytest.raises(ValueError, match=r"^parameter group 1: weight_decay must be a finite number >= 0, "
                                             r"got nan$"):
            opt.add_param_group({"params": [p()], "weight_decay": float("nan")})
        assert len(opt.param_groups) == 1
    for value in ("no", float("nan"), 1):
        with pytest.raises(ValueError, match=r"^amsgrad must be True or False, got "):
            RiemannianAdam([p()], manifold=M, amsgrad=value)
    with pytest.raises(ValueError, match=r"^parameter group 0: amsgrad must be True or False, got 'no'$"):
        RiemannianAdam([{"params": [p()], "amsgrad": "no"}], manifold=M)
    with pytest.raises(ValueError, match=r"^parameter group 0: momentum must be < 1, got 1.5$"):
        RiemannianSGD([{"params": [p()], "momentum": 1.5}], manifold=M, lr=0.1)
    with pytest.raises(ValueError, match=r"^parameter group 0: betas must be two numbers in \[0, 1\)"):
        RiemannianAdam([{"params": [p()], "betas": (0.9, 1.0)}], manifold=M)
    with pytest.raises(ValueError, match=r"^nesterov must be True or False, got 'yes'$"):
        RiemannianSGD([p()], manifold=M, lr=0.1, momentum=0.5, nesterov="yes")
    RiemannianAdam([{"params": [p()], "lr": 0.0, "amsgrad": True, "betas": [0.5, 0.9]}], manifold=M)  # valid
    # NumPy scalars are real numbers (a float32 from a config array was "not two numbers", tester F of round 10)
    RiemannianAdam([p()], manifold=M, lr=np.float32(1e-3), betas=(np.float32(0.9), np.float64(0.99)))
    adam = RiemannianAdam([{"params": [p()], "betas": (np.float32(0.5), 0.9)}], manifold=M)
    assert adam.param_groups[0]["betas"] == (0.5, 0.9)
