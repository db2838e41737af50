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


def tiny_model(landmarks: int = 0, **arch):
    from learned_manifold import MetricModel, ModelConfig

    torch.manual_seed(0)
    return MetricModel(ModelConfig(data_shape=(3,), rank=2, landmarks=landmarks,
                                   arch_kwargs={"hidden": 8, "depth": 1, "emb_dim": 8} | arch))


def test_the_landmark_graph_follows_new_landmarks():
    """After `load_state_dict` or `set_landmarks` the graph searched the old landmarks: `beyond_data` gave 0 for
    points 3 away from every landmark, and nonzero distances at the landmarks themselves."""
    from learned_manifold import LearnedDataManifold

    model = tiny_model(landmarks=50)
    old = on_sphere(50, seed=1)
    model.set_landmarks(old)
    manifold = LearnedDataManifold(model, sigma=0.1)
    field = manifold.field
    assert field.beyond_data(old[:5]).abs().max() == 0  # the index is built on the old landmarks
    state = manifold.state_dict()
    state["field.model.landmarks"] = old + torch.tensor([4.0, 0.0, 0.0])
    manifold.load_state_dict(state)
    assert field.beyond_data(old[:5]).tolist() == pytest.approx(
        torch.cdist(old[:5], state["field.model.landmarks"]).min(-1).values.tolist())
    assert field.data_graph.neighbours(state["field.model.landmarks"][:5])[0][:, 0].abs().max() == 0
    model.set_landmarks(old)
    assert field.beyond_data(old[:5]).abs().max() == 0
    moved = field.double()  # the move gives the graph the moved landmarks, which later loads update
    moved.model.set_landmarks(old.double() * 3)
    assert moved.data_graph.data.data_ptr() == moved.model.landmarks.data_ptr()
    assert moved.beyond_data(old[:5].double() * 3).abs().max() == 0


def test_train_keeps_the_network_in_eval_mode():
    """``.train()`` on a module holding the manifold used to turn the network's dropout back on."""
    from learned_manifold import LearnedDataManifold

    manifold = LearnedDataManifold(tiny_model(), sigma=0.1)
    holder = torch.nn.Module()
    holder.manifold = manifold
    holder.train()
    assert manifold.training and manifold.field.training
    assert not any(module.training for module in manifold.field.model.modules())


def test_a_model_on_another_device_is_named_in_one_clear_error():
    """A query on another device than the model failed deep in the network ("Tensor on device meta ...")."""
    field = LearnedCDC(tiny_model(), sigma=0.1).to("meta")
    with pytest.raises(ValueError, match=r"^x is on cpu but the model is on meta; move the field"):
        field.factor(torch.randn(4, 3))
    with pytest.raises(ValueError, match=r"^x is on cpu but the model is on meta"):
        field.project(torch.randn(4, 3))


def test_a_model_with_one_landmark_opens_without_a_graph():
    """A model trained with ``--landmarks 1`` could not be opened: the graph over its single landmark raised "data
    must hold at least 2 points", about data the user never gave. It now has no graph, as one without landmarks;
    only ``init="graph"`` refuses, and ``data`` given by the caller is still checked."""
    from learned_manifold import geodesic
    from learned_manifold.geodesic_init import auto_init

    model = tiny_model(landmarks=1)
    model.set_landmarks(on_sphere(1))
    field = LearnedCDC(model, sigma=0.1)
    assert field.data_graph is None and field.beyond_data(on_sphere(4)) is None
    assert auto_init(field) == "landing" and field.factor(on_sphere(4)).shape == (4, 3, 2)
    with pytest.raises(ValueError, match=r"^init='graph' needs a field that holds data"):
        geodesic(field, on_sphere(1, seed=1), on_sphere(1, seed=2), n_points=8, init="graph")
    assert LearnedCDC(tiny_model(landmarks=2), sigma=0.1).data_graph.data.shape == (2, 3)
    with pytest.raises(ValueError, match=r"^data must hold at least 2 points of dimension 3, got shape \(1, 3\)"):
        LearnedCDC(model, sigma=0.1, data=on_sphere(1))


def test_the_docstring_names_the_routes_to_a_one_landmark_model_that_remain():
    """The docstring cited ``--landmarks 1`` as the source of a one-landmark model; training refuses it now
    (tester A), and only an older file or a hand-built ``ModelConfig`` gives one."""
    from learned_manifold_training.config import TrainConfig

    with pytest.raises(ValueError, match="^landmarks must be 0"):
        TrainConfig(landmarks=1)
    assert tiny_model(landmarks=1).config.landmarks == 1  # ModelConfig still takes it
    doc = " ".join(LearnedCDC.__doc__.split())
    assert "Training refuses one landmark (``--landmarks 1``, ``TrainConfig(landmarks=1)``)" in doc
    assert "hand-built ``ModelConfig(landmarks=1)``" in doc


@pytest.mark.parametrize("route", ["load_state_dict(assign=True)", "model.landmarks = new"])
def test_the_landmark_graph_follows_a_replaced_landmarks_buffer(route):
    """Both routes replace the model's ``landmarks`` buffer by a new tensor (no in-place copy): the graph kept
    viewing the old tensor, so `beyond_data` read about 3 at the new landmarks and 0 at the old ones (tester C,
    p10)."""
    model = tiny_model(landmarks=40)
    old = on_sphere(40, seed=1)
    model.set_landmarks(old)
    field = LearnedCDC(model, sigma=0.1)
    assert field.beyond_data(old[:4]).abs().max() == 0  # the graph is built (and searched) once
    new = old + torch.tensor([3.0, 0.0, 0.0])
    if route == "model.landmarks = new":
        model.landmarks = new.clone()
    else:
        model.load_state_dict({**model.state_dict(), "landmarks": new.clone()}, assign=True)
    assert model.landmarks.data_ptr() != old.data_ptr()
    assert field.data_graph.data.data_ptr() == model.landmarks.data_ptr()
    assert field.beyond_data(new[:4]).abs().max() == 0
    assert field.beyond_data(old[:4]).tolist() == pytest.approx(torch.cdist(old[:4], new).min(-1).values.tolist())


def test_apply_delta_and_metric_include_the_models_tikhonov_term():
    """λ_T > 0 (a model trained with ``--tikhonov``): the isotropic part is ``λ_T + δ``, ``apply`` is
    ``(AAᵀ + (λ_T + δ) I) w`` and ``metric`` its inverse; the other tests' models have λ_T = 0 and cannot tell a
    dropped λ_T (tester A, p09)."""
    from learned_manifold import MetricModel, ModelConfig

    torch.manual_seed(0)
    model = MetricModel(ModelConfig(data_shape=(3,), rank=2, tikhonov=0.1,
                                    arch_kwargs={"hidden": 16, "depth": 1, "emb_dim": 8})).double()
    field = LearnedCDC(model, sigma=0.1, delta=0.01)
    assert field.delta == pytest.approx(0.11) and field.extra_delta == 0.01
    x, w = torch.randn(6, 3, dtype=torch.float64), torch.randn(6, 3, dtype=torch.float64)
    A = field.factor(x)
    G = A @ A.mT + 0.11 * torch.eye(3, dtype=torch.float64)
    torch.testing.assert_close(field.apply(x, w), (G @ w.unsqueeze(-1)).squeeze(-1))
    torch.testing.assert_close(field.metric(x, w), torch.linalg.solve(G, w.unsqueeze(-1)).squeeze(-1))
