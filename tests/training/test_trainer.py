"""The training loop: accuracy on a known manifold, checkpoints and the facts the model file records, periodic
validations, and σ in the data's units. Resume: test_trainer_resume.py; checks before work: test_trainer_checks.py."""

import math

import pytest
import torch

import learned_manifold
from learned_manifold import load_model
from learned_manifold.geometry import eigenpairs, intrinsic_dimension, projector_error
from learned_manifold.model_file import read_metadata
from learned_manifold.precision import PRECISIONS
from learned_manifold_training.data import Circle
from learned_manifold_training.trainer import TrainConfig, standardisation, train


def random_subspace_error(d, D):
    """Expected ‖P − Q‖_F between a fixed and a random d-plane in R^D is about sqrt(2d(1 − d/D))."""
    return math.sqrt(2 * d * (1 - d / D))


def test_sphere_model_recovers_tangent_planes_and_dimension(sphere_model, sphere):
    x = sphere.sample(500, generator=torch.Generator().manual_seed(7))
    pairs = eigenpairs(sphere_model.factor(x))
    err = projector_error(pairs.vectors[..., :2], sphere.tangent_basis(x)).mean().item()
    assert err <= 0.25 * random_subspace_error(2, 3), err
    assert (intrinsic_dimension(pairs.values) == 2).float().mean() >= 0.9


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_circle_model_in_a_few_seconds(precision):
    circle = Circle(2)
    data = circle.sample(2000, generator=torch.Generator().manual_seed(0))
    # 600 steps: the default recipe trains the factor from half-way (at 400 steps its 200 factor steps read
    # dimension 1 at 83% of points; at 600, 100%)
    cfg = TrainConfig(steps=600, batch_size=256, rank=2, hidden=64, depth=2, emb_dim=32, val_points=300,
                      precision=precision)
    result = train(data, cfg, manifold=circle, progress=False, device="cpu")
    assert result.precision == precision
    v = result.validation
    assert v["tangent_error"] <= 0.25 * random_subspace_error(1, 2), v
    assert v["dimension_accuracy"] >= 0.9
    assert result.model.config.sigma_rule == "lowest validation tangent error"
    table = v["sigma_table"]
    assert v["sigma"] == min(table, key=lambda r: r["tangent_error"])["sigma"]


def test_bf16_autocast_runs_on_cpu_and_auto_runs_as_its_probe_chose():
    data = Circle(2).sample(200, generator=torch.Generator().manual_seed(0))
    cfg = dict(steps=5, batch_size=32, rank=2, hidden=16, depth=1, emb_dim=8, val_points=50)
    runs = {p: train(data, TrainConfig(**cfg, precision=p), progress=False, device="cpu") for p in PRECISIONS}
    w32, w16 = (runs[p].model.state_dict()["factor_net.blocks.0.fc1.weight"] for p in ("fp32", "bf16"))
    assert not torch.equal(w32, w16)  # autocast really ran in bf16 on the CPU
    assert runs["auto"].precision == runs["auto"].precision_probe["choice"]  # measured: test_trainer_precision.py
    torch.testing.assert_close(runs["auto"].model.state_dict()["factor_net.blocks.0.fc1.weight"],
                               runs[runs["auto"].precision].model.state_dict()["factor_net.blocks.0.fc1.weight"],
                               rtol=0, atol=0)


def test_validation_every_few_steps_is_filed_under_its_own_step():
    """val_every not a multiple of 50 (the loss log's period) raised IndexError, or was filed under step 50."""
    data = Circle(2).sample(300, generator=torch.Generator().manual_seed(0))
    cfg = TrainConfig(steps=150, batch_size=32, rank=2, hidden=8, depth=1, emb_dim=8, val_points=30, val_every=70,
                      denoiser_warmup=0.0)
    result = train(data, cfg, progress=False, device="cpu")
    validated = [h["step"] for h in result.history if "tangent_error" in h or "sigma" in h]
    assert validated == [70, 140], result.history
    # kept with the validation (so in the model file) and printed by the CLI, which discarded them before
    assert [h["step"] for h in result.validation["periodic"]] == [70, 140]


def test_cli_prints_the_periodic_validations(tmp_path, capsys):
    from learned_manifold.model_file import read_metadata
    from learned_manifold_training.cli import main

    out = tmp_path / "m.lmm"
    assert main(["train", "circle", "--out", str(out), "--num-points", "300", "--steps", "100", "--val-every", "50",
                 "--hidden", "8", "--depth", "1", "--batch-size", "32", "--denoiser-warmup", "0", "--no-progress",
                 "--precision", "fp32"]) == 0
    printed = capsys.readouterr().out
    assert "validation at step 50 (sigma" in printed and "validation at step 100 (sigma" in printed
    assert [h["step"] for h in read_metadata(out)["extra"]["validation"]["periodic"]] == [50, 100]


