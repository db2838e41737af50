"""How `LearnedDataManifold` gets its factor (`learned_manifold.manifold_factors`, `manifold_cache.FactorCache`):
one evaluation per parameter per step with several parameters on one manifold, the checks of each point set,
torch's swap mode after a query, and a field built under ``torch.inference_mode()`` where a gradient is wanted."""

import copy
import math
import warnings
import weakref
from contextlib import contextmanager

import pytest
import torch

from learned_manifold import LearnedDataManifold, MetricModel, ModelConfig, RiemannianSGD
from learned_manifold import manifold_cache as mc
from learned_manifold.metrics import KNNCDC, CoMetricField


def _sphere(n=500, seed=0):
    return torch.nn.functional.normalize(torch.randn(n, 3, generator=torch.Generator().manual_seed(seed)), dim=-1)


def _tiny_model(seed):
    torch.manual_seed(seed)
    return MetricModel(ModelConfig(data_shape=(3,), rank=2, arch_kwargs={"hidden": 16, "depth": 1, "emb_dim": 8}))


def _counted(field):
    """``field`` with its ``factor`` calls recorded (the list returned)."""
    calls, original = [], field.factor
    field.factor = lambda xf: calls.append(xf.shape) or original(xf)
    return calls


@pytest.mark.parametrize("layout", ["two parameters", "two optimisers", "eight parameters"])
def test_each_parameter_on_a_shared_manifold_evaluates_the_factor_once_per_step(layout):
    """Tester C (s35, item 3): the cache held one entry, so with two parameters on one manifold (or two optimisers
    sharing it) every step missed it: 2 evaluations per parameter per step, 3x the time. Now each parameter's step
    evaluates the factor once (at its new point), on the same trajectory as a manifold cleared before every
    step, and a long run keeps one entry per parameter."""
    data = _sphere()
    fields = [KNNCDC(data, k=16, sigma=0.2), KNNCDC(data, k=16, sigma=0.2)]
    M, M_ref = (LearnedDataManifold(f, tangent_dim=2) for f in fields)
    calls = _counted(fields[0])
    n = 8 if layout == "eight parameters" else 2
    start = [data[4 * i: 4 * i + 4].clone() for i in range(n)]  # (equal shapes: only the values tell them apart)
    params, params_ref = [torch.nn.Parameter(s.clone()) for s in start], [torch.nn.Parameter(s.clone()) for s in start]
    groups = [[p] for p in params] if layout == "two optimisers" else [params]
    groups_ref = [[p] for p in params_ref] if layout == "two optimisers" else [params_ref]
    opts = [RiemannianSGD(g, manifold=M, lr=0.1, momentum=0.9) for g in groups]
    opts_ref = [RiemannianSGD(g, manifold=M_ref, lr=0.1, momentum=0.9) for g in groups_ref]
    c = torch.tensor([0.3, -0.5, 0.8])
    steps = 5
    for _ in range(steps):
        for ps, optimisers, manifold in ((params, opts, None), (params_ref, opts_ref, M_ref)):
            for opt in optimisers:
                opt.zero_grad()
            sum(-(p @ c).sum() for p in ps).backward()
            for opt in optimisers:
                if manifold is not None:
                    manifold.clear_cache()
                opt.step()
    assert len(calls) == 2 * n + n * (steps - 1)  # step 1: the start and the new point; later: the new point only
    for p, p_ref, s in zip(params, params_ref, start, strict=True):
        torch.testing.assert_close(p, p_ref, atol=0, rtol=0)
        assert (p - s).abs().max() > 1e-2  # it moved
    assert len(M._factors().entries) == n  # a parameter's next point replaced its last


def test_the_cache_keeps_at_most_eight_entries_and_a_parameters_next_point_replaces_its_last():
    """Memory stays bounded: queries at new points of new shapes fill at most `FactorCache.CAPACITY` (8) entries,
    the least recently used going first. A query at new points of the shape of the points just found in the cache
    (an optimiser's next step) replaces that entry instead. (New points of one shape share one entry:
    `test_manifold_cache_entries`.)"""
    data = _sphere()
    M = LearnedDataManifold(KNNCDC(data, k=16, sigma=0.2), tangent_dim=2)
    calls = _counted(M.field)
    points = [data[i: 2 * i + 1] for i in range(12)]  # (i + 1 points each)
    with torch.no_grad():
        for x in points:
            M.proju(x, torch.ones_like(x))
        assert len(M._factors().entries) == mc.FactorCache.CAPACITY == 8  # points 4..11
        u = torch.ones(3)
        M.proju(points[0], u)  # evicted: computed afresh, evicting the least recently used (points 4)
        M.proju(points[4], u)  # (evicting points 5)
        assert len(calls) == 14
        M.proju(points[6], u)  # a hit, now the most recent
        assert len(calls) == 14 and torch.equal(M._cache["point"], points[6])
        M.proju(points[6] + 0.01, u)  # its next point: replaces it
        assert len(M._factors().entries) == 8 and len(calls) == 15
        M.proju(points[7], u)  # (kept)
        assert len(calls) == 15
        M.proju(points[6], u)  # (replaced)
        assert len(calls) == 16


