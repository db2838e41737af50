"""The training loop: accuracy on a known manifold, resume, checkpoints, validation of inputs."""

import json
import math

import numpy as np
import pytest
import torch

import learned_manifold
from learned_manifold import load_model
from learned_manifold.geometry import eigenpairs, intrinsic_dimension, projector_error
from learned_manifold.model_file import read_metadata
from learned_manifold.precision import PRECISIONS
from learned_manifold_training.data import Circle
from learned_manifold_training.runtime import resolve_device
from learned_manifold_training.trainer import TrainConfig, TrainingDiverged, standardisation, train


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


def test_resumed_run_reaches_the_same_weights(tmp_path):
    data = Circle(2).sample(500, generator=torch.Generator().manual_seed(0))
    cfg = TrainConfig(steps=40, batch_size=64, rank=2, hidden=16, depth=1, emb_dim=8, val_points=50,
                      checkpoint_every=15)
    full = train(data, cfg, out=tmp_path / "full.lmm", progress=False, device="cpu")
    half = train(data, cfg, out=tmp_path / "half.lmm", progress=False, device="cpu", stop_after=20)
    assert half.stopped_at == 20
    resumed = train(data, cfg, out=tmp_path / "half.lmm", resume=True, progress=False, device="cpu")
    a, b = full.model.state_dict(), resumed.model.state_dict()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0, msg=k)
    # the files agree too
    y = data[:5]
    torch.testing.assert_close(load_model(tmp_path / "full.lmm").factor(y), load_model(tmp_path / "half.lmm").factor(y))


def test_a_state_without_its_model_file_resumes_and_a_fresh_run_names_it(tmp_path):
    """The state is written before the model file, "so a run killed between the two writes still resumes": at the
    first checkpoint that leaves the state alone, which resume refused ("model file does not exist")."""
    from learned_manifold_training.outputs import OutputError, state_path

    data = Circle(2).sample(500, generator=torch.Generator().manual_seed(0))
    cfg = TrainConfig(steps=40, batch_size=64, rank=2, hidden=16, depth=1, emb_dim=8, val_points=50,
                      checkpoint_every=15, precision="auto")
    full = train(data, cfg, out=tmp_path / "full.lmm", progress=False, device="cpu")
    train(data, cfg, out=tmp_path / "half.lmm", progress=False, device="cpu", stop_after=15)
    (tmp_path / "half.lmm").unlink()  # killed between the state's write and the model file's
    with pytest.raises(OutputError, match="the training state .* already exists"):
        train(data, cfg, out=tmp_path / "half.lmm", progress=False, device="cpu")
    assert state_path(tmp_path / "half.lmm").exists()
    resumed = train(data, cfg, out=tmp_path / "half.lmm", resume=True, progress=False, device="cpu")
    if resumed.precision == full.precision:  # "auto" measures again without the lost file's probe
        for k, v in full.model.state_dict().items():
            torch.testing.assert_close(v, resumed.model.state_dict()[k], rtol=0, atol=0, msg=k)
    assert (tmp_path / "half.lmm").exists()


def test_resume_neither_goes_back_nor_redoes_a_finished_run(tmp_path):
    """Resuming a run saved at step 30 with stop_after=10 rewrote its state as step 10 with step-30 weights (the
    next resume replayed steps 10-30 on top); resuming a finished run redid its bandwidth choice and factor repair
    and rewrote a changed model."""
    data = Circle(2).sample(500, generator=torch.Generator().manual_seed(0))
    cfg = TrainConfig(steps=40, batch_size=64, rank=2, hidden=16, depth=1, emb_dim=8, val_points=50)
    out = tmp_path / "m.lmm"
    train(data, cfg, out=out, progress=False, device="cpu", stop_after=30)
    state = (tmp_path / "m.lmm.train-state.pt").read_bytes()
    with pytest.raises(ValueError, match="stop_after=10: its run is already at step 30"):
        train(data, cfg, out=out, resume=True, progress=False, device="cpu", stop_after=10)
    assert (tmp_path / "m.lmm.train-state.pt").read_bytes() == state
    done = train(data, cfg, out=out, resume=True, progress=False, device="cpu")
    finished = out.read_bytes()
    again = train(data, cfg, out=out, resume=True, progress=False, device="cpu")
    assert again.already_complete and not done.already_complete and out.read_bytes() == finished
    assert again.validation == json.loads(json.dumps(done.validation))  # read back from the file
    y = data[:5]
    torch.testing.assert_close(again.model.factor(y), done.model.factor(y))


