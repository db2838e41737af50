"""`RiemannianSGD`/`RiemannianAdam` without landing say once when their points leave the data (tester A, P3: on a
k-NN disc, maximising x₁ ran 1.6 past the edge with no word, where the flows warn at ends off the data): the flows'
check and threshold (`landing.ends_off_data`), at steps 1, 2, 4, 8, …; nothing on the data, nothing with landing."""

import warnings

import pytest
import torch

from learned_manifold import LearnedDataManifold, RiemannianAdam, RiemannianSGD, landing
from learned_manifold.metrics import KNNCDC

OPTIMISERS = {
    "sgd": lambda p, M: RiemannianSGD([p], manifold=M, lr=0.05, momentum=0.9),
    "adam": lambda p, M: RiemannianAdam([p], manifold=M, lr=0.05),
}


@pytest.fixture(scope="module")
def disc():
    """The uniform unit disc z = 0 in R³, as a k-NN field (1,000 points)."""
    g = torch.Generator().manual_seed(0)
    radius, angle = torch.rand(1000, generator=g).sqrt(), 2 * torch.pi * torch.rand(1000, generator=g)
    data = torch.stack([radius * angle.cos(), radius * angle.sin(), torch.zeros(1000)], -1)
    return KNNCDC(data, k=32, sigma=0.1), data


def climb(opt, p, steps, direction=(1.0, 0.0, 0.0)):
    """Maximise ``direction · x`` for ``steps`` steps; return the warnings raised."""
    c = torch.tensor(direction)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(steps):
            opt.zero_grad()
            (-(p @ c).sum()).backward()
            opt.step()
    return caught


@pytest.mark.parametrize("name", OPTIMISERS)
def test_points_run_past_the_edge_of_the_data_warn_once_naming_how_many_and_how_far(disc, name):
    field, data = disc
    M = LearnedDataManifold(field, tangent_dim=2)
    p = torch.nn.Parameter(torch.tensor([[0.5, 0.0, 0.0], [0.0, 0.3, 0.0], [-0.5, -0.5, 0.0]]))
    caught = climb(OPTIMISERS[name](p, M), p, 100)
    off = [w for w in caught if "points beyond the data" in str(w.message)]
    assert len(off) == 1, [str(w.message) for w in caught]  # said once, not at every check
    far = field.beyond_data(p.detach())
    assert (far > landing.off_data_threshold(field)).all() and (p.detach()[:, 0] > 1.5).all()  # well past the edge
    message = str(off[0].message)
    assert message.startswith(f"{type(OPTIMISERS[name](p, M)).__name__}: points beyond the data: the optimised "
                              "points (")
    assert "landing=True" in message and off[0].filename == __file__  # the user's opt.step() line


@pytest.mark.parametrize("name", OPTIMISERS)
def test_points_that_stay_on_the_data_do_not_warn(disc, name):
    field, _ = disc
    M = LearnedDataManifold(field, tangent_dim=2)
    p = torch.nn.Parameter(torch.tensor([[-0.5, 0.0, 0.0], [0.0, -0.3, 0.0]]))
    caught = climb(OPTIMISERS[name](p, M), p, 16, direction=(0.01, 0.0, 0.0))  # a slow climb, inside the disc
    assert (p.detach()[:, 0] < 0.9).all() and caught == []


def test_landing_manifolds_are_left_to_landings_own_checks(disc, monkeypatch):
    field, _ = disc
    calls = []
    monkeypatch.setattr("learned_manifold.optim.ends_off_data", lambda *args, **kwargs: calls.append(args))
    M = LearnedDataManifold(field, landing=True, tangent_dim=2)
    p = torch.nn.Parameter(torch.tensor([[0.5, 0.0, 0.0]]))
    climb(RiemannianSGD([p], manifold=M, lr=0.05), p, 4)
    assert calls == []


def test_the_check_runs_at_steps_one_two_four_eight_only(disc, monkeypatch):
    field, _ = disc
    steps_checked, step = [], [0]
    monkeypatch.setattr("learned_manifold.optim.ends_off_data", lambda *args, **kwargs: steps_checked.append(step[0]))
    M = LearnedDataManifold(field, tangent_dim=2)
    p = torch.nn.Parameter(torch.tensor([[0.0, 0.0, 0.0]]))
    opt = RiemannianSGD([p], manifold=M, lr=1e-3)
    for step[0] in range(1, 20):
        opt.zero_grad()
        p.sum().backward()
        opt.step()
    assert steps_checked == [1, 2, 4, 8, 16]
