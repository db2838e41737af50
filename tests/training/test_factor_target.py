"""The mean-centred factor matched to the denoiser's Jacobian (``factor_target="jacobian"``, docs/SPEC.md §3), and
``input_scaling="auto"``: how a run draws its probes, what it learns, what it chooses and records."""

import math

import pytest
import torch

from learned_manifold.models import MetricModel, ModelConfig
from learned_manifold_training.config import TrainConfig
from learned_manifold_training.data import Sphere, Torus
from learned_manifold_training.losses import MetricMatchingLoss
from learned_manifold_training.objective import TrainingObjective
from learned_manifold_training.train_loop import _batch
from learned_manifold_training.trainer import bandwidth_sampler, train

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
    term of the objective equals ``‖AAᵀv − Γᶜᵀv‖²``: the trainer reads the transposed product by one reverse-mode
    pass (same Frobenius distance, `test_losses`); ``M`` is not symmetric, so ``Γᶜv`` would fail."""
    torch.manual_seed(0)
    model = MetricModel(ModelConfig(data_shape=(4,), rank=4, arch_kwargs={"hidden": 8, "depth": 1, "emb_dim": 8}))
    M = torch.randn(4, 4) * 0.3
    model.noise_z = lambda y, s: y.reshape(y.shape[0], -1) @ M.T
    objective = TrainingObjective(model, MetricMatchingLoss(), factor_target="jacobian")
    z, s, eps, v = torch.randn(5, 4), torch.rand(5) + 0.1, torch.randn(5, 4), torch.randn(5, 4)
    y = z + s[:, None] * eps
    A = model.factor_z(y, s)
    J = torch.eye(4) - s[:, None, None] * M
    expected = (A @ A.transpose(1, 2) @ v[..., None] - J.transpose(1, 2) @ v[..., None]).squeeze(-1).pow(2).sum(-1)
    denoising = (y @ M.T - eps).pow(2).mean(-1)
    torch.testing.assert_close(objective(z, s, eps, True, v), denoising + expected, rtol=1e-4, atol=1e-4)


def test_the_tikhonov_term_is_part_of_the_matched_co_metric():
    """``tikhonov = λ_T``: the model is used as ``G = AAᵀ + λ_T I`` (SPEC §1), so the Jacobian term matches
    ``(AAᵀ + λ_T I)v`` to ``Γᶜᵀv`` (it had ignored λ_T in training and added it afterwards: G too large by λ_T)."""
    torch.manual_seed(0)
    model = MetricModel(ModelConfig(data_shape=(4,), rank=4, arch_kwargs={"hidden": 8, "depth": 1, "emb_dim": 8}))
    M = torch.randn(4, 4) * 0.3
    model.noise_z = lambda y, s: y.reshape(y.shape[0], -1) @ M.T
    lam = 0.5
    objective = TrainingObjective(model, MetricMatchingLoss(tikhonov=lam), factor_target="jacobian")
    z, s, eps, v = torch.randn(5, 4), torch.rand(5) + 0.1, torch.randn(5, 4), torch.randn(5, 4)
    y = z + s[:, None] * eps
    A = model.factor_z(y, s)
    J = torch.eye(4) - s[:, None, None] * M
    Gv = (A @ A.transpose(1, 2) @ v[..., None]).squeeze(-1) + lam * v
    expected = (Gv - (J.transpose(1, 2) @ v[..., None]).squeeze(-1)).pow(2).sum(-1)
    denoising = (y @ M.T - eps).pow(2).mean(-1)
    torch.testing.assert_close(objective(z, s, eps, True, v), denoising + expected, rtol=1e-4, atol=1e-4)


def test_several_probes_average_their_single_probe_losses():
    """``jacobian_probes = K``: the factor's term is the mean of the K one-probe terms, each probe read by its own
    backward pass (probes ``(B, K, *data_shape)``); the denoising term is unchanged."""
    model, (z, eps, _, s) = _small_model_and_batch()
    v = torch.randn(8, 3, 5, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    one = TrainingObjective(model, MetricMatchingLoss(), factor_target="jacobian")
    three = TrainingObjective(model, MetricMatchingLoss(), factor_target="jacobian", jacobian_probes=3)
    y = z + s[:, None] * eps
    denoising = (model.noise_z(y, s) - eps).pow(2).mean(-1)
    singles = [one(z, s, eps, True, v[:, i]) - denoising for i in range(3)]
    torch.testing.assert_close(three(z, s, eps, True, v), (denoising + sum(singles) / 3).float())
    assert not torch.allclose(singles[0], singles[1])  # the probes differ, so the mean is not one of them


def test_several_probes_are_drawn_per_point_and_one_probe_keeps_its_old_draws():
    args = (7, 100, (3,), bandwidth_sampler(TrainConfig(), 1.0), 1.0, torch.device("cpu"), 0, 1)
    one = _batch(args[0], TrainConfig(), *args[1:])[3]
    four = _batch(args[0], TrainConfig(jacobian_probes=4), *args[1:])[3]
    assert one.shape == (TrainConfig().batch_size, 3) and four.shape == (TrainConfig().batch_size, 4, 3)
    assert not torch.equal(four[:, 0], four[:, 1])


def _grads(model: MetricModel, loss: torch.Tensor) -> dict[str, torch.Tensor]:
    model.zero_grad()
    loss.backward()
    return {k: p.grad.clone() if p.grad is not None else torch.zeros_like(p) for k, p in model.named_parameters()}


def _small_model_and_batch() -> tuple[MetricModel, tuple[torch.Tensor, ...]]:
    """A float64 two-network model on R⁵ (rank 2) and a batch of 8: ``z``, ``ε``, probes ``v``, ``σ`` (seeded)."""
    torch.manual_seed(0)
    model = MetricModel(ModelConfig(data_shape=(5,), rank=2, arch_kwargs={"hidden": 16, "depth": 1,
                                                                          "emb_dim": 8})).double()
    g = torch.Generator().manual_seed(1)
    z, eps, v = (torch.randn(8, 5, generator=g, dtype=torch.float64) for _ in range(3))
    return model, (z, eps, v, torch.rand(8, generator=g, dtype=torch.float64) + 0.1)


@pytest.mark.parametrize("target", ["jacobian", "residual"])
def test_the_factor_loss_covers_the_first_rows_of_the_batch(target):
    """``factor_fraction = 3/8`` on a batch of 8: the batch mean of the per-sample loss is the denoiser's mean
    loss over all 8 points plus the factor's mean loss over the first 3 (each alone, with ``fraction = 1``, on
    those rows); the factor network's gradient does not see the other 5 points, the denoiser's does."""
    model, (z, eps, v, s) = _small_model_and_batch()
    part = TrainingObjective(model, MetricMatchingLoss(), factor_target=target, factor_fraction=3 / 8)
    whole = TrainingObjective(model, MetricMatchingLoss(), factor_target=target)
    head = whole(z[:3], s[:3], eps[:3], True, v[:3]) - whole(z[:3], s[:3], eps[:3], False, v[:3])  # factor's own
    denoising = whole(z, s, eps, False)
    torch.testing.assert_close(part(z, s, eps, True, v).mean(), denoising.mean() + head.mean())
    moved = z.clone()
    moved[3:] += 1.0
    base, other = _grads(model, part(z, s, eps, True, v).mean()), _grads(model, part(moved, s, eps, True, v).mean())
    same = {name: torch.allclose(base[name], other[name], rtol=1e-10, atol=1e-12) for name in base}
    assert all(same[name] for name in same if name.startswith("factor_net"))
    assert not all(same[name] for name in same if name.startswith("denoiser_net"))


def test_a_run_with_the_factor_on_a_quarter_of_each_batch_learns_the_circle():
    """As `test_a_jacobian_run_learns_the_circle`, with batches of 256 and the factor's loss on 64 points of each
    (measured 0.024; on 16 of 64 the factor read 0.44: like a whole run at batch 16, 0.62, it saw too few points)."""
    circle = Sphere(1, 2)
    data = circle.sample(2000, generator=torch.Generator().manual_seed(0))
    result = train(data, TrainConfig(steps=2000, factor_fraction=0.25, **{**SMALL, "batch_size": 256}),
                   manifold=circle, progress=False)
    assert result.validation["tangent_error"] < 0.1
    assert result.validation["dimension_accuracy"] > 0.9


@pytest.mark.parametrize("target", ["jacobian", "residual"])
def test_a_frozen_denoiser_gives_the_same_factor_gradient_and_none_of_its_own(target):
    """``freeze_denoiser``: the objective's value is unchanged (the denoiser's loss is still reported), the factor
    network's gradient is the same to the last bit, and the denoiser's weights get no gradient at all."""
    model, (z, eps, v, s) = _small_model_and_batch()
    frozen = TrainingObjective(model, MetricMatchingLoss(), factor_target=target, freeze_denoiser=True)
    trained = TrainingObjective(model, MetricMatchingLoss(), factor_target=target)
    torch.testing.assert_close(frozen(z, s, eps, True, v), trained(z, s, eps, True, v), rtol=0, atol=0)
    model.zero_grad()
    frozen(z, s, eps, True, v).mean().backward()
    got = {k: p.grad for k, p in model.named_parameters()}
    want = _grads(model, trained(z, s, eps, True, v).mean())
    assert all(got[k] is None for k in got if k.startswith("denoiser_net"))
    assert any(want[k].abs().sum() > 0 for k in want if k.startswith("denoiser_net"))
    for k in got:
        if k.startswith("factor_net"):
            torch.testing.assert_close(got[k], want[k], rtol=0, atol=0)


def test_a_run_with_the_denoiser_frozen_learns_the_circle_and_leaves_the_denoiser_as_it_was():
    """The denoiser trains for the first half and is frozen at its moving average of that moment: the model's
    denoiser at the end is the average denoiser of the same run stopped at the switch, to the last bit, and the
    factor still reads the circle."""
    circle = Sphere(1, 2)
    data = circle.sample(2000, generator=torch.Generator().manual_seed(0))
    cfg = {"steps": 2000, "freeze_denoiser": True, **SMALL}
    result = train(data, TrainConfig(**cfg), manifold=circle, progress=False)
    assert result.validation["tangent_error"] < 0.1
    assert result.validation["dimension_accuracy"] > 0.9
    half = train(data, TrainConfig(**cfg), progress=False, stop_after=1000)
    for (name, p), q in zip(result.model.denoiser_net.named_parameters(), half.model.denoiser_net.parameters(),
                            strict=True):
        torch.testing.assert_close(p, q, rtol=0, atol=0, msg=name)
    moved = [not torch.equal(p, q) for p, q in zip(result.model.factor_net.parameters(),
                                                   half.model.factor_net.parameters(), strict=True)]
    assert all(moved)  # the factor trained in the second half


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
    for bad in (0.0, 1.5, float("nan")):
        with pytest.raises(ValueError, match="factor_fraction"):
            TrainConfig(factor_fraction=bad)
    with pytest.raises(ValueError, match="factor_fraction acts on centred runs"):
        TrainConfig(factor_fraction=0.5, centred=False)
    with pytest.raises(ValueError, match="freeze_denoiser needs"):
        TrainConfig(freeze_denoiser=True, denoiser_warmup=0.0)
    with pytest.raises(ValueError, match="freeze_denoiser needs"):
        TrainConfig(freeze_denoiser=True, shared_trunk=True)
    with pytest.raises(TypeError, match="freeze_denoiser"):
        TrainConfig(freeze_denoiser="yes")
    for bad in (0, 65, 2.5):
        with pytest.raises((TypeError, ValueError), match="jacobian_probes"):
            TrainConfig(jacobian_probes=bad)
    with pytest.raises(ValueError, match="jacobian_probes acts on the Jacobian target"):
        TrainConfig(jacobian_probes=4, factor_target="residual")
    with pytest.raises(TypeError, match="final_norm"):
        TrainConfig(final_norm="no")
    assert TrainConfig(final_norm=None).final_norm is None
    assert math.isclose(TrainConfig(input_scaling="auto").grad_clip, TrainConfig().grad_clip)


def test_a_run_with_a_denoiser_of_half_the_width_learns_the_circle():
    """``denoiser_hidden``: the denoiser is built at its own width (recorded in the model) and the factor, read
    off its Jacobian, still finds the tangent line. Measured (seeds 0 / 1): width 16 against the factor's 32
    0.042 / 0.014, the full width 0.022 / 0.013, width 8 0.118 / 0.057: the factor is as good as the denoiser."""
    circle = Sphere(1, 2)
    data = circle.sample(2000, generator=torch.Generator().manual_seed(0))
    result = train(data, TrainConfig(steps=2000, denoiser_hidden=16, **SMALL), manifold=circle, progress=False)
    assert result.model.config.denoiser_arch_kwargs == {"hidden": 16}
    assert result.model.denoiser_net.head.weight.shape == (2, 16)
    assert result.validation["tangent_error"] < 0.1
    assert result.validation["dimension_accuracy"] > 0.9
    with pytest.raises(ValueError, match="denoiser_hidden sizes the separate denoiser"):
        TrainConfig(denoiser_hidden=8, shared_trunk=True)
    with pytest.raises(ValueError, match="denoiser_hidden sizes the separate denoiser"):
        TrainConfig(denoiser_hidden=8, centred=False)
    with pytest.raises(ValueError, match="denoiser_hidden"):
        TrainConfig(denoiser_hidden=0)
    images = torch.rand(40, 1, 8, 8)
    with pytest.raises(ValueError, match="denoiser_hidden sizes the MLP denoiser, but points of shape"):
        train(images, TrainConfig(steps=2, denoiser_hidden=8, backbone="unet", precision="fp32"), progress=False)
