"""`manifold_cache.FactorCache.find`: a lookup costs at most one host sync whatever the number of entries of the
query's shape (tester C, item 1: one ``torch.equal`` per entry, 16 of a step's 18 syncs with 7 parameters), and it
answers exactly as ``torch.equal`` entry by entry did (most recent equal entry first, NaN never equal)."""

import pytest
import torch

from learned_manifold import manifold_cache as mc


@pytest.fixture
def syncs(monkeypatch):
    """A counter of the calls that wait for the device: ``torch.equal`` and reading a tensor on the host."""
    count = [0]

    def counted(original):
        def wrapper(*args, **kwargs):
            count[0] += 1
            return original(*args, **kwargs)
        return wrapper

    monkeypatch.setattr(torch, "equal", counted(torch.equal))
    for name in ("tolist", "item", "__bool__"):
        monkeypatch.setattr(torch.Tensor, name, counted(getattr(torch.Tensor, name)))
    return count


def _cache_of(field, points):
    """A cache holding one entry per point set, as after an optimiser's step on one parameter per point set: the
    factor at the parameter's point read (a miss, then a hit), then the one at its next point, ``points[i]``."""
    cache = mc.FactorCache()
    for y in points:
        x = y + 0.5
        key = mc.field_key(field)
        cache.add(mc.cache_entry(field, x, torch.zeros(*x.shape, 1), key=key))
        assert cache.find(field, x, key) is not None
        cache.add(mc.cache_entry(field, y, torch.zeros(*y.shape, 1), key=key))
    return cache


@pytest.mark.parametrize("n_entries", [1, 2, 7])
def test_a_lookup_costs_one_host_sync_whatever_the_number_of_entries(syncs, n_entries):
    field = torch.nn.Linear(3, 3)
    points = [torch.full((64, 3), float(i)) for i in range(n_entries)]
    cache = _cache_of(field, points)
    assert len(cache.entries) == n_entries
    key = mc.field_key(field)
    syncs[0] = 0
    oldest = cache.find(field, points[0].clone(), key)  # equal values, another tensor: compared against all
    assert syncs[0] == 1 and torch.equal(oldest["point"], points[0]) and cache.entries[0] is oldest
    syncs[0] = 0
    assert cache.find(field, torch.full((64, 3), -1.0), key) is None  # a miss
    assert syncs[0] == 1


def test_a_lookup_answers_as_an_exact_comparison_with_each_entry():
    """Values equal to the last bit hit; a point one ulp off, or with a NaN (never equal to itself), misses; an
    entry made for another state of the field never answers."""
    field = torch.nn.Linear(3, 3)
    x = torch.randn(5, 3, dtype=torch.float64)
    others = [x + 1, x + 2]
    cache = _cache_of(field, [x, *others])
    key = mc.field_key(field)
    assert cache.find(field, x.clone(), key) is not None
    assert cache.find(field, torch.nextafter(x, x + 1), key) is None
    nan = x.clone()
    nan[2, 1] = float("nan")
    cache = _cache_of(field, others)
    cache.add(mc.cache_entry(field, nan, torch.zeros(5, 3, 1), key=key))
    assert len(cache.entries) == 3
    assert cache.find(field, nan.clone(), key) is None
    with torch.no_grad():
        field.weight.add_(1)  # a new state: the old entries can never answer
    key = mc.field_key(field)
    assert cache.find(field, x.clone(), key) is None
