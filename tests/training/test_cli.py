"""The ``learned-manifold`` command: train, info, resume, errors, and the demo."""

import json
import math
import os
import shlex
import subprocess
import sys

import numpy as np
import pytest
import torch

from learned_manifold import LearnedDataManifold, load_model
from learned_manifold.model_file import read_metadata
from learned_manifold_training.cli import build_parser, main
from learned_manifold_training.outputs import state_path
from learned_manifold_training.validation import distrust

SMALL = ["--num-points", "600", "--steps", "30", "--batch-size", "64", "--hidden", "16",
        "--depth", "1", "--no-progress",
         "--device", "cpu"]


def test_train_writes_a_model_the_manifold_loads(tmp_path, capsys):
    out = tmp_path / "circle.lmm"
    assert main(["train", "circle", "--out", str(out), "--rank", "2", *SMALL]) == 0
    printed = capsys.readouterr()
    assert "wrote" in printed.out and "read 600 points of shape (2,) from circle" in printed.out
    model = load_model(out)
    assert model.config.rank == 2 and model.config.data_shape == (2,)
    # 30 steps of a 16-wide network have not learned the circle: the trainer's own check says so, stores it in
    # the model file and warns on stderr
    assert read_metadata(out)["extra"]["validation"]["self_consistency"]["trusted"] is False
    assert "warning: the model does not agree with itself" in printed.err
    M = LearnedDataManifold(str(out))
    assert M.factor(torch.randn(3, 2)).shape == (3, 2, 2)
    assert main(["info", "--json", str(out)]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["config"]["rank"] == 2 and "validation" in info["extra"]


def test_train_from_a_user_file_and_resume(tmp_path):
    data = np.random.default_rng(0).normal(size=(600, 4)).astype(np.float32)
    np.save(tmp_path / "data.npy", data)
    out = tmp_path / "m.lmm"
    args = ["train", str(tmp_path / "data.npy"), "--out", str(out), *SMALL, "--checkpoint-every", "10"]
    assert main(args) == 0
    assert (tmp_path / "m.lmm.train-state.pt").exists()
    before = out.read_bytes()
    assert main(args + ["--resume"]) == 0  # already finished: nothing to do (before: the end-of-run bandwidth
    assert out.read_bytes() == before      # choice and factor repair ran again and rewrote a changed model)


def test_an_existing_output_names_the_flags_only(tmp_path, capsys):
    (tmp_path / "m.lmm").write_bytes(b"keep")
    assert main(["train", "circle", "--out", str(tmp_path / "m.lmm"), *SMALL]) == 2
    err = capsys.readouterr().err
    assert "continue its training with --resume or replace it with --overwrite" in err and "=True" not in err
    assert (tmp_path / "m.lmm").read_bytes() == b"keep"


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda p: np.save(p / "bad.npy", np.full((700, 3), np.nan, dtype=np.float32)), "NaN"),
        (lambda p: np.save(p / "bad.npy", np.zeros(20, dtype=np.float32)), "at least 2 axes"),
        (lambda p: (p / "bad.npy").write_bytes(b"not numpy"), "bad.npy"),
    ],
)
def test_bad_data_gets_one_clear_line_and_exit_code_2(tmp_path, capsys, make, message):
    make(tmp_path)
    code = main(["train", str(tmp_path / "bad.npy"), "--out", str(tmp_path / "m.lmm"), *SMALL])
    err = capsys.readouterr().err
    assert code == 2 and message in err and "Traceback" not in err
    assert not (tmp_path / "m.lmm").exists()


def test_too_few_points_name_the_file(tmp_path, capsys):
    np.save(tmp_path / "five.npy", np.ones((5, 3), dtype=np.float32))
    assert main(["train", str(tmp_path / "five.npy"), "--out", str(tmp_path / "m.lmm"), "--no-progress",
                 "--device", "cpu"]) == 2
    assert "five.npy': data must be a tensor of shape (N, ...) with at least 10 points" in capsys.readouterr().err


def test_unknown_dataset_lists_the_valid_names(tmp_path, capsys):
    assert main(["train", "klein_bottle", "--out", str(tmp_path / "m.lmm"), *SMALL]) == 2
    assert "sphere" in capsys.readouterr().err


