"""`LearnedCDC`: the trained network as a co-metric field."""

import copy

import pytest
import torch

from learned_manifold.geometry import eigenpairs, projector_error
from learned_manifold.metrics import LearnedCDC
from learned_manifold.metrics import learned as learned_metrics


def on_sphere(n, seed=0):
    return torch.nn.functional.normalize(torch.randn(n, 3, generator=torch.Generator().manual_seed(seed)), dim=-1)


def test_apply_and_metric_are_inverse_with_tikhonov_and_delta(sphere_model):
    field = LearnedCDC(copy.deepcopy(sphere_model), delta=0.05).double()  # a copy: .double() works in place
    assert field.delta == pytest.approx(sphere_model.config.tikhonov + 0.05)
    x, v = on_sphere(8).double(), torch.randn(8, 3, dtype=torch.float64)
    torch.testing.assert_close(field.metric(x, field.apply(x, v)), v)
    dense = field.dense(x) + field.delta * torch.eye(3)
    torch.testing.assert_close(field.apply(x, v), (dense @ v.unsqueeze(-1)).squeeze(-1))


def test_sigma_default_and_override(sphere_model):
    assert LearnedCDC(sphere_model).sigma == sphere_model.config.default_sigma
    x = on_sphere(4)
    torch.testing.assert_close(LearnedCDC(sphere_model, 0.2).factor(x), sphere_model.factor(x, 0.2))
    with pytest.raises(ValueError, match="sigma"):
        LearnedCDC(sphere_model, -1.0)
    with pytest.raises(ValueError, match="delta"):
        LearnedCDC(sphere_model, delta=-1.0)


def test_bf16_autocast_keeps_the_tangent_space(sphere_model, sphere):
    x = on_sphere(64, seed=3)
    A32 = LearnedCDC(sphere_model).factor(x)
    A16 = LearnedCDC(sphere_model, precision="bf16").factor(x)
    assert A16.dtype == torch.float32
    U32, U16 = eigenpairs(A32).vectors[..., :2], eigenpairs(A16).vectors[..., :2]
    assert projector_error(U32, U16).mean() < 0.05
    with pytest.raises(ValueError, match="precision"):
        LearnedCDC(sphere_model, precision="fp8")


def test_project_is_the_denoiser(sphere_model):
    field = LearnedCDC(sphere_model)
    x = on_sphere(5) * 1.1
    assert field.can_project
    torch.testing.assert_close(field.project(x), sphere_model.denoise(x, field.sigma))


def test_a_sigma_outside_the_training_range_is_warned_about():
    """σ = 1e3 on a model trained on [3e-3, 4] was accepted silently (wrong dimensions); now a warning names the
    σ and the range. The model's default and σ inside the range (ends included) stay silent."""
    import warnings

    from learned_manifold import LearnedDataManifold, MetricModel, ModelConfig

    model = MetricModel(ModelConfig(data_shape=(3,), rank=2, sigma_min=3e-3, sigma_max=4.0,
                                    arch_kwargs={"hidden": 8, "depth": 1, "emb_dim": 8}))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for sigma in (None, 3e-3, 0.1, 4.0):
            LearnedCDC(model, sigma)
    with pytest.warns(UserWarning, match=r"sigma=1000 lies above the model's training range \[0.003, 4\]"):
        LearnedCDC(model, 1e3)
    with pytest.warns(UserWarning, match=r"sigma=1e-06 lies below the model's training range \[0.003, 4\]"):
        LearnedDataManifold(model, sigma=1e-6)


def test_the_landmark_graph_is_not_copied_into_the_state_dict():
    """The k-NN graph over a model's landmarks is rebuilt from the model: its data are not saved a second time (a
    copy made a manifold's state dict hundreds of MB larger and broke strict loading of older ones)."""
    from learned_manifold.metrics.knn import KNNCDC

    graph = learned_metrics._graph(torch.randn(20, 3), 3)
    assert isinstance(graph, KNNCDC) and dict(graph.state_dict()) == {}
    assert set(KNNCDC(torch.randn(20, 3), k=4, sigma=1.0).state_dict()) == {"data"}
