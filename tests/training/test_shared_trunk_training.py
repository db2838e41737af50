"""Training with a shared trunk (`TrainConfig.shared_trunk`, issue 14): one pass of one network per step gives
the same losses and gradients as the SPEC §3 losses evaluated network by network; a run trains, validates and
writes a file that says what it holds; the command line reaches the setting. Speed is a benchmark's claim
(``benchmarks/training.py``), not a test's."""

import json

import pytest
import torch

from learned_manifold import load_model
from learned_manifold.model_file import read_metadata
from learned_manifold.models import MetricModel, ModelConfig
from learned_manifold_training.cli import main
from learned_manifold_training.data import Sphere
from learned_manifold_training.losses import DenoiserLoss, MetricMatchingLoss
from learned_manifold_training.objective import TrainingObjective
from learned_manifold_training.trainer import TrainConfig, train

NET = {"hidden": 16, "depth": 2, "emb_dim": 8}


def _model(shared: bool, seed: int = 0) -> MetricModel:
    torch.manual_seed(seed)
    model = MetricModel(ModelConfig(data_shape=(6,), rank=3, arch_kwargs=NET, shared_trunk=shared)).double()
    with torch.no_grad():  # visible outputs in every column, so that every term of the losses matters
        for p in model.parameters():
            p.add_(0.2 * torch.randn_like(p))
    return model


def _batch(n: int = 8, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, 6, generator=g, dtype=torch.float64)
    return z, torch.rand(n, generator=g, dtype=torch.float64) + 0.05, torch.randn(n, 6, generator=g,
                                                                                   dtype=torch.float64)


def _grads(model: MetricModel, loss: torch.Tensor) -> dict[str, torch.Tensor]:
    model.zero_grad()
    loss.sum().backward()
    return {k: p.grad.clone() if p.grad is not None else torch.zeros_like(p) for k, p in model.named_parameters()}


@pytest.mark.parametrize("shared", [True, False], ids=["shared", "two-networks"])
def test_one_pass_step_equals_the_losses_evaluated_network_by_network(shared):
    """The objective's per-sample loss and every gradient equal ``DenoiserLoss + MetricMatchingLoss`` (the
    latter with its own detached denoiser forward for the target ``a = F − ε``), float64."""
    model = _model(shared)
    matching = MetricMatchingLoss("lowrank", 0.0, centred=True)
    objective = TrainingObjective(model, matching)
    z, s, eps = _batch()
    reference = DenoiserLoss()(model, z, s, eps) + matching(model, z, s, eps)
    ours = objective(z, s, eps, True)
    assert ours.shape == (8,)
    torch.testing.assert_close(ours, reference.float())
    expected = _grads(model, DenoiserLoss()(model, z, s, eps) + matching(model, z, s, eps))
    got = _grads(model, objective(z, s, eps, True).double())
    assert got.keys() == expected.keys()
    for name in got:
        torch.testing.assert_close(got[name], expected[name], rtol=1e-5, atol=1e-7, msg=name)


@pytest.mark.parametrize("alpha", [0.0, 0.5])
def test_the_factor_gradient_into_the_trunk_is_scaled_and_the_heads_keep_theirs(alpha):
    """``factor_trunk_grad = α``: every trunk gradient is ``∇(denoiser loss) + α ∇(factor loss)`` (gradients are
    linear in the loss), while the output layer, whose rows belong to one head each, gets its full gradient."""
    model = _model(True)
    z, s, eps = _batch()
    matching = MetricMatchingLoss()
    total = _grads(model, TrainingObjective(model, matching, factor_trunk_grad=alpha)(z, s, eps, True).double())
    denoiser = _grads(model, DenoiserLoss()(model, z, s, eps))
    factor = _grads(model, matching(model, z, s, eps))
    for name, grad in total.items():
        expected = denoiser[name] + (1.0 if name.startswith("trunk.head") else alpha) * factor[name]
        torch.testing.assert_close(grad, expected, rtol=1e-5, atol=1e-7, msg=name)
    assert factor["trunk.inp.weight"].abs().max() > 0  # so α mattered


def test_the_warm_up_trains_the_trunk_and_the_denoiser_head_but_not_the_factor_head():
    """Before the factor starts (`denoiser_warmup`), the loss is the denoiser's alone: the factor head's rows of
    the output layer get exactly zero gradient, the trunk and the denoiser head's rows do not."""
    model = _model(True)
    z, s, eps = _batch()
    loss = TrainingObjective(model, MetricMatchingLoss())(z, s, eps, False)
    torch.testing.assert_close(loss, DenoiserLoss()(model, z, s, eps).float())
    grads = _grads(model, loss.double())
    head = grads["trunk.head.weight"].reshape(4, 6, -1)  # (columns, D, hidden): column-major rows
    assert head[:3].abs().max() == 0 and head[3].abs().min() > 0
    assert grads["trunk.inp.weight"].abs().max() > 0


