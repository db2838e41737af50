"""The factor cache of `LearnedDataManifold` (`learned_manifold.manifold_cache`): pickling a used manifold, the
field state the key reads, and `LearnedDataManifold.clear_cache`."""

import copy
import io
import math
import pickle
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest
import torch
from torch.autograd import forward_ad

from learned_manifold import LearnedDataManifold, MetricModel, ModelConfig, RiemannianSGD
from learned_manifold.metrics import KNNCDC, CoMetricField, LearnedCDC


class Line(CoMetricField):
    """``G = a aᵀ``, ``a = (cos t, sin t)``: the line at angle ``t`` through the origin in R², ``t`` a plain
    attribute (a float, or a plain tensor); ``extra`` a list attribute the cache key cannot read."""

    low_rank, dim = True, 2

    def __init__(self, angle):
        super().__init__()
        self.angle, self.extra = angle, [0.0]

    def factor(self, x):
        t = torch.as_tensor(self.angle, dtype=x.dtype) + self.extra[0]
        return torch.stack([t.cos(), t.sin()]).reshape(1, 2, 1).expand(x.shape[0], 2, 1)


def _sphere_knn():
    data = torch.nn.functional.normalize(torch.randn(500, 3, generator=torch.Generator().manual_seed(0)), dim=-1)
    return data, KNNCDC(data, k=16, sigma=0.2)


def _used_manifold():
    """A k-NN manifold after one optimiser step (its cache filled, holding weak references). ``tangent_dim=2``: the
    gap rule reads d = 1 at some of these k-NN points (λ₂ up to 0.41 λ₁, a real direction: the manifold warns)."""
    data, field = _sphere_knn()
    M = LearnedDataManifold(field, tangent_dim=2)
    p = torch.nn.Parameter(data[:4].clone())
    opt = RiemannianSGD([p], manifold=M, lr=0.1)
    (-p[:, 2]).sum().backward()
    opt.step()
    assert M._cache is not None
    return M, p.detach().clone()


def test_a_used_manifold_pickles_saves_and_copies_with_the_same_answers():
    """Before: after one optimiser step ``pickle.dumps(M)``, ``torch.save(M)`` and ``copy.deepcopy(M)`` raised
    "cannot pickle 'weakref.ReferenceType' object" (the cache). The copies answer exactly as the original."""
    M, x = _used_manifold()
    u = torch.randn(4, 3, generator=torch.Generator().manual_seed(1))
    buffer = io.BytesIO()
    torch.save({"manifold": M}, buffer)
    buffer.seek(0)
    copies = [pickle.loads(pickle.dumps(M)), torch.load(buffer, weights_only=False)["manifold"], copy.deepcopy(M)]
    assert M._cache is not None, "pickling must not drop the original's cache"
    with torch.no_grad():
        expected = M.egrad2rgrad(x, u), M.proju(x, u), M.inner(x, u)
        for other in copies:
            assert other._cache is None
            got = other.egrad2rgrad(x, u), other.proju(x, u), other.inner(x, u)
            for a, b in zip(got, expected, strict=True):
                torch.testing.assert_close(a, b, atol=0, rtol=0)


def test_the_cache_sees_plain_attributes_of_the_field():
    """A float attribute reassigned, and a plain tensor attribute edited in place: under no_grad ``proju`` had kept
    the old line's answer [[1, 0]] where it is [[0, 1]] (with grad enabled it was right)."""
    x, u = torch.zeros(1, 2), torch.tensor([[1.0, 1.0]])
    for angle in (0.0, torch.tensor(0.0)):
        field = Line(angle)
        M = LearnedDataManifold(field)
        with torch.no_grad():
            torch.testing.assert_close(M.proju(x, u), torch.tensor([[1.0, 0.0]]))
            if isinstance(angle, torch.Tensor):
                angle.fill_(math.pi / 2)
            else:
                field.angle = math.pi / 2
            torch.testing.assert_close(M.proju(x, u), torch.tensor([[0.0, 1.0]]), atol=1e-6, rtol=0)