def test_info_on_a_foreign_file(tmp_path, capsys):
    (tmp_path / "x.lmm").write_bytes(b"\x80\x04junk" * 10)
    assert main(["info", str(tmp_path / "x.lmm")]) == 2
    assert "x.lmm" in capsys.readouterr().err


def test_demo_quick_writes_report_and_plots(tmp_path):
    out = tmp_path / "demo"
    assert main(["demo", "--quick", "--out", str(out), "--device", "cpu"]) == 0
    report = json.loads((out / "report.json").read_text())
    for name in report["files"]:
        assert (out / name).stat().st_size > 0
    assert set(report["interpolation"]) == {"gradient flow (delta=0.01)", "geodesic (delta=0.01)", "LERP"}
    assert report["validation"]["tangent_error"] >= 0
    lm = load_model(out / "model.lmm")
    assert lm.has_denoiser
    from learned_manifold_training.demo import check_demo_folder

    assert read_metadata(out / "model.lmm")["extra"]["data"]["written_by"] == "learned-manifold demo"
    check_demo_folder(out)  # a second demo run may replace its own model


# ---------------------------------------------------------------------------------------------------------
# issue 13: help, options, devices, info, package name


def test_help_describes_every_option_with_its_default(capsys):
    """``train --help``: every option has help text, and the numeric ones show their defaults."""
    with pytest.raises(SystemExit) as exit_:
        main(["train", "--help"])
    assert exit_.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    for option, default in [("--steps", 6000), ("--batch-size", 512), ("--lr", 0.002), ("--seed", 0),
                            ("--checkpoint-every", 500), ("--device", "auto")]:
        assert option in text and f"(default: {default})" in text, option
    train_parser = build_parser()._subparsers._group_actions[0].choices["train"]
    for action in train_parser._actions:
        assert action.help and action.help.strip(), action.option_strings


@pytest.mark.parametrize("option, message", [
    (["--val-every", "-1"], "--val-every must be in [0,"),
    (["--rank", "-1"], "--rank must be in [1,"),
    (["--rank", "0"], "--rank must be in [1,"),
    (["--rank", "100"], "--rank must be at most the data dimension D = 2, got 100"),
    (["--hidden", "0"], "--hidden must be in [1,"),
    (["--depth", "0"], "--depth must be in [1,"),
    (["--checkpoint-every", "-1"], "--checkpoint-every must be in [0,"),
    (["--tikhonov", "nan"], "--tikhonov must be finite"),
    (["--lr", "inf"], "--lr must be finite"),
    (["--device", "bogus"], "unknown device 'bogus'"),
    (["--grad-clip", "-1"], "--grad-clip must be"),
    (["--denoiser-warmup", "1.5"], "--denoiser-warmup must be in [0, 1)"),
    (["--jacobian-probes", "0"], "--jacobian-probes must be in [1,"),
    (["--denoiser-hidden", "0"], "--denoiser-hidden must be in [1,"),
    (["--denoiser-hidden", "8", "--shared-trunk"], "--denoiser-hidden sizes the separate denoiser"),
])
def test_bad_options_get_one_line_and_exit_2_before_training(tmp_path, capsys, option, message):
    """Every bad setting is one line naming the option, exit status 2, and no file is written."""
    out = tmp_path / "m.lmm"
    assert main(["train", "circle", "--out", str(out), *SMALL, *option]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert os.listdir(tmp_path) == []


def test_gaussian_preconditioning_from_the_command_line(tmp_path):
    """``--input-scaling gaussian --grad-clip 0`` reach the model file: the Gaussian model of the 2-D circle data
    (its rank capped at D = 2) is stored and loads back."""
    out = tmp_path / "g.lmm"
    assert main(["train", "circle", "--out", str(out), "--rank", "2", *SMALL, "--input-scaling", "gaussian",
                 "--grad-clip", "0"]) == 0
    model = load_model(out)
    assert model.config.input_scaling == "gaussian" and model.config.gaussian_rank == 2
    assert model.pc_var.sum().item() == pytest.approx(1.0, rel=0.05)  # standardised data: E‖z‖² = 1
    state = torch.load(state_path(out), weights_only=True)  # the run's settings, kept for --resume
    assert json.loads(state["config"])["grad_clip"] == 0.0


def test_a_cuda_device_that_is_not_there_is_one_line(tmp_path, capsys):
    """``--device cuda`` without CUDA (or a GPU index beyond those present): one line saying so, exit 2."""
    device = "cuda:999" if torch.cuda.is_available() else "cuda"
    assert main(["train", "circle", "--out", str(tmp_path / "m.lmm"), *SMALL[:-2], "--device", device]) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    if torch.cuda.is_available():
        assert "--device cuda:999: only" in err
    elif torch.version.cuda is None:
        assert "--device cuda: this torch build has no CUDA" in err
    else:
        assert "--device cuda: no CUDA GPU is visible" in err


def test_a_diverging_run_is_one_line_with_a_hint(tmp_path, capsys):
    """``--lr 1e30``: training stops at once with "training diverged at step k ... try a smaller --lr",
    exit 2, and no model is written."""
    assert main(["train", "circle", "--out", str(tmp_path / "m.lmm"), *SMALL, "--lr", "1e30"]) == 2
    err = capsys.readouterr().err
    assert "training diverged at step" in err and "try a smaller --lr" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "m.lmm").exists()