class Polar(CoMetricField):
    """The flat plane in polar coordinates ``(r, θ)``: ``G = diag(1, 1/r²)`` (full rank; λ₂/λ₁ = 1/r²)."""

    low_rank, dim = True, 2

    def factor(self, x):
        return torch.diag_embed(torch.stack([torch.ones_like(x[:, 0]), 1 / x[:, 0]], -1))


@pytest.mark.parametrize("earlier", ["an evaluation loop", "other parameters"])
def test_a_new_optimisation_is_warned_about_however_long_the_manifold_was_used(earlier):
    """Tester C (s35, item 12): the checks ran at the manifold's 1st, 2nd, 4th, … decomposition, so after 100
    queries elsewhere the points where the gap rule drops a real direction (λ₂ = 0.31 λ₁ at r = 1.8) waited for the
    128th. Now a new optimisation's first step is checked, after 100 queries at fresh points of its shape (an
    evaluation loop, which shares one entry and its run) or after 100 optimised parameters."""
    M = LearnedDataManifold(Polar())
    e_theta = torch.tensor([[0.0, 1.0]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # (none of these drops a real direction: λ₂/λ₁ above 0.69)
        for i in range(100):
            x = torch.tensor([[1.0 + 0.002 * i, 0.3]])
            if earlier == "an evaluation loop":
                with torch.no_grad():
                    M.egrad2rgrad(x, e_theta)
            else:
                p = torch.nn.Parameter(x)
                opt = RiemannianSGD([p], manifold=M, lr=1e-3, momentum=0.5)
                p.sum().backward()
                opt.step()
    p = torch.nn.Parameter(torch.tensor([[1.8, 0.3]]))
    opt = RiemannianSGD([p], manifold=M, lr=1e-3, momentum=0.5)
    p.sum().backward()
    with pytest.warns(UserWarning, match=r"keep the gap rule's directions .* at 1 of 1 points \(up to 0\.309"):
        opt.step()


def test_each_parameter_is_checked_at_the_first_second_fourth_and_eighth_step(monkeypatch):
    """A run of one parameter is checked at its 1st, 2nd, 4th and 8th decomposition (its start and the next points
    of steps 1, 3 and 7: the cost still vanishes over a long run); a second optimisation on the same manifold, with a
    parameter of the same shape, is checked at its own start (before: its decompositions were the manifold's 11th to
    14th, none checked)."""
    import learned_manifold.manifold_factors as factors_module

    checked = []
    monkeypatch.setattr(factors_module, "check_decomposition", lambda *args: checked.append(args[1].clone()))
    M = LearnedDataManifold(Polar(), tangent_dim=2)
    starts = torch.tensor([[1.0, 0.0], [1.5, 0.5]]), torch.tensor([[2.0, 1.0], [1.2, -0.5]])
    for start, steps in zip(starts, (9, 3), strict=True):
        p = torch.nn.Parameter(start.clone())
        opt = RiemannianSGD([p], manifold=M, lr=0.01, momentum=0.5)
        for _ in range(steps):
            opt.zero_grad()
            p.sum().backward()
            opt.step()
    assert len(checked) == 4 + 3
    torch.testing.assert_close(checked[0], starts[0], atol=0, rtol=0)
    torch.testing.assert_close(checked[4], starts[1], atol=0, rtol=0)


@contextmanager
def _swap_mode():
    """torch's swap mode (``load_state_dict`` and ``.to()`` swap new values into the existing tensors), restored."""
    before = torch.__future__.get_swap_module_params_on_conversion()
    torch.__future__.set_swap_module_params_on_conversion(True)
    try:
        yield
    finally:
        torch.__future__.set_swap_module_params_on_conversion(before)


def test_torch_swap_mode_updates_the_model_of_a_queried_manifold():
    """Tester C (s35, item 9): under ``set_swap_module_params_on_conversion(True)``, after one no-grad query,
    ``load_state_dict`` and ``M.double()`` raised torch's "Cannot swap ... weakref" (the cache kept weak references
    to every parameter, module-wide, even after ``clear_cache``). Now both work, the next answers are a fresh
    manifold's, no weak reference to a field tensor exists, and ``clear_cache`` forgets the field's tree."""
    model, other = _tiny_model(0), _tiny_model(1)
    M = LearnedDataManifold(model, delta=1e-2)
    x, u = torch.randn(4, 3, generator=torch.Generator().manual_seed(2)), torch.ones(4, 3)
    with _swap_mode(), torch.no_grad():
        before = M.egrad2rgrad(x, u)
        assert not any(weakref.getweakrefs(t) for t in [*model.parameters(), *model.buffers()])
        model.load_state_dict(other.state_dict())
        after = M.egrad2rgrad(x, u)
        assert not torch.equal(after, before)
        torch.testing.assert_close(after, LearnedDataManifold(model, delta=1e-2).egrad2rgrad(x, u), atol=0, rtol=0)
        M.double()
        assert {p.dtype for p in model.parameters()} == {torch.float64}
        x64, u64 = x.double(), u.double()
        torch.testing.assert_close(M.egrad2rgrad(x64, u64), LearnedDataManifold(model, delta=1e-2).egrad2rgrad(
            x64, u64), atol=0, rtol=0)
    assert M.field in mc._TREES
    M.clear_cache()
    assert M.field not in mc._TREES and M._cache is None


class ParameterLine(CoMetricField):
    """``G = a aᵀ``, ``a = (cos t, sin t)``, the angle ``t`` the first entry of a (frozen) parameter: swap mode's
    ``_apply`` swaps new contents into that very tensor, keeping its identity and (here) its version counter. 1,000
    entries: CPU storage of that size freed is taken again by the next but one (`torch.empty` of that size)."""

    low_rank, dim = True, 2

    def __init__(self):
        super().__init__()
        self.angle = torch.nn.Parameter(torch.zeros(1000), requires_grad=False)

    def factor(self, x):
        t = self.angle[0].to(x.dtype)
        return torch.stack([t.cos(), t.sin()]).reshape(1, 2, 1).expand(x.shape[0], 2, 1)


def test_swapped_parameter_contents_are_seen_by_the_cache():
    """Swap mode's ``_apply`` leaves a parameter's identity and version counter as they were: only its contents'
    address tells. Twice in a row with no query between, the second new contents had taken the address of those the
    last query read (freed by the first): the entry, which keeps only a weak reference to that storage, sees it
    died and misses."""
    field = ParameterLine()
    M = LearnedDataManifold(field)
    x, u = torch.zeros(1, 2), torch.tensor([[1.0, 1.0]])
    with _swap_mode(), torch.no_grad():
        at_0 = M.proju(x, u)
        field._apply(lambda t: t + math.pi / 4)
        at_45 = M.proju(x, u)
        field._apply(lambda t: t + math.pi / 4)
        field._apply(lambda t: t + math.pi / 4)  # now 3π/4: u is normal to the line
        at_135 = M.proju(x, u)
    torch.testing.assert_close(at_0, torch.tensor([[1.0, 0.0]]))
    torch.testing.assert_close(at_45, torch.tensor([[1.0, 1.0]]), atol=1e-6, rtol=0)
    torch.testing.assert_close(at_135, torch.zeros(1, 2), atol=1e-6, rtol=0)
    assert field.angle._version == 0


def test_a_manifold_loaded_under_inference_mode_names_it_where_a_gradient_is_wanted():
    """Tester B (s35, item 2): a manifold built under ``torch.inference_mode()`` raised torch's raw "Inference
    tensors cannot be saved for backward" from inside the network in ``proju``/``egrad2rgrad``/``inner`` with points
    that require grad. Now one error naming the field and the fix; no-grad queries work as before, the copy the
    message names differentiates, and a k-NN field built there (which differentiates fine) is not refused."""
    with torch.inference_mode():
        M = LearnedDataManifold(_tiny_model(0), tangent_dim=2)
        K = LearnedDataManifold(KNNCDC(_sphere(300), k=16, sigma=0.2), tangent_dim=2)
    x = _sphere(4, seed=1).requires_grad_()
    u = torch.ones(4, 3)
    for name in ("proju", "egrad2rgrad", "inner"):
        with pytest.raises(RuntimeError, match=r"^LearnedDataManifold: the field LearnedCDC holds tensors made under "
                                               r"torch\.inference_mode\(\) \(model\..*build or load the manifold "
                                               r"outside torch\.inference_mode\(\)"):
            getattr(M, name)(x, u)
    with torch.no_grad():
        assert M.proju(x, u).isfinite().all()
    with torch.inference_mode(False):
        copied = copy.deepcopy(M)
    copied.proju(x, u).sum().backward()
    assert x.grad.isfinite().all() and x.grad.abs().sum() > 0
    x.grad = None
    K.proju(x, u).sum().backward()
    assert x.grad.isfinite().all()
