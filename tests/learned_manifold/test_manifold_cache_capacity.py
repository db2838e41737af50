"""`manifold_cache.FactorCache`: every parameter an optimiser steps on one manifold keeps its cache entry, however
many there are (tester C, item 7: from the ninth parameter a fixed 8-entry cache thrashed, every parameter's
factor evaluated twice per step, silently), and entries whose parameters have died go again."""

import gc
import warnings

import torch

from learned_manifold import LearnedDataManifold, RiemannianAdam
from learned_manifold import manifold_cache as mc
from learned_manifold.metrics import CoMetricField


class CountedPolar(CoMetricField):
    """The flat plane in polar coordinates ``(r, θ)`` (``G = diag(1, 1/r²)``), counting its factor evaluations."""

    low_rank, dim = True, 2

    def __init__(self):
        super().__init__()
        self.calls = [0]  # (a list: not a setting the cache key reads)

    def factor(self, x):
        self.calls[0] += 1
        return torch.diag_embed(torch.stack([torch.ones_like(x[:, 0]), 1 / x[:, 0]], -1))


def _parameters(n, batch=4):
    g = torch.Generator().manual_seed(n)
    return [torch.nn.Parameter(torch.rand(batch, 2, generator=g, dtype=torch.float64) + 1) for _ in range(n)]


def _steps(opt, params, n):
    for _ in range(n):
        opt.zero_grad()
        sum((p ** 2).sum() for p in params).backward()
        opt.step()


def _pinned(M):
    """The entries of ``M``'s factor cache pinned to a parameter."""
    return [e for e in M._factors().entries if mc._pinned(e)]


def _evaluations(field, opt, params, steps, warm=2):
    """The factor evaluations of ``field`` (``calls[0]``) over ``steps`` optimiser steps after ``warm`` ones, with
    the steps' warnings raised as errors."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _steps(opt, params, warm)
        field.calls[0] = 0
        _steps(opt, params, steps)
    return field.calls[0]


def test_every_parameter_keeps_one_factor_evaluation_per_step_beyond_the_capacity():
    field = CountedPolar()
    M = LearnedDataManifold(field, tangent_dim=2)
    n = mc.FactorCache.CAPACITY + 2
    params = _parameters(n)
    opt = RiemannianAdam(params, lr=1e-2, manifold=M)
    _steps(opt, params, 2)
    field.calls[0] = 0
    _steps(opt, params, 3)
    assert field.calls[0] == 3 * n  # the factor at each step's new point only (before: 6 n)
    assert len(M._factors().entries) == n


def test_entries_of_dead_parameters_go_with_the_next_new_entries():
    """Memory follows the parameters in use: once they are gone, the cache holds `CAPACITY` entries again."""
    M = LearnedDataManifold(CountedPolar(), tangent_dim=2)
    params = _parameters(12)
    opt = RiemannianAdam(params, lr=1e-2, manifold=M)
    _steps(opt, params, 2)
    assert len(M._factors().entries) == 12
    del opt, params
    gc.collect()
    with torch.no_grad():
        for i in range(3):
            M.proju(torch.full((3, 2), 1.0 + i, dtype=torch.float64), torch.ones(3, 2, dtype=torch.float64))
    assert len(M._factors().entries) == mc.FactorCache.CAPACITY