def test_the_cache_sees_a_learned_fields_precision():
    """``LearnedCDC.precision = "bf16"`` changes the factor; under no_grad the cached fp32 factor had been used."""
    torch.manual_seed(0)
    model = MetricModel(ModelConfig(data_shape=(3,), rank=2, arch_kwargs={"hidden": 16, "depth": 1, "emb_dim": 8}))
    field = LearnedCDC(model, delta=1e-2)
    M = LearnedDataManifold(field)
    x, u = torch.randn(8, 3), torch.randn(8, 3)
    with torch.no_grad():
        before = M.egrad2rgrad(x, u)
        field.precision = "bf16"
        after = M.egrad2rgrad(x, u)
        assert not torch.equal(after, before)
        torch.testing.assert_close(after, LearnedDataManifold(field).egrad2rgrad(x, u), atol=0, rtol=0)
    assert ("precision", "bf16") in M.field_settings()


def test_clear_cache_drops_state_the_key_cannot_read():
    """A list attribute is not in the key (documented): the cached factor stays until `clear_cache`."""
    field = Line(0.0)
    M = LearnedDataManifold(field)
    x, u = torch.zeros(1, 2), torch.tensor([[1.0, 1.0]])
    with torch.no_grad():
        M.proju(x, u)
        field.extra[0] = math.pi / 2
        torch.testing.assert_close(M.proju(x, u), torch.tensor([[1.0, 0.0]]))  # stale, as documented
        M.clear_cache()
        assert M._cache is None
        torch.testing.assert_close(M.proju(x, u), torch.tensor([[0.0, 1.0]]), atol=1e-6, rtol=0)


def test_threads_sharing_a_manifold_under_no_grad_get_their_own_answers():
    """Four threads with different batch sizes share one manifold under no_grad (geoopt's steps): ``_cached`` had
    stored its entry in ``self._cache`` and then returned ``self._cache``, which another thread may have replaced
    in between: another thread's factor (wrong answers, up to 2.3 off) or a size-mismatch ``RuntimeError``. A tiny
    switch interval makes the threads interleave at nearly every bytecode, so the race showed in every run."""
    _, field = _sphere_knn()
    M = LearnedDataManifold(field, tangent_dim=2)  # (the gap rule drops real k-NN directions here: it warns)
    g = torch.Generator().manual_seed(2)
    xs = [torch.nn.functional.normalize(torch.randn(n, 3, generator=g), dim=-1) for n in (3, 5, 7, 9)]
    us = [torch.randn(x.shape, generator=g) for x in xs]

    def work(i):
        with torch.no_grad():
            return M.proju(xs[i], us[i]), M.egrad2rgrad(xs[i], us[i]), M.inner(xs[i], us[i])

    expected = [work(i) for i in range(4)]
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        with ThreadPoolExecutor(4) as pool:
            results = [pool.submit(work, i % 4) for i in range(400)]
            got = [(i % 4, future.result()) for i, future in enumerate(results)]
    finally:
        sys.setswitchinterval(interval)
    for i, answers in got:
        for a, b in zip(answers, expected[i], strict=True):
            torch.testing.assert_close(a, b, atol=0, rtol=0)


def test_forward_mode_ad_under_no_grad_does_not_read_the_cached_factor():
    """``torch.func.jvp``/``jacfwd`` and ``forward_ad`` duals under no_grad after an ordinary no-grad call at the
    same point: the cache (keyed on values) had returned the factor without its tangent: a JVP of 0 (0.233 off),
    ``jacfwd`` 0.16 off, a dual output with no tangent. Each now equals the answer with grad enabled."""
    g = torch.Generator().manual_seed(0)
    data = torch.nn.functional.normalize(torch.randn(500, 3, generator=g, dtype=torch.float64), dim=-1)
    M = LearnedDataManifold(KNNCDC(data, k=16, sigma=0.3), tangent_dim=2)
    x = data[:2] + 0.01 * torch.randn(2, 3, generator=g, dtype=torch.float64)
    u, t = torch.randn(2, 3, generator=g, dtype=torch.float64), torch.randn(2, 3, generator=g, dtype=torch.float64)

    def f(y):
        return M.proju(y, u)

    expected = torch.func.jvp(f, (x,), (t,))[1]
    jacobian = torch.func.jacfwd(f)(x)
    assert expected.abs().max() > 0.1
    with torch.no_grad():
        M.proju(x, u)  # an ordinary no-grad call (an optimiser step) fills the cache at x
        assert M._cache is not None
        torch.testing.assert_close(torch.func.jvp(f, (x,), (t,))[1], expected, atol=1e-12, rtol=0)
        torch.testing.assert_close(torch.func.jacfwd(f)(x), jacobian, atol=1e-12, rtol=0)
        with forward_ad.dual_level():
            tangent = forward_ad.unpack_dual(f(forward_ad.make_dual(x, t))).tangent
        assert tangent is not None
        torch.testing.assert_close(tangent, expected, atol=1e-12, rtol=0)
        assert torch.equal(M._cache["point"], x), "a forward-mode call leaves the cache as it was"


