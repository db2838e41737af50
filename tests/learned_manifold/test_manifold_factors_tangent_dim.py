"""A ``tangent_dim`` above the factor's rank, set on a manifold in use, is refused with the manifold's own message
whether or not the point is cached (tester C, s37, problem 6: at a cached point the check was skipped and the
spectral step's internal "d must lie in 1..r" came instead; `CachedFactors._factor_and_pairs_at`)."""

import pytest
import torch

from learned_manifold import LearnedDataManifold, RiemannianSGD
from learned_manifold.metrics import CoMetricField


class RankTwo(CoMetricField):
    """A rank-2 field in R⁴ whose factor depends on the point."""

    low_rank, dim = True, 4

    def factor(self, x):
        return torch.eye(4, 2, dtype=x.dtype).expand(x.shape[0], 4, 2) * (1 + 0.1 * torch.tanh(x[:, :1])).unsqueeze(-1)


@pytest.mark.parametrize("cleared", [False, True])
def test_tangent_dim_raised_above_the_rank_between_steps_names_tangent_dim_and_the_rank(cleared):
    M = LearnedDataManifold(RankTwo(), tangent_dim=2)
    p = torch.nn.Parameter(torch.randn(3, 4, generator=torch.Generator().manual_seed(0)))
    opt = RiemannianSGD([p], manifold=M, lr=0.1, momentum=0.5)
    opt.zero_grad()
    p.sum().backward()
    opt.step()
    M.tangent_dim = 3
    if cleared:
        M.clear_cache()
    opt.zero_grad()
    p.sum().backward()
    with pytest.raises(ValueError, match=r"tangent_dim = 3 exceeds the rank r = 2 of the factor RankTwo returns"):
        opt.step()


def test_a_cached_query_checks_the_current_tangent_dim():
    M = LearnedDataManifold(RankTwo(), tangent_dim=2)
    x = torch.randn(5, 4, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        M.proju(x, torch.ones_like(x))  # (cached, with its eigenpairs)
        M.tangent_dim = 3
        with pytest.raises(ValueError, match=r"tangent_dim = 3 exceeds the rank r = 2"):
            M.proju(x, torch.ones_like(x))
