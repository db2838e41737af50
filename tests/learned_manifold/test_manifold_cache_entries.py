"""What the factor cache of `LearnedDataManifold` keeps (`learned_manifold.manifold_cache.FactorCache`): one entry
and a sparse check schedule for a loop of queries at fresh points, none of the field's memory after a cast or move,
no entry dropped by landing under forward-mode AD, and answers in the dtype of the query."""

import gc
import math
import weakref

import torch
from torch.multiprocessing.reductions import StorageWeakRef

from learned_manifold import LearnedDataManifold
from learned_manifold import manifold_cache as mc
from learned_manifold.metrics import KNNCDC, CoMetricField


def _sphere(n=300, seed=0):
    return torch.nn.functional.normalize(torch.randn(n, 3, generator=torch.Generator().manual_seed(seed)), dim=-1)


def test_a_loop_of_queries_at_fresh_points_holds_one_entry_and_is_checked_at_powers_of_two(monkeypatch):
    """Review s35 (finding 1): every query of ``for x in loader: M.proju(x, u)`` missed and started a point set of
    its own, so each was checked (a host sync) and the cache filled to 8 factors. Now a cold entry replaces the one
    before it and continues its run: one entry, checked at the loop's 1st, 2nd, 4th, … query."""
    import learned_manifold.manifold_factors as factors_module

    checked = []
    monkeypatch.setattr(factors_module, "check_decomposition", lambda *args: checked.append(1))
    M = LearnedDataManifold(KNNCDC(_sphere(), k=16, sigma=0.2), tangent_dim=2)
    n = 40
    with torch.no_grad():
        for i in range(n):
            x = _sphere(8, seed=i + 1)
            M.proju(x, torch.ones_like(x))
            assert len(M._factors().entries) == 1
    assert len(checked) <= math.log2(n) + 1
    assert len(checked) == 6  # queries 1, 2, 4, 8, 16, 32


def test_casting_the_field_frees_its_old_tensors_without_another_query():
    """Review s35 (finding 2): the entries and the field's `FieldTree` held the field's tensors (their storages), so
    ``M.double()`` (or ``M.cpu()`` off a GPU) kept the old copy alive until the next query. Now the old data buffer
    and its memory die at once, entries and all kept."""
    field = KNNCDC(_sphere(), k=16, sigma=0.2)
    M = LearnedDataManifold(field, tangent_dim=2)
    with torch.no_grad():
        M.proju(_sphere(4, seed=1), torch.ones(4, 3))
    tensors = [*field.buffers(), *field.parameters()]
    old, memory = [weakref.ref(t) for t in tensors], [StorageWeakRef(t.untyped_storage()) for t in tensors]
    del tensors
    assert old and M._cache is not None
    M.double()
    gc.collect()
    assert all(r() is None for r in old) and all(m.expired() for m in memory)
    assert M._cache is not None  # (the entry is kept: it misses, the field's dtype having changed)


def test_an_entry_whose_field_storage_died_never_hits():
    """A tensor's new contents may take the address of contents that died: the entry, which no longer keeps them,
    refuses a hit once one of its storages is dead, whatever the addresses read now."""
    field = KNNCDC(_sphere(), k=16, sigma=0.2)
    M = LearnedDataManifold(field, tangent_dim=2)
    x = _sphere(4, seed=1)
    with torch.no_grad():
        M.proju(x, torch.ones(4, 3))
        entry = M._cache
        assert mc.cache_hit(field, entry, x.reshape(4, 3))
        dead = mc.StorageRefs([torch.zeros(5)])  # (its tensor died at once)
        entry["held"] = dead
        assert not dead.alive() and not mc.cache_hit(field, entry, x.reshape(4, 3))


def test_storing_no_entry_keeps_the_other_entries():
    """Review s35 (finding 8): landing under forward-mode AD stores ``None`` (it makes no entry), which emptied the
    whole cache and so every other parameter's factor. Storing ``None`` now changes nothing; `clear_cache` empties."""
    M = LearnedDataManifold(KNNCDC(_sphere(), k=16, sigma=0.2), tangent_dim=2)
    with torch.no_grad():
        for n in (3, 4):
            x = _sphere(n, seed=n)
            M.proju(x, torch.ones_like(x))
    entries = M._factors().entries
    assert len(entries) == 2
    M._cache = None
    assert M._factors().entries == entries
    M.clear_cache()
    assert M._cache is None and M._factors().entries == ()


class CircleTangent(CoMetricField):
    """The unit circle's tangent ``(−sin φ, cos φ)`` at the angle ``φ`` of ``x``: a factor whose rounding depends
    on the dtype of the points."""

    low_rank, dim = True, 2

    def factor(self, x):
        phi = torch.atan2(x[:, 1], x[:, 0])
        return torch.stack([-phi.sin(), phi.cos()], -1).unsqueeze(-1)


def test_the_same_points_in_another_dtype_are_answered_in_that_dtype():
    """Tester A (item 2): ``torch.equal`` compares a float32 query equal to its float64 copy, so the cache must also
    compare dtypes (`manifold_cache.cache_hit`): float64, then the same values in float32, then float64 again, on
    one manifold, each give what a fresh manifold gives in the query's dtype."""
    field = CircleTangent
    x32 = torch.nn.functional.normalize(torch.randn(6, 2, generator=torch.Generator().manual_seed(1)), dim=-1)
    u32 = torch.randn(6, 2, generator=torch.Generator().manual_seed(2))
    x64, u64 = x32.double(), u32.double()
    M = LearnedDataManifold(field(), tangent_dim=1)
    with torch.no_grad():
        want = {dtype: LearnedDataManifold(field(), tangent_dim=1).proju(x, u)
                for dtype, x, u in ((torch.float64, x64, u64), (torch.float32, x32, u32))}
        assert not torch.equal(want[torch.float32].double(), want[torch.float64])  # (the dtypes round differently)
        for dtype, x, u in ((torch.float64, x64, u64), (torch.float32, x32, u32), (torch.float64, x64, u64)):
            got = M.proju(x, u)
            assert got.dtype == dtype and torch.equal(got, want[dtype])
