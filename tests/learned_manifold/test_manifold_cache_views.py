"""`manifold_cache.FactorCache` pins one entry per *view* of a storage (review s36 M, item 9): optimiser parameters
that are views of one tensor (``[nn.Parameter(c) for c in big.split(4)]``: ``nn.Parameter`` aliases its data) each
keep their entry, where pins keyed by the storage alone unpinned one another (two evaluations per parameter per
step beyond `FactorCache.CAPACITY` parameters)."""

import torch

from learned_manifold import LearnedDataManifold, RiemannianAdam
from learned_manifold import manifold_cache as mc
from tests.learned_manifold.test_manifold_cache_capacity import CountedPolar, _steps


def test_sixteen_parameters_viewing_one_buffer_evaluate_the_factor_once_each_per_step():
    field = CountedPolar()
    M = LearnedDataManifold(field, tangent_dim=2)
    big = torch.rand(16 * 4, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64) + 1
    params = [torch.nn.Parameter(chunk) for chunk in big.split(4)]
    assert len({p.untyped_storage().data_ptr() for p in params}) == 1  # (one storage)
    opt = RiemannianAdam(params, lr=1e-2, manifold=M)
    _steps(opt, params, 2)
    field.calls[0] = 0
    _steps(opt, params, 3)
    assert field.calls[0] == 3 * 16  # the factor at each step's new point only (before: 2 * 3 * 16)
    entries = M._factors().entries
    assert len(entries) == 16 and sum(mc._pinned(e) for e in entries) == 16


def test_a_view_is_told_apart_by_its_offset_shape_and_strides():
    big = torch.zeros(8, 2)
    ids = {mc.view_id(v) for v in (big[:4], big[4:], big[:2], big.t().t()[:4], big[::2])}
    assert len(ids) == 4  # big[:4] and big.t().t()[:4] are one view; big[::2] has other strides
    assert mc.PointStorage(big[4:]).serves(mc.view_id(big[4:]))
    assert not mc.PointStorage(big[4:]).serves(mc.view_id(big[:4]))
