"""`CachedFactors.one_step` (`learned_manifold.manifold_factors`): the field's cache key is read once for the four
manifold calls of one optimiser step on one parameter (tester C, item 5: four reads, 0.1–0.25 ms each), read
afresh after the field's own code ran, and every change to the field between steps is still seen."""

import pytest
import torch

import learned_manifold.manifold_factors as factors_module
from learned_manifold import LearnedDataManifold
from learned_manifold.metrics import CoMetricField


class ScaledPolar(CoMetricField):
    """``G = s² diag(1, 1/r²)`` with ``s`` a buffer; ``bump`` makes each factor evaluation add 1 to ``s`` (a field
    that changes itself while computing)."""

    low_rank, dim = True, 2

    def __init__(self, bump: bool = False):
        super().__init__()
        self.register_buffer("s", torch.ones((), dtype=torch.float64))
        self.bump = bump

    def factor(self, x):
        A = self.s * torch.diag_embed(torch.stack([torch.ones_like(x[:, 0]), 1 / x[:, 0]], -1))
        if self.bump:
            self.s.add_(1)
        return A


@pytest.fixture
def reads(monkeypatch):
    count = [0]
    original = factors_module.field_key

    def counted(field):
        count[0] += 1
        return original(field)

    monkeypatch.setattr(factors_module, "field_key", counted)
    return count


def _step(M, x, g):
    """The manifold calls of one RiemannianAdam step on the parameter ``x``."""
    with torch.no_grad():
        rgrad = M.egrad2rgrad(x, g)
        M.component_inner(x, rgrad)
        y, _ = M.retr_transp(x, -0.01 * rgrad, rgrad)
        x.copy_(y)


X = torch.tensor([[1.0, 0.3], [1.5, -0.2]], dtype=torch.float64)


def test_one_step_reads_the_field_key_once_and_answers_as_without_it(reads):
    plain, scoped = LearnedDataManifold(ScaledPolar(), tangent_dim=2), LearnedDataManifold(ScaledPolar(),
                                                                                           tangent_dim=2)
    x, y = X.clone(), X.clone()
    for _ in range(3):
        _step(plain, x, torch.ones_like(x))
    reads[0] = 0
    _step(plain, x, torch.ones_like(x))
    assert reads[0] == 4
    for _ in range(3):
        with scoped.one_step():
            _step(scoped, y, torch.ones_like(y))
    reads[0] = 0
    with scoped.one_step():
        _step(scoped, y, torch.ones_like(y))
    assert reads[0] == 1
    assert torch.equal(x, y)


def test_a_change_to_the_field_between_steps_or_by_its_own_factor_is_seen():
    M = LearnedDataManifold(ScaledPolar(), tangent_dim=2)
    x, u = X.clone(), torch.ones(2, 2, dtype=torch.float64)
    with torch.no_grad():
        with M.one_step():
            before = M.egrad2rgrad(x, u)
        M.field.s.fill_(2.0)  # between steps (an optimiser step on the field, a load_state_dict)
        with M.one_step():
            assert torch.equal(M.egrad2rgrad(x, u), 4 * before)
    bumping = LearnedDataManifold(ScaledPolar(bump=True), tangent_dim=2)
    with torch.no_grad(), bumping.one_step():
        first = bumping.egrad2rgrad(x, u)  # s = 1 (then 2): the entry is for s = 1 and never answers again
        assert torch.equal(bumping.egrad2rgrad(x, u), 4 * first)  # computed afresh at s = 2
    assert len(bumping._factors().entries) == 1


def test_a_nested_block_leaves_the_outer_one_to_read_the_key_afresh():
    """Review s36, item 7: the inner block may run the field's code, which here changes the field; restoring the
    key the outer block read before made its next lookup hit an entry of the field's old state."""
    M = LearnedDataManifold(ScaledPolar(bump=[]), tangent_dim=2)  # (a list: no setting the key reads)
    x, u = X[:1].clone(), torch.ones(1, 2, dtype=torch.float64)
    y = x + 1
    with torch.no_grad(), M.one_step():
        M.egrad2rgrad(x, u)
        M.egrad2rgrad(x, u)  # a hit: the key (s = 1) read and kept
        M.field.bump.append(True)  # from now on each evaluation adds 1 to s
        with M.one_step():
            first = M.egrad2rgrad(y, u)  # computed at s = 1, which the evaluation makes 2
        assert torch.equal(M.egrad2rgrad(y, u), 4 * first)  # computed afresh at s = 2
