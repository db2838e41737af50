"""The mean-centred factor matched to the denoiser's Jacobian (``factor_target="jacobian"``, docs/SPEC.md §3), and
``input_scaling="auto"``: how a run draws its probes, what it learns, what it chooses and records."""

import math

import pytest
import torch

from learned_manifold.models import MetricModel, ModelConfig
from learned_manifold_training.config import TrainConfig
from learned_manifold_training.data import Sphere, Torus
from learned_manifold_training.losses import MetricMatchingLoss
from learned_manifold_training.trainer import _batch, _Objective, bandwidth_sampler, train

SMALL = {"batch_size": 64, "hidden": 32, "depth": 1, "emb_dim": 16, "precision": "fp32"}


def test_probes_are_drawn_after_the_noise_so_other_batches_do_not_change():
    """A Jacobian run draws its probes from the step's generator after ``ε``: indices, σ and ε are those of a
    residual run with the same seed and step, the probes are fresh normals, and a residual run draws none."""
    args = (7, 100, (3,), bandwidth_sampler(TrainConfig(), 1.0), 1.0, torch.device("cpu"), 0, 1)
    plain = _batch(args[0], TrainConfig(factor_target="residual"), *args[1:])
    jac = _batch(args[0], TrainConfig(factor_target="jacobian"), *args[1:])
    for a, b in zip(plain[:3], jac[:3], strict=True):
        assert torch.equal(a, b)
    assert plain[3] is None and jac[3].shape == jac[2].shape
    assert not torch.equal(jac[3], jac[2])
    assert _batch(args[0], TrainConfig(factor_target="jacobian", centred=False), *args[1:])[3] is None


def test_the_objective_adds_the_jacobian_mismatch_to_the_denoising_loss():
    """With a denoiser whose noise prediction is linear, ``F(y) = M y`` (so ``Γᶜ = I − σM``), the Jacobian
    term of the objective equals ``‖AAᵀv − (I − σM)v‖²``; checked against the dense product."""
    torch.manual_seed(0)
    model = MetricModel(ModelConfig(data_shape=(4,), rank=4, arch_kwargs={"hidden": 8, "depth": 1, "emb_dim": 8}))
    M = torch.randn(4, 4) * 0.3
    model.noise_z = lambda y, s: y.reshape(y.shape[0], -1) @ M.T
    model.factor_and_noise_z = lambda y, s, grad=1.0: (model.factor_z(y, s), model.noise_z(y, s))
    objective = _Objective(model, MetricMatchingLoss(), factor_target="jacobian")
    z, s, eps, v = torch.randn(5, 4), torch.rand(5) + 0.1, torch.randn(5, 4), torch.randn(5, 4)
    y = z + s[:, None] * eps
    A = model.factor_z(y, s)
    J = torch.eye(4) - s[:, None, None] * M
    expected = (A @ A.transpose(1, 2) @ v[..., None] - J @ v[..., None]).squeeze(-1).pow(2).sum(-1)
    denoising = (y @ M.T - eps).pow(2).mean(-1)
    torch.testing.assert_close(objective(z, s, eps, True, v), denoising + expected, rtol=1e-4, atol=1e-4)


def test_a_jacobian_run_learns_the_circle():
    """Unit circle in R², 2,000 steps of a small network: the Jacobian-trained factor reads the tangent line
    (measured 0.032; a random line scores about 1.0, the residual target at this budget 0.30) and dimension 1
    at most points."""
    circle = Sphere(1, 2)
    data = circle.sample(2000, generator=torch.Generator().manual_seed(0))
    result = train(data, TrainConfig(steps=2000, factor_target="jacobian", grad_clip=0.0, denoiser_warmup=0.5,
                                     **SMALL), manifold=circle, progress=False)
    assert result.validation["tangent_error"] < 0.1
    assert result.validation["dimension_accuracy"] > 0.9


@pytest.mark.parametrize(("name", "expected"), [("torus", "none"), ("sphere", "gaussian")])
def test_auto_input_scaling_preconditions_data_with_a_small_linear_span(name, expected):
    """``"auto"``: the torus fills R³ (span 3 of 3: no preconditioning); S² in R¹⁰ spans 3 of 10 (Gaussian
    preconditioning with its principal directions). The model file records the choice and the span."""
    manifold = Torus(3) if name == "torus" else Sphere(2, 10)
    data = manifold.sample(1000, generator=torch.Generator().manual_seed(0))
    result = train(data, TrainConfig(steps=5, input_scaling="auto", **SMALL), progress=False)
    config = result.model.config
    assert config.input_scaling == expected
    assert config.gaussian_rank == (0 if expected == "none" else min(64, data.shape[1]))
    if expected == "gaussian":  # the three top directions carry all the variance; the rest none
        var = result.model.pc_var
        assert int((var > 1e-3 * var[0]).sum()) == 3
    # the MLP keeps its final LayerNorm unless the input is preconditioned (`TrainConfig.final_norm` None)
    assert config.arch_kwargs["final_norm"] is (expected == "none")


def test_auto_input_scaling_leaves_the_unet_alone():
    images = torch.rand(64, 1, 8, 8)
    cfg = TrainConfig(steps=1, input_scaling="auto", backbone="unet", batch_size=8, precision="fp32")
    assert train(images, cfg, progress=False).model.config.input_scaling == "none"


def test_bad_settings_are_refused_naming_the_field():
    with pytest.raises(ValueError, match="factor_target"):
        TrainConfig(factor_target="score")
    with pytest.raises(ValueError, match="input_scaling"):
        TrainConfig(input_scaling="edm")
    with pytest.raises(TypeError, match="final_norm"):
        TrainConfig(final_norm="no")
    assert TrainConfig(final_norm=None).final_norm is None
    assert math.isclose(TrainConfig(input_scaling="auto").grad_clip, TrainConfig().grad_clip)
