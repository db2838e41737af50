"""A field's ``apply(x, w)`` is the co-metric, and ``apply(fn)`` is still `torch.nn.Module.apply`: a user's module
holding a field or a manifold can be initialised with ``model.apply(init_fn)``."""

import torch
from torch import nn

from learned_manifold import LearnedDataManifold, MetricModel, ModelConfig
from learned_manifold.metrics import KNNCDC, CoMetricField, EuclideanMetric, LearnedCDC


class Holder(nn.Module):
    def __init__(self, manifold):
        super().__init__()
        self.head = nn.Linear(3, 3)
        self.manifold = manifold


def test_module_apply_reaches_every_submodule_through_a_field_and_a_manifold():
    model = MetricModel(ModelConfig(data_shape=(3,), rank=2, arch_kwargs={"hidden": 8, "depth": 1, "emb_dim": 8}))
    field = LearnedCDC(model)
    seen = []
    assert Holder(LearnedDataManifold(field)).apply(lambda m: seen.append(type(m).__name__)) is not None
    assert {"Linear", "LearnedCDC", "MetricModel", "LearnedDataManifold", "Holder"} <= set(seen)
    x, w = torch.randn(4, 3), torch.randn(4, 3)
    A = field.factor(x)
    torch.testing.assert_close(field.apply(x, w), (A @ A.transpose(1, 2) @ w.unsqueeze(-1)).squeeze(-1))
    torch.testing.assert_close(field.apply(x, w=w), field.apply(x, w))  # keywords still reach the co-metric


def test_a_users_own_field_gets_both_meanings_too():
    class Doubling(CoMetricField):
        def apply(self, x, w):
            return 2 * w

        def metric(self, x, v):
            return v / 2

    field = Doubling()
    assert torch.equal(field.apply(torch.zeros(1, 2), torch.ones(1, 2)), torch.full((1, 2), 2.0))
    assert field.apply(lambda m: None) is field
    for other in (EuclideanMetric(), KNNCDC(torch.randn(20, 3), k=4, sigma=0.5)):
        assert other.apply(lambda m: None) is other