def test_info_prints_a_readable_summary(sphere_model_path, capsys):
    """``info`` says complete, the number of points, steps, seconds, library version, precision, data shape,
    rank and default σ, all taken from the file."""
    import learned_manifold
    from learned_manifold.model_file import read_metadata

    assert main(["info", str(sphere_model_path)]) == 0
    text = capsys.readouterr().out
    meta = read_metadata(sphere_model_path)
    c, e = meta["config"], meta["extra"]
    assert "complete (step 1000 of 1000)" in text and "INCOMPLETE" not in text
    assert "4,000 training points (3,600 fitted, 400 held out)" in text
    assert f"{e['training_seconds']:.1f} s" in text and f"precision {e['precision']}" in text
    assert f"learned-manifold {learned_manifold.__version__}" in text
    assert "shape (3,) (D = 3)" in text and "rank 3," in text and f"default sigma {c['default_sigma']:.4g}" in text
    assert "input:       none (asked for)" in text  # the fixture asks for its input scaling (tests/conftest.py)
    assert "norm input:  off (asked for)" in text  # ... and for no norm feature
    assert "landmarks:   3,600 training points stored" in text  # all its training points (fewer than 4,096)


def test_info_prints_the_stored_units(sphere_model_path, capsys):
    """``info`` names the standardisation the model applies (SPEC §1): its scale and the range of its mean, the
    tensors stored in the file."""
    from learned_manifold import load_model

    model = load_model(sphere_model_path)
    assert main(["info", str(sphere_model_path)]) == 0
    text = capsys.readouterr().out
    mean = model.mean.double()
    assert (f"x = mean + {float(model.scale):.4g} z (mean point values in [{float(mean.min()):.4g}, "
            f"{float(mean.max()):.4g}], average {float(mean.mean()):.4g})") in text
    assert main(["info", str(sphere_model_path), "--json"]) == 0
    units = json.loads(capsys.readouterr().out)["standardisation"]
    assert units["scale"] == float(model.scale) and units["mean_max"] == float(mean.max())


