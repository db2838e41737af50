"""The whole chain on curved data (issue 12, item 5): the card's optimiser and geoopt's own optimisers on the
learned torus, with and without landing and δ, maximising a linear objective ``c·x`` (its maximiser on the torus
is known through the data: the largest ``c·x`` over the training sample)."""

import geoopt
import pytest
import torch

from learned_manifold import LearnedDataManifold, RiemannianAdam, RiemannianSGD

C = torch.nn.functional.normalize(torch.tensor([0.3, 0.5, 0.8]), dim=0)
STEPS, LR = 200, 0.02


def climb(M, optimiser, x0, *, manifold_parameter=False):
    if manifold_parameter:  # geoopt's own optimisers on a ManifoldParameter
        p = geoopt.ManifoldParameter(x0.clone(), manifold=M)
        opt = {"sgd": geoopt.optim.RiemannianSGD, "adam": geoopt.optim.RiemannianAdam}[optimiser]([p], lr=LR)
    else:  # the card: RiemannianSGD(params, manifold=M, lr=...)
        p = torch.nn.Parameter(x0.clone())
        opt = {"sgd": RiemannianSGD, "adam": RiemannianAdam}[optimiser]([p], manifold=M, lr=LR)
    for _ in range(STEPS):
        opt.zero_grad()
        (-(p @ C).sum()).backward()
        opt.step()
    return p.detach()


@pytest.fixture(scope="module")
def start(torus):
    return torus.sample(16, generator=torch.Generator().manual_seed(3))


@pytest.mark.parametrize("delta", [0.0, 1e-2])
@pytest.mark.parametrize("optimiser", ["sgd", "adam"])
def test_with_landing_every_optimiser_stays_on_the_torus_and_climbs(torus_model, torus, start, optimiser, delta):
    M = LearnedDataManifold(torus_model, landing=True, delta=delta)
    end = climb(M, optimiser, start)
    best = float((torus.sample(6000, generator=torch.Generator().manual_seed(0)) @ C).max())
    assert float(torus.distance(end).max()) < 0.05
    assert float((end @ C).mean()) > best - (0.02 if optimiser == "adam" else 0.06)
    # geoopt's own optimiser on a ManifoldParameter takes exactly the same steps as the card's
    torch.testing.assert_close(climb(M, optimiser, start, manifold_parameter=True), end)


def test_delta_zero_without_landing_stays_near_the_torus(torus_model, torus, start):
    end = climb(LearnedDataManifold(torus_model), "adam", start)
    assert float(torus.distance(end).max()) < 0.1


def test_delta_positive_without_landing_may_leave_by_design(torus_model, torus, start):
    """δ > 0 makes every direction tangent (SPEC §5): the normal costs 1/δ in the metric but is allowed, so a
    linear objective pulls points off the torus. This is documented behaviour, and landing is the remedy; the
    optimiser says so once when its points leave the data (checked at steps 1, 2, 4, 8, …)."""
    with pytest.warns(UserWarning, match="RiemannianAdam: points beyond the data.*landing=True"):
        end = climb(LearnedDataManifold(torus_model, delta=1e-2), "adam", start)
    assert float(torus.distance(end).max()) > 0.1
    assert float((end @ C).mean()) > 1.0  # beyond the best value on the torus: it has left it