def test_a_damaged_model_file_beside_an_intact_state_resumes_to_the_same_weights(tmp_path):
    """The resume read the model file's recorded precision probe and stopped at its `ModelFileError`, though the
    state alone resumes the run: the damaged checkpoint is rewritten, the same as an uninterrupted run's."""
    data = Circle(2).sample(300, generator=torch.Generator().manual_seed(0))
    cfg = TrainConfig(steps=20, batch_size=32, rank=2, hidden=8, depth=1, emb_dim=8, val_points=30,
                      precision="fp32", checkpoint_every=10)
    train(data, cfg, out=tmp_path / "ref.lmm", progress=False, device="cpu")
    out = tmp_path / "m.lmm"
    train(data, cfg, out=out, progress=False, device="cpu", stop_after=10)
    out.write_bytes(out.read_bytes()[: out.stat().st_size // 2])
    result = train(data, cfg, out=out, resume=True, progress=False, device="cpu")
    assert result.stopped_at == 20 and not result.already_complete
    ref, got = load_model(tmp_path / "ref.lmm").state_dict(), load_model(out).state_dict()
    assert all(torch.equal(ref[k], got[k]) for k in ref)


def test_a_damaged_training_state_is_one_line_unless_the_run_is_already_complete(tmp_path, capsys):
    """A truncated ``OUT.train-state.pt`` ended ``--resume`` in ``torch.load``'s raw traceback (exit 1), even
    when the model file already held the finished run, which needs no state: now one line naming the state file
    (exit 2), and a finished run is "already complete" before the state is read."""
    from learned_manifold_training.cli import main
    from learned_manifold_training.outputs import state_path

    data = Circle(2).sample(300, generator=torch.Generator().manual_seed(0))
    cfg = TrainConfig(steps=20, batch_size=32, rank=2, hidden=8, depth=1, emb_dim=8, val_points=30,
                      precision="fp32")
    out = tmp_path / "m.lmm"
    train(data, cfg, out=out, progress=False, device="cpu", stop_after=10)
    state = state_path(out)
    state.write_bytes(state.read_bytes()[: state.stat().st_size // 2])
    said = (r"cannot resume .*m\.lmm': its training state .*m\.lmm\.train-state\.pt' is damaged or not a training "
            r"state \(.*\); train again with --overwrite \(overwrite=True\), or restore the file")
    with pytest.raises(ValueError, match=said):
        train(data, cfg, out=out, resume=True, progress=False, device="cpu")
    torch.save({"not": "a state"}, state)
    with pytest.raises(ValueError, match=r"is damaged or not a training state \(it holds no training state\)"):
        train(data, cfg, out=out, resume=True, progress=False, device="cpu")
    torch.save(data.numpy(), state)  # a pickle weights_only refuses
    with pytest.raises(ValueError, match=r"is damaged or not a training state \(UnpicklingError: "):
        train(data, cfg, out=out, resume=True, progress=False, device="cpu")
    numbers = tmp_path / "data.npy"
    np.save(numbers, data.numpy())
    state.write_bytes(b"\x00" * 100)
    flags = ["--steps", "20", "--batch-size", "32", "--rank", "2", "--hidden", "8", "--depth", "1", "--precision",
             "fp32", "--no-progress", "--device", "cpu"]  # the state is read (or found unneeded) before its settings
    capsys.readouterr()
    assert main(["train", str(numbers), "--out", str(out), "--resume", *flags]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "m.lmm.train-state.pt' is damaged" in err
    finished = tmp_path / "done.lmm"
    train(data, cfg, out=finished, progress=False, device="cpu")
    before = finished.read_bytes()
    state_path(finished).write_bytes(b"")
    again = train(data, cfg, out=finished, resume=True, progress=False, device="cpu")
    assert again.already_complete and again.stopped_at == 20 and finished.read_bytes() == before
    finished = tmp_path / "cli.lmm"  # the file is compared with the run's settings: the CLI's own run
    assert main(["train", str(numbers), "--out", str(finished), *flags]) == 0
    state_path(finished).write_bytes(b"")
    capsys.readouterr()
    assert main(["train", str(numbers), "--out", str(finished), "--resume", *flags]) == 0
    assert "is already complete (step 20 of 20): nothing to resume" in capsys.readouterr().out


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


def test_resume_refuses_other_settings_or_data(tmp_path):
    data = Circle(2).sample(200, generator=torch.Generator().manual_seed(0))
    cfg = TrainConfig(steps=10, batch_size=32, rank=2, hidden=8, depth=1, emb_dim=8, val_points=20)
    train(data, cfg, out=tmp_path / "m.lmm", progress=False, device="cpu", stop_after=5)
    with pytest.raises(ValueError, match=r"settings differ from the saved run: lr \(--lr\): saved 0.002, now 0.5"):
        train(data, TrainConfig(**{**cfg.__dict__, "lr": 0.5}), out=tmp_path / "m.lmm", resume=True,
              progress=False, device="cpu")
    # any change of the data, including those that keep N, D, Σx and Σx² (the rows reversed, two columns
    # swapped: both resumed before, half-training the model on other data with the first data's mean)
    for other in (data * 2, data.flip(0), data[:, [1, 0]]):
        with pytest.raises(ValueError, match="data differ"):
            train(other, cfg, out=tmp_path / "m.lmm", resume=True, progress=False, device="cpu")
    with pytest.raises(FileNotFoundError, match="training state"):
        train(data, cfg, out=tmp_path / "other.lmm", resume=True, progress=False, device="cpu")


def test_a_state_whose_sums_differ_in_the_last_digits_resumes(tmp_path):
    """The fingerprint's sums (~1e12 here) were compared rounded to 6 decimals: a state whose Σx² was summed in
    another order (earlier versions, or the streamed formula) was refused as other data. Now 1e-9 relative."""
    from learned_manifold_training.outputs import state_path

    data = Circle(2).sample(200, generator=torch.Generator().manual_seed(0)) * 1e5
    cfg = TrainConfig(steps=10, batch_size=32, rank=2, hidden=8, depth=1, emb_dim=8, val_points=20)
    out = tmp_path / "m.lmm"
    train(data, cfg, out=out, progress=False, device="cpu", stop_after=5)
    state = torch.load(state_path(out), weights_only=False)
    assert state["fingerprint"][3] > 1e12
    state["fingerprint"][3] *= 1 + 1e-13
    torch.save(state, state_path(out))
    assert train(data, cfg, out=out, resume=True, progress=False, device="cpu").stopped_at == 10
    state["fingerprint"][3] *= 1 + 1e-6
    torch.save(state, state_path(out))
    with pytest.raises(ValueError, match="data differ"):
        train(data, cfg, out=out, resume=True, progress=False, device="cpu")


def test_bad_data_is_refused_before_training():
    good = torch.randn(50, 3)
    bad = good.clone()
    bad[3, 1] = float("nan")
    with pytest.raises(ValueError, match=r"data holds NaN or inf at 1 point\(s\) \(the first: 3\)"):
        train(bad, TrainConfig(steps=1), progress=False, device="cpu")
    with pytest.raises(ValueError, match="shape"):
        train(torch.randn(50), TrainConfig(steps=1), progress=False, device="cpu")
    with pytest.raises(ValueError, match=r"at least 10 points, got shape \(5, 3\)"):
        train(good[:5], TrainConfig(steps=1), progress=False, device="cpu")
    with pytest.raises(ValueError, match=r"floating point, got torch.uint8: convert it with data.float\(\)"):
        train((good.abs() * 50).to(torch.uint8), TrainConfig(steps=1), progress=False, device="cpu")
    with pytest.raises(ValueError, match="identical"):
        train(torch.ones(50, 3), TrainConfig(steps=1), progress=False, device="cpu")
    with pytest.raises(ValueError, match="precision"):
        TrainConfig(precision="fp8")


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


@pytest.mark.parametrize("field, value, error", [
    ("steps", 0, ValueError), ("steps", 2.5, TypeError), ("batch_size", -1, ValueError),
    ("rank", 0, ValueError), ("rank", -1, ValueError), ("hidden", 0, ValueError), ("depth", 0, ValueError),
    ("emb_dim", 0, ValueError), ("val_every", -1, ValueError), ("checkpoint_every", -1, ValueError),
    ("val_points", 0, ValueError), ("seed", -1, ValueError), ("seed", True, TypeError),
    ("lr", 0.0, ValueError), ("lr", float("nan"), ValueError), ("lr", float("inf"), ValueError),
    ("tikhonov", float("nan"), ValueError), ("tikhonov", -1.0, ValueError), ("weight_decay", -0.1, ValueError),
    ("grad_clip", float("inf"), ValueError), ("ema", 1.0, ValueError), ("warmup", 1.5, ValueError),
    ("denoiser_warmup", 1.0, ValueError), ("sigma_min", 0.0, ValueError), ("sigma_max", 1e-4, ValueError),
    ("sampler", "gamma", ValueError), ("loss", "l1", ValueError), ("precision", "fp8", ValueError),
    ("centred", 1, TypeError), ("compile", "yes", TypeError),
])
def test_every_setting_is_checked_when_the_config_is_built(field, value, error):
    """A bad `TrainConfig` field raises at construction, and the message names the field."""
    with pytest.raises(error, match=field):
        TrainConfig(**{field: value})


def test_rank_is_checked_against_the_data_before_any_work():
    """``rank <= D`` (and ``rank = D`` for the full loss) is checked before training; ``None`` means min(D, 16)."""
    assert TrainConfig(rank=None).check_data_dim(3) == 3 and TrainConfig().check_data_dim(40) == 16
    assert TrainConfig(loss="full").check_data_dim(5) == 5
    with pytest.raises(ValueError, match="rank must be at most the data dimension D = 3, got 100"):
        train(torch.randn(50, 3), TrainConfig(rank=100, steps=1), progress=False, device="cpu")
    with pytest.raises(ValueError, match="rank must equal D = 3"):
        TrainConfig(rank=2, loss="full").check_data_dim(3)


def test_a_diverging_run_stops_with_a_clear_error_and_writes_nothing(tmp_path):
    """A learning rate of 1e30 makes the weights non-finite: the run stops within a few steps with
    "training diverged at step k" instead of finishing, and no non-finite model is written."""
    data = Circle(2).sample(200, generator=torch.Generator().manual_seed(0))
    with pytest.raises(TrainingDiverged, match=r"training diverged at step \d+: .*try a smaller --lr"):
        train(data, TrainConfig(**{**TINY, "steps": 200, "lr": 1e30}), out=tmp_path / "m.lmm", progress=False,
              device="cpu")
    assert not (tmp_path / "m.lmm").exists()


def test_divergence_after_a_checkpoint_keeps_the_last_good_one(tmp_path, monkeypatch):
    """The loss turns NaN at step 13 (injected): the run stops at the next check, step 20, before the
    checkpoint of step 20, and the checkpoint of step 10 stays on disk, finite and loadable."""
    from learned_manifold_training.losses import MetricMatchingLoss
    data = Circle(2).sample(200, generator=torch.Generator().manual_seed(0))
    real, calls = MetricMatchingLoss.__call__, []

    def poisoned(self, *args):
        calls.append(1)
        loss = real(self, *args)
        return loss * float("nan") if len(calls) >= 13 else loss

    monkeypatch.setattr(MetricMatchingLoss, "__call__", poisoned)
    # fp32: under "auto" the precision probe would call the loss too, and shift the count
    cfg = TrainConfig(**{**TINY, "steps": 40, "checkpoint_every": 10, "centred": False, "precision": "fp32"})
    with pytest.raises(TrainingDiverged, match="training diverged at step 20: loss is nan"):
        train(data, cfg, out=tmp_path / "m.lmm", progress=False, device="cpu")
    assert read_metadata(tmp_path / "m.lmm")["extra"]["step"] == 10
    with pytest.warns(UserWarning, match=r"unfinished training run \(step 10 of 40\)"):
        kept = load_model(tmp_path / "m.lmm")
    assert all(torch.isfinite(p).all() for p in kept.parameters())


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


@pytest.mark.parametrize("data, message", [
    (torch.randn(50, 3, dtype=torch.float64) * 1e300, "overflow float32"),
    (torch.randn(50, 3, dtype=torch.float64) * 1e-300, "underflow float32"),
    (torch.where(torch.randn(50, 3) > 0, 3e38, -3e38), "overflow float32"),
])
def test_data_beyond_float32_are_refused_with_the_right_reason(data, message):
    """Data of order 1e300 (float64) or ±3e38 (float32, whose scale overflows) are refused before training as
    overflowing float32, not reported as "all identical"; tiny data as underflowing."""
    with pytest.raises(ValueError, match=message):
        train(data, TrainConfig(**TINY), progress=False, device="cpu")


def test_large_but_representable_data_train_to_finite_weights():
    """Data near 3e38 with a spread float32 resolves (its spacing there, 3.6e31, is 4e-5 of it) standardise in
    float64 and train."""
    data = 3e38 + Circle(2).sample(200, generator=torch.Generator().manual_seed(0)).double() * 1e36
    result = train(data.float(), TrainConfig(**{**TINY, "steps": 5}), progress=False, device="cpu")
    assert all(torch.isfinite(p).all() for p in result.model.parameters())


@pytest.mark.parametrize("device, message", [
    ("bogus", "unknown device 'bogus'"), ("cuda:0" if not torch.cuda.is_available() else "cuda:999", "cuda"),
    (3.5, "device must be a string"),
])
def test_devices_are_checked_before_work(device, message):
    """An unknown device name, CUDA on a build or machine without it, or a non-device is one clear error."""
    with pytest.raises((ValueError, TypeError), match=message):
        resolve_device(device)
    if not torch.cuda.is_available() and torch.version.cuda is None:
        with pytest.raises(ValueError, match="this torch build has no CUDA"):
            resolve_device("cuda")


def test_data_whose_offset_float32_cannot_resolve_are_refused():
    """A unit circle at 1e7 in float64 (GPS or timestamp-like data) became 8 distinct float32 points out of 300 and
    trained without a word; it is refused with the remedy. The same circle at 1e3 trains."""
    circle = Circle(2).sample(300, generator=torch.Generator().manual_seed(0)).double()
    with pytest.raises(ValueError, match="far from the origin .* subtract an offset"):
        train(circle + 1e7, TrainConfig(**TINY), progress=False, device="cpu")
    result = train(circle + 1e3, TrainConfig(**{**TINY, "steps": 5}), progress=False, device="cpu")
    assert all(torch.isfinite(p).all() for p in result.model.parameters())
    # a constant coordinate, however large, merges nothing: the mean removes it exactly (it had been refused)
    padded = torch.cat([circle.float(), torch.full((300, 1), 1e4)], 1)
    result = train(padded, TrainConfig(**{**TINY, "steps": 5}), progress=False, device="cpu")
    assert torch.equal(result.model.mean.reshape(-1)[2], torch.tensor(1e4))


def test_resume_may_change_when_it_saves_and_validates(tmp_path):
    """``checkpoint_every`` and ``val_every`` decide when a run saves and validates, not what it computes."""
    data = Circle(2).sample(200, generator=torch.Generator().manual_seed(0))
    cfg = TrainConfig(steps=10, batch_size=32, rank=2, hidden=8, depth=1, emb_dim=8, val_points=20)
    full = train(data, cfg, progress=False, device="cpu")
    train(data, cfg, out=tmp_path / "m.lmm", progress=False, device="cpu", stop_after=5)
    resumed = train(data, TrainConfig(**{**cfg.__dict__, "checkpoint_every": 2, "val_every": 4}),
                    out=tmp_path / "m.lmm", resume=True, progress=False, device="cpu")
    for k, v in full.model.state_dict().items():
        torch.testing.assert_close(v, resumed.model.state_dict()[k], rtol=0, atol=0, msg=k)


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


def test_val_every_records_before_an_interruption_reach_the_resumed_file(tmp_path):
    """The ``val_every`` validations of an interrupted run are kept in its training state: the resumed run's file
    lists those of steps 20 and 40 too (it listed only 60), as an uninterrupted run's does."""
    data = Circle(2).sample(300, generator=torch.Generator().manual_seed(0))
    cfg = TrainConfig(**{**TINY, "steps": 60, "val_every": 20, "denoiser_warmup": 0.0, "precision": "fp32"})
    full = train(data, cfg, out=tmp_path / "full.lmm", progress=False, device="cpu")
    train(data, cfg, out=tmp_path / "half.lmm", progress=False, device="cpu", stop_after=45)
    resumed = train(data, cfg, out=tmp_path / "half.lmm", resume=True, progress=False, device="cpu")
    steps = [[h["step"] for h in read_metadata(tmp_path / f"{name}.lmm")["extra"]["validation"]["periodic"]]
             for name in ("full", "half")]
    assert steps == [[20, 40, 60], [20, 40, 60]]
    assert resumed.validation["periodic"] == full.validation["periodic"]  # the same model at the same steps
    assert [h["step"] for h in resumed.history if "loss" in h] == [45, 50, 60]


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


class _TransposedBasis(Circle):
    """A circle whose ``tangent_basis`` answers ``(n, d, D)`` instead of ``(n, D, d)``."""

    def tangent_basis(self, x):
        return super().tangent_basis(x).transpose(1, 2)


class _ScaledBasis(Circle):
    """A circle whose tangent vectors have length 2."""

    def tangent_basis(self, x):
        return 2 * super().tangent_basis(x)


class _PaddedBasis(Circle):
    """A circle whose ``tangent_basis`` pads a second, nonzero column (a plane) where ``point_dimension`` says 1."""

    def tangent_basis(self, x):
        return torch.eye(2).expand(x.shape[0], 2, 2)


class _NaNBasis(Circle):
    def tangent_basis(self, x):
        return torch.full((x.shape[0], 2, 1), float("nan"))


@pytest.mark.parametrize(("manifold", "message"), [
    (_TransposedBasis(), r"must return orthonormal bases of shape \(n, D, k\) = \(2, 2, k\), k <= 2, got \(2, 1, 2\)"),
    (_ScaledBasis(), r"must return orthonormal \(or zero\) columns; at point 0 \|VᵀV − I\| reaches 3"),
    (_PaddedBasis(), r"returned 2 nonzero columns at point 0, but manifold.point_dimension gives 1 there"),
    (_NaNBasis(), r"returned non-finite values \(NaN or inf\)"),
])
def test_a_broken_tangent_basis_is_refused_before_the_first_step(tmp_path, monkeypatch, manifold, message):
    """``train(manifold=M)`` checked only ``M.point_dimension`` up front: a ``tangent_basis`` of the wrong shape
    (or not orthonormal) ran every step, then failed in the final validation naming ``true_basis``, an argument of
    `tangent_error`; with ``out=None`` the model was lost. It is now called on the data's first points before any
    work, and the message names the method."""
    import learned_manifold_training.trainer as trainer

    def no_work(*args, **kwargs):
        pytest.fail("the run started before the manifold was checked")

    monkeypatch.setattr(trainer, "TrainingRows", no_work)
    data = Circle(2).sample(100, generator=torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match=r"^manifold.tangent_basis on 2 points of dimension D = 2 " + message):
        train(data, TrainConfig(**TINY), manifold=manifold, out=tmp_path / "m.lmm", progress=False, device="cpu")
    assert list(tmp_path.iterdir()) == []
