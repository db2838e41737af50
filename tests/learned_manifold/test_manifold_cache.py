"""The factor cache of `LearnedDataManifold` (`learned_manifold.manifold_cache`): pickling a used manifold, the
field state the key reads, and `LearnedDataManifold.clear_cache`."""

import copy
import io
import math
import pickle

import torch

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
    """A k-NN manifold after one optimiser step (its cache filled, holding weak references)."""
    data, field = _sphere_knn()
    M = LearnedDataManifold(field)
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
