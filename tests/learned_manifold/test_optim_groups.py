"""Parameter groups of `RiemannianSGD`/`RiemannianAdam` with their own ``manifold`` (tester C, item 1): a network's
weights in a group with ``manifold=None`` stay Euclidean (a ``Linear(3, 3)`` head had been landed onto the data's
sphere by one step with a zero gradient), ``geoopt.ManifoldParameter`` keeps its own manifold, and the
shape-mismatch error says how to keep a parameter Euclidean."""

import geoopt
import pytest
import torch

from learned_manifold import LearnedDataManifold, RiemannianAdam, RiemannianSGD
from learned_manifold.metrics import KNNCDC

OPTIMISERS = {
    "sgd": lambda groups, M: RiemannianSGD(groups, manifold=M, lr=0.05, momentum=0.9),
    "adam": lambda groups, M: RiemannianAdam(groups, manifold=M, lr=0.05),
}


@pytest.fixture(scope="module")
def sphere():
    data = torch.nn.functional.normalize(torch.randn(1000, 3, generator=torch.Generator().manual_seed(0)), dim=-1)
    return LearnedDataManifold(KNNCDC(data, k=32, sigma=0.1), landing=True, tangent_dim=2), data


def step_with(opt, points, head, head_grad):
    """One step: the points climb x₃, the head gets the gradient ``head_grad`` (the same for weight and bias)."""
    opt.zero_grad()
    (-points[:, 2]).sum().backward()
    head.weight.grad, head.bias.grad = head_grad(head.weight), head_grad(head.bias)
    opt.step()


@pytest.mark.parametrize("name", OPTIMISERS)
@pytest.mark.parametrize("euclidean", [None, geoopt.Euclidean()], ids=["None", "Euclidean"])
def test_a_group_with_manifold_none_keeps_a_networks_weights_euclidean(sphere, name, euclidean):
    M, data = sphere
    points, head = torch.nn.Parameter(data[:4].clone()), torch.nn.Linear(3, 3)
    w0, b0 = head.weight.detach().clone(), head.bias.detach().clone()
    opt = OPTIMISERS[name]([{"params": [points]}, {"params": head.parameters(), "lr": 1e-3, "manifold": euclidean}],
                           M)
    step_with(opt, points, head, torch.zeros_like)  # a flat loss for the head: it must not move at all
    assert torch.equal(head.weight.detach(), w0) and torch.equal(head.bias.detach(), b0)
    step_with(opt, points, head, torch.ones_like)  # a Euclidean step: every entry moves, none is projected away
    moved = head.weight.detach() - w0
    assert (moved < 0).all() and moved.abs().max() < 3e-3
    assert (points.detach()[:, 2] > data[:4, 2]).all()  # the points still climb on M
    assert ((points.detach().norm(dim=-1) - 1).abs() < 0.05).all()  # and stay on the data's sphere


def test_without_the_group_key_the_weights_are_bound_to_the_optimisers_manifold(sphere):
    """The default is unchanged: a plain parameter of matching shape in any group lives on ``M``."""
    M, data = sphere
    points, head = torch.nn.Parameter(data[:4].clone()), torch.nn.Linear(3, 3)
    opt = RiemannianAdam([{"params": [points]}, {"params": head.parameters(), "lr": 1e-3}], manifold=M, lr=0.05)
    step_with(opt, points, head, torch.zeros_like)
    assert ((head.weight.detach().norm(dim=-1) - 1).abs() < 0.05).all()  # landed onto the sphere


def test_a_group_bound_by_its_own_key_steps_exactly_as_one_bound_by_the_optimiser(sphere):
    M, data = sphere
    ends = []
    for groups, manifold in (([{"params": None, "manifold": M}], None), ([{"params": None}], M)):
        points = torch.nn.Parameter(data[:4].clone())
        opt = RiemannianSGD([{**groups[0], "params": [points]}], manifold=manifold, lr=0.1, momentum=0.5)
        for _ in range(20):
            opt.zero_grad()
            (-points[:, 2]).sum().backward()
            opt.step()
        ends.append(points.detach())
    assert torch.equal(ends[0], ends[1]) and (ends[0][:, 2] > data[:4, 2]).all()


def test_a_manifold_parameter_keeps_its_own_manifold_in_a_group_with_another(sphere):
    M, data = sphere
    w = geoopt.ManifoldParameter(torch.ones(5), manifold=geoopt.Euclidean())  # (5,): could not live on M
    opt = RiemannianAdam([{"params": [w], "manifold": M}], lr=0.1)
    w.grad = torch.ones(5)
    opt.step()
    torch.testing.assert_close(w.detach(), torch.full((5,), 0.9))  # Adam's first step: lr · sign(g)


def test_the_shape_error_names_the_group_and_both_ways_to_stay_euclidean(sphere):
    M, _ = sphere
    with pytest.raises(ValueError, match=r"parameter group 1: cannot bind a parameter of shape \(5,\).*"
                                         r"'manifold': None.*geoopt.ManifoldParameter\(w, manifold=geoopt.Euclidean"):
        RiemannianSGD([{"params": [torch.nn.Parameter(torch.zeros(2, 3))]},
                       {"params": [torch.nn.Parameter(torch.zeros(5))]}], manifold=M, lr=0.1)
    opt = RiemannianSGD([torch.nn.Parameter(torch.zeros(2, 3))], manifold=M, lr=0.1)
    with pytest.raises(ValueError, match=r"parameter group 1: cannot bind"):
        opt.add_param_group({"params": [torch.nn.Parameter(torch.zeros(5))]})
    opt.add_param_group({"params": [torch.nn.Parameter(torch.zeros(5))], "manifold": None})  # accepted


def test_a_group_manifold_that_is_not_a_manifold_is_refused_naming_the_group(sphere):
    with pytest.raises(TypeError, match=r"parameter group 0: manifold must be a geoopt.Manifold or None"):
        RiemannianAdam([{"params": [torch.nn.Parameter(torch.zeros(3))], "manifold": "euclidean"}], lr=0.1)


@pytest.mark.parametrize("name", OPTIMISERS)
def test_the_state_dict_leaves_the_groups_manifold_out_and_loading_keeps_it(sphere, name):
    M, data = sphere
    points, head = torch.nn.Parameter(data[:4].clone()), torch.nn.Linear(3, 3)
    groups = lambda: [{"params": [points]}, {"params": head.parameters(), "manifold": None}]  # noqa: E731
    opt = OPTIMISERS[name](groups(), M)
    step_with(opt, points, head, torch.ones_like)
    saved = opt.state_dict()
    assert all("manifold" not in g for g in saved["param_groups"])
    again = OPTIMISERS[name](groups(), M)
    again.load_state_dict(saved)
    assert "manifold" not in again.param_groups[0] and again.param_groups[1]["manifold"] is None
    assert torch.equal(again.state_dict()["state"][0]["momentum_buffer" if name == "sgd" else "exp_avg"],
                       saved["state"][0]["momentum_buffer" if name == "sgd" else "exp_avg"])