def test_vmap_over_the_points_gets_one_clear_error_and_vmap_over_vectors_works():
    """``torch.func.vmap`` over the points had failed with torch's internal errors ("data-dependent control flow
    ... please file an issue", "index_put_ ... is not possible"; tester B, item 5). Now one error naming the
    manifold and the fix; vmap over the vectors at fixed points, and δ > 0's proju (no factor), still work."""
    from torch.func import vmap

    from learned_manifold.manifold_cache import vmapped
    from tests.conftest import FixedSubspaceField

    data, knn = _sphere_knn()
    x, u = data[:4], torch.randn(4, 3, generator=torch.Generator().manual_seed(3))
    plane = FixedSubspaceField(torch.eye(3)[:, :2].contiguous())
    for field in (plane, knn):
        M = LearnedDataManifold(field, tangent_dim=2)
        calls = {"proju": lambda xi, ui, M=M: M.proju(xi[None], ui[None])[0],
                 "egrad2rgrad": lambda xi, ui, M=M: M.egrad2rgrad(xi[None], ui[None])[0],
                 "inner": lambda xi, ui, M=M: M.inner(xi[None], ui[None])[0],
                 "factor": lambda xi, ui, M=M: M.factor(xi[None])[0],
                 "tangent_space": lambda xi, ui, M=M: M.tangent_space(xi[None])[0]}
        for name, call in calls.items():
            with pytest.raises(RuntimeError, match=r"^LearnedDataManifold does not support torch\.func\.vmap over "
                                                   r"the points: .*pass the points as one batch"):
                vmap(call)(x, u)
                pytest.fail(f"{name} under vmap")
        with torch.no_grad():
            over_vectors = vmap(lambda ui, M=M: M.proju(x[:1], ui[None])[0])(u)
            torch.testing.assert_close(over_vectors, M.proju(x[:1].expand(4, 3), u))
    wide = LearnedDataManifold(FixedSubspaceField(torch.eye(3)[:, :2].contiguous(), delta=0.1))
    torch.testing.assert_close(vmap(lambda xi, ui: wide.proju(xi[None], ui[None])[0])(x, u), u)
    assert vmap(lambda xi: torch.tensor(vmapped(xi)))(x).all() and not vmapped(x)


class _Angle(torch.nn.Module):
    """A submodule holding an angle in a buffer (plus an optional ``extra`` buffer added later)."""

    def __init__(self, angle):
        super().__init__()
        self.register_buffer("angle", torch.tensor(float(angle)))


class TreeLine(CoMetricField):
    """`Line` whose angle lives in a submodule's buffers (``part.angle`` plus ``part.extra`` where present)."""

    low_rank, dim = True, 2

    def __init__(self, angle):
        super().__init__()
        self.part = _Angle(angle)

    def factor(self, x):
        t = self.part.angle.to(x.dtype) + getattr(self.part, "extra", 0.0)
        return torch.stack([t.cos(), t.sin()]).reshape(1, 2, 1).expand(x.shape[0], 2, 1)