def test_standardisation_is_one_global_scale():
    x = torch.randn(1000, 4) * torch.tensor([1.0, 2.0, 3.0, 4.0]) + 5.0
    scale, mean = standardisation(x)
    torch.testing.assert_close(mean, x.mean(0), atol=1e-5, rtol=0)
    z = (x - mean) / scale
    assert abs(z.pow(2).sum(-1).mean().item() - 1.0) < 1e-4  # E‖z‖² = 1, per-coordinate ratios kept


@pytest.mark.parametrize("sampler", ["loguniform", "lognormal", "uniform"])
def test_bandwidths_scale_with_the_data(sampler):
    """σ settings are in units of the data scale s: scaling the data by 10 scales every sampled σ by 10."""
    from learned_manifold_training.trainer import bandwidth_sampler

    cfg = TrainConfig(sampler=sampler, sigma_min=1e-3, sigma_max=4.0)
    g = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    small = bandwidth_sampler(cfg, 1.0)(5000, generator=g())
    large = bandwidth_sampler(cfg, 10.0)(5000, generator=g())
    torch.testing.assert_close(large, 10 * small, rtol=1e-5, atol=0)


# ---------------------------------------------------------------------------------------------------------
# issue 13: every setting checked before work, divergence, metadata, float32 range, devices

TINY = dict(steps=20, batch_size=32, rank=2, hidden=8, depth=1, emb_dim=8, val_points=20)


def test_the_model_file_records_completion_and_training_facts(tmp_path):
    """Checkpoints before the end say ``complete: false`` with the step; the final file says ``complete: true``
    with the number of points, steps, seconds, precision and library version."""
    data = Circle(2).sample(200, generator=torch.Generator().manual_seed(0))
    cfg = TrainConfig(**{**TINY, "checkpoint_every": 10, "precision": "fp32"})
    train(data, cfg, out=tmp_path / "m.lmm", progress=False, device="cpu", stop_after=10)
    extra = read_metadata(tmp_path / "m.lmm")["extra"]
    assert (extra["complete"], extra["step"], extra["total_steps"]) == (False, 10, 20)
    first = extra["training_seconds"]
    train(data, cfg, out=tmp_path / "m.lmm", resume=True, progress=False, device="cpu")
    extra = read_metadata(tmp_path / "m.lmm")["extra"]
    assert (extra["complete"], extra["step"], extra["total_steps"]) == (True, 20, 20)
    assert (extra["num_points"], extra["num_train_points"], extra["num_val_points"]) == (200, 180, 20)
    assert extra["training_seconds"] > first > 0  # summed over the interrupted and the resumed run
    assert extra["library_version"] == learned_manifold.__version__ and extra["precision"] == "fp32"
    assert "validation" in extra


@pytest.mark.parametrize("lo, hi, expected", [(0.5, 4.0, 0.5), (1e-3, 0.02, 0.02), (1e-3, 4.0, 2.0 ** -4)])
def test_an_interrupted_checkpoint_defaults_to_a_sigma_inside_its_training_range(tmp_path, lo, hi, expected):
    """A checkpoint before the end defaults to s/16 clamped into its training range: with [0.5, 4]·s it
    defaulted to s/16, a bandwidth it never trained at; a range holding s/16 keeps it."""
    from learned_manifold_training.validation import initial_sigma

    data = Circle(2).sample(200, generator=torch.Generator().manual_seed(0))
    out = tmp_path / "m.lmm"
    train(data, TrainConfig(**{**TINY, "sigma_min": lo, "sigma_max": hi, "precision": "fp32"}), out=out,
          progress=False, device="cpu", stop_after=5)
    with pytest.warns(UserWarning, match=r"unfinished training run \(step 5 of 20\)"):
        model = load_model(out)
    c, scale = model.config, float(model.scale)
    assert c.sigma_min <= c.default_sigma <= c.sigma_max
    assert c.default_sigma == pytest.approx(expected * scale)
    assert ("clamped into the training range" in c.sigma_rule) is (expected != 2.0 ** -4)
    assert initial_sigma(16.0, 0.1, 0.5) == (0.5, "initial guess s/16, clamped into the training range")


def test_the_file_records_a_factor_ramp_only_where_the_optimiser_applied_one(tmp_path):
    """The factor's rate ramps up only where it starts after the denoiser's warm-up (`schedule.optimiser`): an
    uncentred run records no ramp steps (an explicit ramp is refused there: `recipe_checks`), a centred one with a
    warm-up records them."""
    data = Circle(2).sample(200, generator=torch.Generator().manual_seed(0))
    guards = {}
    for centred in (False, True):
        ramp = {"factor_ramp": 0.1} if centred else {}
        cfg = TrainConfig(**{**TINY, "steps": 100, "centred": centred, **ramp, "precision": "fp32"})
        train(data, cfg, out=tmp_path / f"{centred}.lmm", progress=False, device="cpu", stop_after=1)
        guards[centred] = read_metadata(tmp_path / f"{centred}.lmm")["extra"]["factor_guards"]
    assert guards[False]["ramp_steps"] == 0 and guards[True]["ramp_steps"] == 10
