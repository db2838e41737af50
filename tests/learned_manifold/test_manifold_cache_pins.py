"""Which entries `manifold_cache.FactorCache` pins, and what a lookup compares (review s36, items 1 and 2): only an
optimiser's parameter update (`CachedFactors.one_step`) pins, one entry per storage and at most
`FactorCache.PIN_LIMIT` in all (then a warning, once), so memory stays bounded for any query pattern; and a
parameter's lookup compares one point set however many parameters share the manifold."""

import warnings

import pytest
import torch

from learned_manifold import LearnedDataManifold, RiemannianAdam
from learned_manifold import manifold_cache as mc
from tests.learned_manifold.test_manifold_cache_capacity import CountedPolar, _evaluations, _parameters, _pinned, _steps


def _batches(M, X, probe, B=8):
    """Each minibatch view of the kept data ``X`` queried twice (a miss, then a hit), then the kept ``probe`` of
    another shape in between (so no entry succeeds the batch's)."""
    for s in range(0, X.shape[0], B):
        x = X[s:s + B]
        u = M.proju(x, torch.ones_like(x))
        M.inner(x, u, u)
        M.proju(probe, torch.ones_like(probe))


def test_queries_outside_an_optimiser_step_pin_nothing():
    """Views of one kept data tensor, each queried twice: the cache stays at `CAPACITY` entries (before: one
    pinned entry per batch, for as long as the data lived)."""
    M = LearnedDataManifold(CountedPolar(), tangent_dim=2)
    X = torch.rand(8 * 40, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64) + 1
    with torch.no_grad():
        _batches(M, X, torch.full((1, 2), 1.5, dtype=torch.float64))
    assert len(M._factors().entries) <= mc.FactorCache.CAPACITY
    assert len(_pinned(M)) == 0


def test_inside_an_update_one_storage_pins_one_entry():
    M = LearnedDataManifold(CountedPolar(), tangent_dim=2)
    X = torch.rand(8 * 40, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64) + 1
    probe = torch.full((1, 2), 1.5, dtype=torch.float64)
    with torch.no_grad(), M.one_step():
        _batches(M, X, probe)
    assert len(_pinned(M)) == 2  # X's storage and the probe's
    assert len(M._factors().entries) <= mc.FactorCache.CAPACITY + 2


def test_sixteen_parameters_keep_one_factor_evaluation_each_per_step():
    field = CountedPolar()
    M = LearnedDataManifold(field, tangent_dim=2)
    params = _parameters(16)
    opt = RiemannianAdam(params, lr=1e-2, manifold=M)
    assert _evaluations(field, opt, params, 3) == 3 * 16  # the factor at each step's new point only
    assert len(M._factors().entries) == 16 and len(_pinned(M)) == 16


@pytest.mark.parametrize("count", [20, 64])
def test_up_to_sixty_four_parameters_keep_their_pins_without_a_warning(count):
    """The pin limit in absolute terms (not read from `FactorCache.PIN_LIMIT`): a model's 20 parameter tensors, or
    64, each keep one entry and one factor evaluation per step, silently."""
    field = CountedPolar()
    M = LearnedDataManifold(field, tangent_dim=2)
    params = _parameters(count)
    opt = RiemannianAdam(params, lr=1e-2, manifold=M)
    assert _evaluations(field, opt, params, 2) == 2 * count
    assert len(_pinned(M)) == count


def test_at_the_limit_the_pins_held_stay_and_one_warning_is_given(monkeypatch):
    """Beyond `PIN_LIMIT` the parameters pinned first keep their entries (review s36 R2, item 1: unpinning the
    oldest dropped, in an optimiser's fixed cycle, the next parameter to be stepped, so none kept its entry)."""
    monkeypatch.setattr(mc.FactorCache, "PIN_LIMIT", 4)
    field = CountedPolar()
    M = LearnedDataManifold(field, tangent_dim=2)
    params = _parameters(16)
    opt = RiemannianAdam(params, lr=1e-2, manifold=M)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _steps(opt, params, 2)
        field.calls[0] = 0
        _steps(opt, params, 3)
    limit = [w for w in caught if "PIN_LIMIT = 4" in str(w.message)]
    assert len(limit) == 1
    assert len(_pinned(M)) == 4 and len(M._factors().entries) <= 4 + mc.FactorCache.CAPACITY + 1
    # the 4 pinned parameters: one evaluation per step; the 12 others cycle through 8 places: two each
    assert field.calls[0] == 3 * (4 + 2 * 12)


@pytest.fixture
def compared(monkeypatch):
    """The number of point sets the lookups compare with the query in full (`manifold_cache._first_equal`)."""
    count = [0]
    original = mc._first_equal

    def counted(entries, xf):
        count[0] += len(entries)
        return original(entries, xf)

    monkeypatch.setattr(mc, "_first_equal", counted)
    return count


def test_a_parameters_lookup_compares_one_point_set_however_many_parameters(compared):
    """Before: every lookup compared all the parameters' entries (4 P² comparisons per step)."""
    M = LearnedDataManifold(CountedPolar(), tangent_dim=2)
    params = _parameters(16)
    opt = RiemannianAdam(params, lr=1e-2, manifold=M)
    _steps(opt, params, 2)
    compared[0] = 0
    with torch.no_grad(), M.one_step():
        M.egrad2rgrad(params[5], torch.ones_like(params[5]))
    assert compared[0] == 1
    compared[0] = 0
    _steps(opt, params, 1)
    assert compared[0] == 4 * 16  # egrad2rgrad, component_inner, retr at the parameter; transp at its new point