def test_a_shared_trunk_run_trains_validates_and_writes_its_kind(tmp_path):
    """S² in R³ (the tests' sphere recipe): a shared-trunk run reaches the tangent error the session fixture
    asks of two networks (< 0.2), checks itself against its denoiser, and its file loads as a shared trunk."""
    sphere = Sphere(2, 3)
    data = sphere.sample(4000, generator=torch.Generator().manual_seed(0))
    cfg = TrainConfig(steps=1000, batch_size=256, rank=3, hidden=64, depth=2, emb_dim=64, sigma_min=0.01,
                      sigma_max=2.0, val_points=400, precision="fp32", shared_trunk=True)
    result = train(data, cfg, manifold=sphere, out=tmp_path / "s.lmm", progress=False, device="cpu")
    assert result.validation["tangent_error"] < 0.2, result.validation
    assert result.validation["dimension_accuracy"] > 0.9
    assert "self_consistency" in result.validation
    loaded = load_model(tmp_path / "s.lmm")
    assert loaded.config.shared_trunk and loaded.trunk is not None
    x = sphere.sample(5, generator=torch.Generator().manual_seed(3))
    assert (loaded.denoise(x, 0.05) - x).norm(dim=-1).max() < 0.1  # the denoiser head keeps points on the sphere


def test_an_uncentred_run_refuses_the_setting():
    """Uncentred training has one network anyway: the setting was silently ignored; it is refused, as the other
    centred-only settings are."""
    with pytest.raises(ValueError, match="shared_trunk acts on centred runs only"):
        TrainConfig(centred=False, shared_trunk=True)
    with pytest.raises(ValueError, match="factor_target acts on centred runs only"):
        TrainConfig(centred=False, factor_target="residual")
    with pytest.raises(ValueError, match="factor_trunk_grad acts on a shared trunk only"):
        TrainConfig(factor_trunk_grad=0.7)


@pytest.mark.parametrize("flag, shared", [("--shared-trunk", True), ("--no-shared-trunk", False)])
def test_the_command_line_flag_reaches_the_model_file(tmp_path, capsys, flag, shared):
    out = tmp_path / "m.lmm"
    assert main(["train", "circle", "--out", str(out), "--num-points", "300", "--steps", "5", "--batch-size", "32",
                 "--hidden", "16", "--depth", "1", "--no-progress", "--device", "cpu", flag]) == 0
    assert read_metadata(out)["config"]["shared_trunk"] is shared
    capsys.readouterr()
    assert main(["info", str(out)]) == 0
    assert ("shared trunk" in capsys.readouterr().out) is shared


def test_a_training_state_written_before_the_settings_existed_resumes(tmp_path):
    """An interrupted run whose saved settings lack ``shared_trunk`` and ``factor_trunk_grad`` (written by an
    older version: two networks) resumes with the two-network settings and finishes."""
    data = Sphere(2, 3).sample(300, generator=torch.Generator().manual_seed(0))
    cfg = TrainConfig(steps=20, batch_size=32, rank=3, hidden=16, depth=1, emb_dim=8, val_points=50,
                      shared_trunk=False, checkpoint_every=10)
    out = tmp_path / "m.lmm"
    train(data, cfg, out=out, progress=False, device="cpu", stop_after=10)
    state_file = tmp_path / "m.lmm.train-state.pt"
    state = torch.load(state_file, weights_only=True)
    saved = json.loads(state["config"])
    del saved["shared_trunk"], saved["factor_trunk_grad"]
    state["config"] = json.dumps(saved)
    torch.save(state, state_file)
    result = train(data, cfg, out=out, resume=True, progress=False, device="cpu")
    assert result.stopped_at == 20 and not result.model.config.shared_trunk
    with pytest.raises(ValueError, match="shared_trunk"):  # a different recipe is not a resume
        train(data, TrainConfig(**{**cfg.__dict__, "shared_trunk": True}), out=out, resume=True, progress=False,
              device="cpu")


@pytest.mark.parametrize("changes, error", [({"shared_trunk": "yes"}, TypeError),
                                            ({"factor_trunk_grad": 1.5}, ValueError),
                                            ({"factor_trunk_grad": -0.1}, ValueError)])
def test_a_bad_setting_is_refused_naming_the_field(changes, error):
    with pytest.raises(error, match=next(iter(changes))):
        TrainConfig(**changes)