def test_info_refuses_a_file_load_model_refuses(tmp_path, sphere_model_path, capsys):
    """A truncated model file: ``info`` exits 2 with one line naming the file (as ``load_model`` refuses it)."""
    bad = tmp_path / "cut.lmm"
    bad.write_bytes(sphere_model_path.read_bytes()[:-100])
    with pytest.raises(ValueError):
        load_model(bad)
    assert main(["info", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "cut.lmm" in err and len(err.splitlines()) == 1
    assert main(["info", str(tmp_path / "missing.lmm")]) == 2


def test_a_users_own_training_package_does_not_shadow_the_installed_one(tmp_path):
    """In a folder holding a user's ``training/`` package (which fails on import), ``python -m
    learned_manifold_training.cli`` (the current folder first on sys.path) still runs, help and training."""
    (tmp_path / "training").mkdir()
    (tmp_path / "training" / "__init__.py").write_text("raise ImportError('the user package was imported')\n")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "learned_manifold_training.cli"]
    script = (f"{shlex.join(cmd)} --help && {shlex.join(cmd)} train circle --out m.lmm --num-points 100 "
              f"--steps 3 --batch-size 16 --hidden 8 --depth 1 --no-progress --device cpu")
    proc = subprocess.run(["bash", "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "usage: learned-manifold" in proc.stdout and "wrote m.lmm" in proc.stdout
    load_model(tmp_path / "m.lmm")


def test_info_with_data_runs_the_self_consistency_check(torus_model_path, capsys):
    """`info MODEL --data DATA` compares the factor network with the denoiser on DATA and says it is trusted
    for a good model (the learned torus); the trainer already stored the same check on its held-out split."""
    assert main(["info", str(torus_model_path), "--data", "torus", "--num-points", "200"]) == 0
    out = capsys.readouterr().out
    assert "consistency: trusted" in out
    assert "agrees with itself" in out
    assert "neighbour check: the model agrees with the data's neighbours" in out
    assert main(["info", str(torus_model_path), "--data", "torus", "--num-points", "100", "--json"]) == 0
    meta = json.loads(capsys.readouterr().out)
    assert meta["self_consistency"]["trusted"] is True
    assert meta["neighbour_check"]["trusted"] is True and meta["neighbour_check"]["informative"] is True
    assert meta["extra"]["validation"]["self_consistency"]["tangent_disagreement"] < 0.1
    assert meta["extra"]["validation"]["neighbour_check"]["trusted"] is True


def test_info_with_data_flags_an_untrained_uncentred_model_by_its_neighbours(tmp_path, capsys):
    """An uncentred model (no denoiser, so no self-consistency check) trained for 20 steps: the trainer's stored
    neighbour check and `info --data` both say it is not to be trusted."""
    out = tmp_path / "m.lmm"
    assert main(["train", "torus", "--out", str(out), "--num-points", "3000", "--steps", "20", "--batch-size", "64",
                 "--hidden", "16", "--depth", "1", "--no-progress", "--device", "cpu", "--uncentred"]) == 0
    capsys.readouterr()
    assert main(["info", str(out), "--data", "torus", "--num-points", "150"]) == 0
    text = capsys.readouterr().out
    assert "neighbour check WARNING" in text and "NOT TRUSTED" in text


def test_info_with_mismatched_data_is_one_clear_error(torus_model_path, capsys):
    assert main(["info", str(torus_model_path), "--data", "sphere8"]) == 2
    err = capsys.readouterr().err
    assert "--data has points of shape (64,)" in err and "Traceback" not in err


def test_norm_feature_is_chosen_from_the_data_by_default_and_the_flags_force_it():
    from learned_manifold_training.cli import _config

    parse = build_parser().parse_args
    assert _config(parse(["train", "circle", "--out", "m.lmm"])).norm_feature == "auto"
    assert _config(parse(["train", "circle", "--out", "m.lmm", "--norm-feature"])).norm_feature is True
    assert _config(parse(["train", "circle", "--out", "m.lmm", "--no-norm-feature"])).norm_feature is False


def test_the_s16_recipe_options_reach_the_config():
    """``--jacobian-probes 16 --denoiser-warmup 0.25`` (the settings that learned S¹⁶, RESULTS.md) reach
    `TrainConfig`; without them the defaults hold."""
    from learned_manifold_training.cli import _config

    parse = build_parser().parse_args
    config = _config(parse(["train", "circle", "--out", "m.lmm", "--jacobian-probes", "16",
                            "--denoiser-warmup", "0.25"]))
    assert (config.jacobian_probes, config.denoiser_warmup) == (16, 0.25)
    default = _config(parse(["train", "circle", "--out", "m.lmm"]))
    assert (default.jacobian_probes, default.denoiser_warmup) == (1, "auto")  # the trainer resolves "auto"
    auto = _config(parse(["train", "circle", "--out", "m.lmm", "--denoiser-warmup", "auto"]))
    assert auto.denoiser_warmup == "auto"
    assert default.denoiser_hidden is None
    assert _config(parse(["train", "circle", "--out", "m.lmm", "--denoiser-hidden", "128"])).denoiser_hidden == 128
    assert (default.factor_hidden, default.factor_ramp, default.factor_clip, default.factor_lr_scale) == \
        ("auto", "auto", "auto", "auto")
    set_ = _config(parse(["train", "circle", "--out", "m.lmm", "--factor-hidden", "512", "--factor-ramp", "0.05",
                          "--factor-clip", "0", "--factor-lr-scale", "0.3"]))
    assert (set_.factor_hidden, set_.factor_ramp, set_.factor_clip, set_.factor_lr_scale) == (512, 0.05, 0.0, 0.3)


def test_info_rereads_a_stored_verdict_with_todays_outside_limit(torus_model_path, tmp_path, capsys):
    """A file whose trainer called it trusted with an outside eigenvalue of 0.27 (the limit was 0.5 before the
    tenth session; an S¹⁶ model at tangent error 0.67 measured that) is reported NOT TRUSTED today."""
    from learned_manifold.model_file import read_metadata, save_model

    extra = read_metadata(torus_model_path)["extra"]
    check = extra["validation"]["self_consistency"]
    assert check["trusted"] is True
    old = tmp_path / "old.lmm"
    save_model(load_model(torus_model_path), old, extra={
        **extra, "validation": {**extra["validation"], "self_consistency": {**check, "outside_eigenvalue": 0.27}}})
    assert main(["info", str(old)]) == 0
    assert "consistency: NOT TRUSTED" in capsys.readouterr().out
    assert main(["info", str(torus_model_path)]) == 0
    assert "consistency: trusted" in capsys.readouterr().out


def test_info_says_whether_the_factor_was_repaired(torus_model_path, tmp_path, capsys):
    """A model that passed its check says nothing of a repair; one whose factor was refitted says so, with the
    disagreement before and after and whether the new factor was kept (`TrainConfig.factor_refit`)."""
    from learned_manifold.model_file import read_metadata, save_model

    extra = read_metadata(torus_model_path)["extra"]
    assert extra["validation"]["factor_refit"] == {"ran": False, "why": "the check passed"}
    assert main(["info", str(torus_model_path)]) == 0
    assert "repair:" not in capsys.readouterr().out
    for kept, words in ((True, "kept)"), (False, "not kept: the old factor stands")):
        refit = {"ran": True, "steps": 750, "disagreement_before": 0.41, "disagreement_after": 0.07, "kept": kept}
        path = tmp_path / f"repaired-{kept}.lmm"
        save_model(load_model(torus_model_path), path,
                   extra={**extra, "validation": {**extra["validation"], "factor_refit": refit}})
        assert main(["info", str(path)]) == 0
        out = capsys.readouterr().out
        assert "repair:      the factor was refitted to the denoiser for 750 steps" in out
        assert "0.41 -> 0.07" in out and words in out
    # the limit that failed: a disagreement of 0.14 is within its 0.2, so the line named no reason for the repair
    refit = {"ran": True, "steps": 750, "disagreement_before": 0.14, "disagreement_after": 0.12, "kept": True,
             "failed": ["a normal eigenvalue grows as sigma shrinks (growth 0.255, limit 0.1)"]}
    save_model(load_model(torus_model_path), tmp_path / "why.lmm",
               extra={**extra, "validation": {**extra["validation"], "factor_refit": refit}})
    assert main(["info", str(tmp_path / "why.lmm")]) == 0
    assert ("after failing the check (a normal eigenvalue grows as sigma shrinks (growth 0.255, limit 0.1); tangent "
            "disagreement 0.14 -> 0.12") in capsys.readouterr().out


def test_image_demo_quick_reports_the_checks_verdicts(tmp_path, capsys):
    """``demo --dataset digits``: the pictures, ``report.json`` with the paths' scores, and the trainer's two
    checks carried into the report (and printed as warnings) rather than left in the model file alone."""
    out = tmp_path / "digits"
    assert main(["demo", "--dataset", "digits", "--quick", "--out", str(out), "--device", "cpu"]) == 0
    printed = capsys.readouterr().out
    report = json.loads((out / "report.json").read_text())
    for name in ("eigenvectors.png", "eigenvalues.png", "dimension.png", "interpolations_0.png", "show.json"):
        assert (out / name).stat().st_size > 0, name
    stored = read_metadata(out / "model.lmm")["extra"]["validation"]
    assert report["warnings"] == distrust(stored) and report["trusted"] is (not report["warnings"])
    assert printed.count("warning: ") == len(report["warnings"])
    for pair in report["show"]["interpolations"]:
        assert {"LERP", "gradient flow", "geodesic"} <= set(pair) and pair["LERP"]["mean_nearest"] > 0
    assert report["show"]["points"] == 256 and report["show"]["data_points"] == 1573  # the training images only


@pytest.mark.parametrize("command", [["train", "circle", "--out", "m.lmm"], ["demo", "--out", "demo"],
                                     ["train-vae", "circle", "--out", "v.lvae", "--latent-dim", "1"]])
@pytest.mark.parametrize("count", ["0", "-5", "1"])
def test_num_points_below_two_is_refused_not_read_as_all(tmp_path, capsys, monkeypatch, command, count):
    """``--num-points 0`` (or negative) trained on every row of a file without a word."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as stop:
        main([*command, "--num-points", count])
    assert stop.value.code == 2
    assert "argument --num-points: must be at least 2" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []  # nothing written


@pytest.mark.parametrize("extra, message", [
    (["--dataset", "nope"], "unknown data set 'nope'"), (["--steps", "0"], "--steps must be"),
    (["--seed", "-1"], "--seed must be"), (["--dataset", "digits", "--num-points", "100"], "--num-points=100"),
    (["--dataset", "digits", "--num-points", "5000"], "leave --num-points out for all"),
])
def test_demo_refuses_bad_options_by_their_flags_before_writing(tmp_path, capsys, extra, message):
    """The demo made its folder before checking, named Python parameters, and ignored --num-points for images."""
    assert main(["demo", "--out", str(tmp_path / "demo"), *extra]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "demo").exists()


@pytest.mark.parametrize("error", [RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate "
                                                "16000000000 bytes"), MemoryError()])
def test_an_allocation_failure_is_one_line_naming_the_batch_size(tmp_path, capsys, monkeypatch, error):
    """``--batch-size 2000000000`` ended in an allocation traceback (or an out-of-memory kill)."""
    import learned_manifold_training.trainer as trainer

    def fail(*args, **kwargs):
        raise error

    monkeypatch.setattr(trainer, "train", fail)
    assert main(["train", "circle", "--out", str(tmp_path / "m.lmm"), "--num-points", "50", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "error: out of memory" in err and "lower --batch-size" in err and "Traceback" not in err


def test_mlp_sizes_given_for_images_the_unet_trains_are_named(tmp_path, capsys, monkeypatch):
    """``--hidden`` and ``--depth`` were silently ignored where ``--backbone auto`` picks the UNet."""
    import learned_manifold_training.trainer as trainer

    def stop(*args, **kwargs):
        raise ValueError("stopped before training")

    monkeypatch.setattr(trainer, "train", stop)
    main(["train", "digits", "--out", str(tmp_path / "m.lmm"), "--hidden", "7", "--depth", "2", "--no-progress"])
    err = capsys.readouterr().err
    assert "warning: --hidden, --depth size the MLP, but these images train the UNet" in err
    main(["train", "digits", "--out", str(tmp_path / "m.lmm"), "--no-progress"])
    assert "size the MLP" not in capsys.readouterr().err


def test_the_demo_replaces_its_own_model_only(tmp_path, capsys):
    """``demo --out DIR`` replaced any ``model.lmm`` in DIR (a user's 10,000-step model by a 60-step demo's)."""
    from learned_manifold_training.demo import DEMO_TAG, check_demo_folder

    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "model.lmm").write_bytes(b"a user's model")
    assert main(["demo", "--out", str(folder), "--quick"]) == 2
    assert "holds a model.lmm the demo did not write" in capsys.readouterr().err
    assert (folder / "model.lmm").read_bytes() == b"a user's model"
    check_demo_folder(tmp_path / "new")  # an absent or empty folder is fine
    assert DEMO_TAG["written_by"] == "learned-manifold demo"


def test_the_demo_compares_tangent_errors_with_the_mean_error_of_random_planes():
    """The demo's "random subspaces" figure is the mean `projector_error` of independent random planes (the
    root mean square, √(2d(1 − d/D)), had been quoted): lines in R² √2·2/π ≈ 0.900, planes in R³ √2·π/4 ≈ 1.111."""
    from learned_manifold_training.demo import _random_plane_error

    assert _random_plane_error(1, 2) == pytest.approx(2 * math.sqrt(2) / math.pi, abs=0.01)
    assert _random_plane_error(2, 3) == pytest.approx(math.sqrt(2) * math.pi / 4, abs=0.01)


def test_a_reader_that_goes_away_ends_the_output_quietly(sphere_model_path, monkeypatch, capsys):
    """``learned-manifold info MODEL --json | head -c 1``: writing to a closed pipe ends the command quietly with
    status 0, not with "error: [Errno 32] Broken pipe" (the pipe is simulated: a stdout whose writes fail so)."""
    import io

    class ClosedPipe(io.TextIOBase):
        def write(self, text):
            raise BrokenPipeError(32, "Broken pipe")

    assert main(["info", str(sphere_model_path), "--json"]) == 0
    capsys.readouterr()
    monkeypatch.setattr(sys, "stdout", ClosedPipe())
    assert main(["info", str(sphere_model_path), "--json"]) == 0
    assert capsys.readouterr().err == ""


def test_train_says_what_it_read_and_refuses_abbreviated_options(tmp_path, capsys, monkeypatch):
    """``train`` said nothing of how many images it read (a class folder's ``day2/`` was left out silently: the
    reader warns now, and train prints the count). argparse took ``--overw`` for ``--overwrite``, and the
    ``--resume`` command printed after Ctrl-C kept it and failed ("--resume: not allowed with --overwrite"): no
    option may be abbreviated, and the printed command runs."""
    from PIL import Image

    from learned_manifold_training import trainer
    from learned_manifold_training.runtime import TrainingInterrupted

    pictures = np.random.default_rng(0).integers(0, 256, (14, 4, 4)).astype(np.uint8)
    for i, path in enumerate([f"{'ab'[i % 2]}/{i}.png" for i in range(12)] + ["a/day2/12.png", "a/day2/13.png"]):
        (tmp_path / "imgs" / path).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pictures[i]).save(tmp_path / "imgs" / path)

    def interrupted(*args, **kwargs):
        raise TrainingInterrupted(3, 30, tmp_path / "m.lmm")

    monkeypatch.setattr(trainer, "train", interrupted)
    argv = ["train", str(tmp_path / "imgs"), "--out", str(tmp_path / "m.lmm"), "--steps", "30", "--overwrite"]
    with pytest.warns(UserWarning, match=r"2 .* file\(s\) in 1 sub-folder\(s\) are not read: '.*day2' \(2\)"):
        assert main(argv) == 130
    printed = capsys.readouterr()
    assert f"read 12 images of shape (1, 4, 4) from {tmp_path / 'imgs'}" in printed.out
    resume = printed.err.split("continue with: ")[1].strip()
    assert shlex.split(resume)[1:] == [*argv[:-1], "--resume"]
    for command, short in [(["train", "circle", "--out", str(tmp_path / "m.lmm")], ["--overw"]),
                           (["show", str(tmp_path / "m.lmm"), "circle", "--out", "pics"], ["--num", "8"]),
                           (["train-vae", "circle", "--out", "v", "--latent-dim", "1"], ["--ste", "5"])]:
        with pytest.raises(SystemExit) as stop:
            main([*command, *short])
        assert stop.value.code == 2 and f"unrecognized arguments: {' '.join(short)}" in capsys.readouterr().err


def test_a_num_points_beyond_the_data_is_named_as_the_option(tmp_path, capsys):
    """``train digits --num-points 5000`` said "asked for n=5000 (use n <= 0 for all)": the Python name, and a
    hint the parser refuses; train now says it as train-vae and demo do."""
    np.save(tmp_path / "x.npy", np.random.default_rng(0).random((50, 3)).astype(np.float32))
    for data, message in [("digits", "asked for --num-points=5000 (leave --num-points out for all)"),
                          (str(tmp_path / "x.npy"), "asked for --num-points=5000 rows but the data has only 50")]:
        assert main(["train", data, "--num-points", "5000", "--out", str(tmp_path / "m.lmm")]) == 2
        err = capsys.readouterr().err
        assert message in err and "n <= 0" not in err and "n=" not in err.replace("--num-points=", "")


def test_help_says_when_validations_run_and_what_the_demo_folder_keeps(capsys):
    """``--val-every`` validations run only once the factor trains (after the denoiser warm-up), and the demo's
    folder keeps the training state beside the model (about four times its size)."""
    for command, words in [("train", "only once the factor trains, after the denoiser warm-up"),
                           ("demo", "model.lmm.train-state.pt, the final training state")]:
        with pytest.raises(SystemExit):
            main([command, "--help"])
        assert words in " ".join(capsys.readouterr().out.split())


def test_mlp_sizes_with_backbone_unet_are_refused_by_their_flags(tmp_path, capsys):
    """``--backbone unet --hidden 7 --depth 2`` warned and trained the UNet: the config cannot serve flat data, so
    the flags are refused before any work, each by its name; under ``--backbone auto`` the command's own warning is
    the only one (the library's `UserWarning` is not printed again: an error under pytest)."""
    out = tmp_path / "m.lmm"
    assert main(["train", "digits", "--out", str(out), "--backbone", "unet", "--hidden", "7", "--depth", "2",
                 "--steps", "1", "--num-points", "60", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.strip() == ("learned-manifold train: error: --hidden, --depth size the MLP only, but backbone 'unet' "
                           "trains the UNet (preset sizes it): leave them out, or choose backbone 'mlp'")
    assert list(tmp_path.iterdir()) == []


def test_help_states_the_presets_and_the_paper_scales_truly(capsys):
    """``--preset`` called four presets "the paper's image models" though three differ from its configs;
    ``--tikhonov`` and ``--grad-clip`` did not say that the paper code's values do not carry over as they are."""
    helps = {a.dest: a.help for a in build_parser()._subparsers._group_actions[0].choices["train"]._actions}
    assert "the paper's image models" not in helps["preset"]
    assert "modelled on the paper's image networks" in helps["preset"] and "unet_preset" in helps["preset"]
    assert "2 x the paper code's tikhonov_epsilon" in helps["tikhonov"]
    assert "4D² times the paper code's" in helps["grad_clip"] and "does not transfer" in helps["grad_clip"]


def test_an_interrupted_overwrite_says_the_earlier_model_is_gone_and_the_help_says_when(tmp_path, monkeypatch,
                                                                                         capsys):
    """``train --overwrite`` replaces the earlier complete model at its first checkpoint or interruption, while its
    help said only "replace an existing --out" and the interruption named the partial model alone."""
    from learned_manifold_training import trainer
    from learned_manifold_training.runtime import TrainingInterrupted

    out = tmp_path / "m.lmm"
    out.write_bytes(b"the earlier complete model")

    def interrupted(data, config, *, out, **kwargs):
        raise TrainingInterrupted(7, config.steps, out)

    monkeypatch.setattr(trainer, "train", interrupted)
    args = ["train", "circle", "--num-points", "100", "--steps", "30", "--out", str(out), "--device", "cpu"]
    assert main([*args, "--overwrite"]) == 130
    err = capsys.readouterr().err
    assert f"interrupted at step 7 of 30; the partial model is in {out} (incomplete; --overwrite has replaced the " \
           "earlier model); continue with: " in err
    out.unlink()
    assert main([*args, "--overwrite"]) == 130  # nothing was replaced: the usual words
    assert f"the partial model is in {out} (incomplete); continue with: " in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    assert ("The earlier model is replaced at the new run's first checkpoint (--checkpoint-every) or interruption, "
            "not when it finishes") in " ".join(capsys.readouterr().out.split())
