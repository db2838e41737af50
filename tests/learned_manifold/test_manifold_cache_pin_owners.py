"""What an optimiser's pin in `manifold_cache.FactorCache` is tied to (tester C, s37, problems 2 and 5): the
parameter the optimiser steps, not the flat points of a lookup (a channels_last or permuted parameter's are a
temporary copy, whose pin died at once: two factor evaluations per step from the ninth such parameter), and only
for as long as the optimiser lives (a finished run kept as ``p.detach()`` keeps the storage alive, which held its
pin, and its factor, forever and gave a false ``PIN_LIMIT`` warning); and a lookup outside the update at such a
parameter's current points (a loss or check after each step: a fresh flat copy, whose view no pin matches) still
finds its pinned entry (reviewer s37, finding 5), while contiguous parameters' pins add no comparison to it."""

import gc
import warnings

import pytest
import torch

from learned_manifold import LearnedDataManifold, RiemannianAdam, RiemannianSGD
from learned_manifold import manifold_cache as mc
from learned_manifold.metrics import CoMetricField
from tests.learned_manifold.test_manifold_cache_capacity import CountedPolar, _evaluations, _parameters, _pinned, _steps


def _query_each(M, params):
    """The manifold at each parameter's current points, outside any update (``M.proju``, as a check would)."""
    with torch.no_grad():
        for p in params:
            M.proju(p, torch.randn_like(p))


class CountedImages(CoMetricField):
    """A rank-3 field on ``(3, 2, 2)`` images (``D = 12``) whose factor depends on the point, counting its
    evaluations."""

    low_rank, dim = True, 12

    def __init__(self):
        super().__init__()
        self.calls = [0]  # (a list: not a setting the cache key reads)
        self.register_buffer("W", torch.randn(12, 12, 3, generator=torch.Generator().manual_seed(1)) * 0.1)

    def factor(self, x):
        self.calls[0] += 1
        return torch.einsum("bd,dek->bek", torch.tanh(x), self.W) + torch.eye(12, 3, dtype=x.dtype)


def _images(n, layout):
    """``n`` parameters of two ``(3, 2, 2)`` images each whose flattening to ``(2, 12)`` copies."""
    g = torch.Generator().manual_seed(0)
    if layout == "channels_last":
        return [torch.nn.Parameter(torch.randn(2, 3, 2, 2, generator=g).contiguous(memory_format=torch.channels_last))
                for _ in range(n)]
    return [torch.nn.Parameter(torch.randn(2, 2, 2, 3, generator=g).permute(0, 3, 2, 1)) for _ in range(n)]


@pytest.mark.parametrize("layout", ["channels_last", "permuted"])
def test_parameters_whose_flattening_copies_keep_one_factor_evaluation_each_per_step(layout):
    field = CountedImages()
    M = LearnedDataManifold(field, data_shape=(3, 2, 2), tangent_dim=3)
    n = mc.FactorCache.CAPACITY + 4
    params = _images(n, layout)
    assert all(p.reshape(2, 12).data_ptr() != p.data_ptr() for p in params)  # (the flat points are a copy)
    opt = RiemannianSGD(params, manifold=M, lr=1e-2, momentum=0.9)
    assert _evaluations(field, opt, params, 3) == 3 * n  # the factor at each step's new point only (before: 2 * 3 * n)
    assert len(_pinned(M)) == n


def test_finished_runs_kept_as_detached_results_hold_no_pin(monkeypatch):
    """One optimiser with one parameter at a time, each result kept: the cache falls back to `CAPACITY` entries,
    none pinned, and no warning about more parameters than `PIN_LIMIT` (set to 4 here: 10 runs go past it)."""
    monkeypatch.setattr(mc.FactorCache, "PIN_LIMIT", 4)
    M = LearnedDataManifold(CountedPolar(), tangent_dim=2)
    results = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for run in range(10):
            params = _parameters(1 + run)[:1]  # (a new point set each run)
            opt = RiemannianAdam(params, lr=1e-2, manifold=M)
            _steps(opt, params, 2)
            assert len(_pinned(M)) == 1  # (this run's parameter only)
            results.append(params[0].detach())  # (keeps the parameter's storage alive)
            del opt, params
    gc.collect()
    assert not [w for w in caught if "PIN_LIMIT" in str(w.message)]
    entries = M._factors().entries
    assert not any(map(mc._pinned, entries)) and len(entries) <= mc.FactorCache.CAPACITY


def test_a_pin_lasts_as_long_as_its_optimiser_whatever_holds_the_parameter():
    M = LearnedDataManifold(CountedPolar(), tangent_dim=2)
    params = _parameters(3)
    opt = RiemannianAdam(params, lr=1e-2, manifold=M)
    _steps(opt, params, 2)
    gc.collect()
    assert len(_pinned(M)) == 3  # (the optimiser lives: its parameters keep their pins)
    del opt
    gc.collect()
    assert not any(map(mc._pinned, M._factors().entries))  # (the parameters themselves are still held here)
    opt = RiemannianAdam(params, lr=1e-2, manifold=M)  # (a new optimiser on them pins their entries again)
    _steps(opt, params, 1)
    assert len(_pinned(M)) == 3


@pytest.mark.parametrize("layout", ["channels_last", "permuted"])
@pytest.mark.parametrize("n", [3, 8])
def test_lookups_outside_the_update_find_the_pinned_entries_of_parameters_whose_flattening_copies(layout, n):
    field = CountedImages()
    M = LearnedDataManifold(field, data_shape=(3, 2, 2), tangent_dim=3)
    params = _images(n, layout)
    opt = RiemannianSGD(params, manifold=M, lr=1e-2, momentum=0.9)
    _steps(opt, params, 3)
    assert len(_pinned(M)) == n
    field.calls[0] = 0
    _query_each(M, params)
    assert field.calls[0] == 0  # (before: n evaluations, one per parameter)
    _steps(opt, params, 2)  # (the steps after such lookups keep one evaluation per parameter per step)
    assert field.calls[0] == 2 * n
    assert len(_pinned(M)) == n


def test_a_lookup_outside_the_update_compares_no_contiguous_parameters_pinned_entry(monkeypatch):
    """Contiguous parameters' pins are found by their view: a lookup at fresh points is compared with the most
    recent entry only, however many such parameters are pinned."""
    M = LearnedDataManifold(CountedPolar(), tangent_dim=2)
    params = _parameters(mc.FactorCache.CAPACITY + 4)
    opt = RiemannianAdam(params, lr=1e-2, manifold=M)
    _steps(opt, params, 2)
    assert len(_pinned(M)) == len(params)
    compared = []
    first_equal = mc._first_equal

    def counted(entries, xf):
        compared.append(len(entries))
        return first_equal(entries, xf)

    monkeypatch.setattr(mc, "_first_equal", counted)
    with torch.no_grad():
        M.proju(params[0] + 1, torch.randn_like(params[0]))
    assert compared == [1]