@pytest.mark.parametrize("change", ["dict write", "swap", "new buffer", "_apply", "del and register"])
def test_the_cache_sees_changes_of_a_submodules_tensors_made_without_a_version_bump(change):
    """The key's tensor list is gathered once and reused while the module tree holds the same objects: a buffer
    replaced by a direct dict write or by ``_apply`` (which casts and moves that way), a swapped submodule, a buffer
    added to a submodule, a deleted and re-registered buffer all reach the next no-grad query (the old tensors'
    versions are unchanged, so only the tree's identities tell)."""
    field = TreeLine(0.0)
    M = LearnedDataManifold(field)
    x, u = torch.zeros(1, 2), torch.tensor([[1.0, 1.0]])
    with torch.no_grad():
        torch.testing.assert_close(M.proju(x, u), torch.tensor([[1.0, 0.0]]))
        right = torch.tensor(math.pi / 2)
        if change == "dict write":
            field.part._buffers["angle"] = right
        elif change == "swap":
            field.part = _Angle(math.pi / 2)
        elif change == "new buffer":
            field.part.register_buffer("extra", right)
        elif change == "_apply":
            field._apply(lambda t: t + math.pi / 2)
        else:
            del field.part.angle
            field.part.register_buffer("angle", right)
        torch.testing.assert_close(M.proju(x, u), torch.tensor([[0.0, 1.0]]), atol=1e-6, rtol=0)
        assert M._cache is not None
        cached = M._cache
        M.proju(x, u)
        assert M._cache is cached, "an unchanged field hits again"


def test_cache_queries_do_not_walk_the_module_tree(monkeypatch):
    """E (s30): the key walked every submodule's parameters and buffers on every cache hit, and twice on a miss
    (0.12 ms for the default MLP: a cached proju 2.2x slower than before the key read the tensors). Now the tree is
    walked once and only compared by identity afterwards: neither a hit nor a miss at new points walks it."""
    model = MetricModel(ModelConfig(data_shape=(3,), rank=2, arch_kwargs={"hidden": 16, "depth": 1, "emb_dim": 8}))
    M = LearnedDataManifold(LearnedCDC(model, delta=1e-2))
    field, walks = M.field, []
    named_modules = torch.nn.Module.named_modules

    def counted(self, *args, **kwargs):
        if self is field:
            walks.append(1)
        return named_modules(self, *args, **kwargs)

    g = torch.Generator().manual_seed(0)
    x, y, u = (torch.randn(8, 3, generator=g) for _ in range(3))
    with torch.no_grad():
        M.egrad2rgrad(x, u)  # (the first query walks the tree once)
        monkeypatch.setattr(torch.nn.Module, "named_modules", counted)
        cached = M._cache
        M.egrad2rgrad(x, u)
        assert M._cache is cached and not walks, "a hit walked the module tree"
        M.egrad2rgrad(y, u)
        assert M._cache is not cached and not walks, "a miss at new points walked the module tree"
        next(model.parameters()).add_(1.0)  # a version bump: a miss, still no walk
        M.egrad2rgrad(y, u)
        assert not walks
        model.register_buffer("probe", torch.zeros(1))  # a changed tree: walked once (then reused), a miss
        stale = M._cache
        M.egrad2rgrad(y, u)
        assert walks and M._cache is not stale
        walks.clear()
        M.egrad2rgrad(y, u)
        assert not walks


def test_a_lookup_then_an_entry_can_share_one_read_of_the_key(monkeypatch):
    """C (s32): a miss read the field's key twice (`cache_hit`, then `cache_entry`: 28 µs each for the default MLP).
    Given the key read once (`field_key`) neither reads it again; an entry made with the key read before the field
    changed misses afterwards (it never answers for a state its factor was not computed in)."""
    from learned_manifold import manifold_cache as mc
    from learned_manifold import manifold_field_key as mk  # (where the key's functions read it)

    field = LearnedCDC(MetricModel(ModelConfig(data_shape=(3,), rank=2, arch_kwargs={"hidden": 8, "depth": 1,
                                                                                      "emb_dim": 4})))
    x = torch.randn(4, 3, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        A = field.factor(x)
    key, reads = mc.field_key(field), []
    read = mk.field_key
    monkeypatch.setattr(mk, "field_key", lambda f: reads.append(1) or read(f))
    assert not mc.cache_hit(field, None, x, key)
    entry = mc.cache_entry(field, x, A, key=key)
    assert mc.cache_hit(field, entry, x.clone(), key) and not reads
    assert mc.cache_hit(field, entry, x.clone()) and reads == [1]  # (without a key: read there, as before)
    with torch.no_grad():
        next(field.parameters()).add_(1.0)  # the field changes after the key was read
    assert not mc.cache_hit(field, entry, x)
